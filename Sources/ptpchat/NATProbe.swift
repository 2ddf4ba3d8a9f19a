import PTPProtocol
import PTPPunch
import RelayTLS

/// The second observation of the punching port that tells a symmetric NAT (docs/nat-traversal.md):
/// a connection from the same local port to a second relay address, and address discovery over it.
enum NATProbe {
    /// The probe's observation of `localPort`. The connection HELLOs with a throwaway node id: the
    /// real one is bound on the relay connection, and a second HELLO with it would be refused
    /// `id_in_use`. Gives up at `deadline`.
    static func observe(
        from localPort: Int, probe: Endpoint, tls: ClientTLS?, timing: LinkTiming, until deadline: ContinuousClock.Instant
    ) async -> Result<ConnectAddress, ProbeFailure> {
        let throwaway = SenderTag(NodeAddress(id: .random(), name: "probe"))
        let remaining = deadline - ContinuousClock.now
        guard remaining > .zero else { return .failure(ProbeFailure(reason: "no time left")) }
        do {
            let seen = try await RelayLink.run(
                endpoint: probe, tls: tls, identity: throwaway, timing: timing, localPort: localPort,
                timeout: (remaining, "waiting for the probe's address discovery answer")
            ) { session in
                try await session.handshake()
                guard let relayID = session.relayID else { throw ClientError.connectionLost("the probe sent no id in its ROUTING") }
                try await session.send(
                    ClientFrames.connect(
                        from: throwaway, source: throwaway.address.id, destination: relayID,
                        src: ConnectAddress(host: nil, port: localPort), dst: nil))
                while true {
                    let frame = try await session.next()
                    if frame.verb == .nack { throw ClientError.refused(verb: "CONNECT", reason: frame.reason, stored: frame.stored) }
                    guard frame.verb == .connect, let fields = frame.connect, fields.sourceNode == throwaway.address.id,
                        let text = fields.src
                    else { continue }
                    guard let seen = ConnectAddress(parsing: text), seen.host != nil else {
                        throw ClientError.connectionLost("the probe's answer has no usable address: \(text)")
                    }
                    return seen
                }
            }
            return .success(seen)
        } catch {
            return .failure(ProbeFailure(reason: "\(probe): \(error)"))
        }
    }
}

/// Why the probe gave no observation.
struct ProbeFailure: Error {
    var reason: String
}
