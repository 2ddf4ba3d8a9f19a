import ArgumentParser
import PTPProtocol
import RelayTLS

/// The options every command takes: where the relay is and who this node is.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The relay to connect to.", valueName: "host:port"))
    var relay: Endpoint

    @Option(
        name: .customLong("node-id"),
        help: ArgumentHelp("This node's id (a GUID; `name@GUID` also sets the name). Default: a random GUID.", valueName: "guid"))
    var nodeID: String?

    @Option(name: .long, help: ArgumentHelp("The display name sent with the id (letters and digits).", valueName: "name"))
    var name: String?

    @Option(
        name: .long,
        help: ArgumentHelp("Seconds between keepalives sent to the relay.", valueName: "seconds", visibility: .hidden))
    var keepalive: Double = 20

    @Option(
        name: .customLong("handshake-timeout"),
        help: ArgumentHelp("Seconds to wait for the connection, TLS and the relay's answer to HELLO.", valueName: "seconds"))
    var handshakeTimeout: Double = 10

    @Flag(name: .long, help: "Speak TLS to the relay (its certificate is verified against --ca, else the system's roots).")
    var tls = false

    @Option(name: .long, help: ArgumentHelp("CA certificates (PEM) to verify the relay's certificate with.", valueName: "file"))
    var ca: String?

    @Option(
        name: .long,
        help: ArgumentHelp("A client certificate (PEM) to present; its urn:uuid: name proves the node id.", valueName: "file"))
    var cert: String?

    @Option(name: .long, help: ArgumentHelp("The private key (PEM) of --cert.", valueName: "file"))
    var key: String?

    mutating func validate() throws {
        if !tls, let option = ca.map({ _ in "--ca" }) ?? cert.map({ _ in "--cert" }) ?? key.map({ _ in "--key" }) {
            throw ValidationError("\(option) needs --tls")
        }
        if (cert == nil) != (key == nil) {
            throw ValidationError("--cert and --key go together")
        }
        guard handshakeTimeout > 0, handshakeTimeout <= 86_400 else {
            throw ValidationError("--handshake-timeout must be more than 0 and at most 86400 seconds")
        }
        guard keepalive > 0, keepalive <= 86_400 else {
            throw ValidationError("--keepalive must be more than 0 and at most 86400 seconds")
        }
        if let nodeID, NodeAddress(nodeID) == nil {
            throw ValidationError("--node-id '\(nodeID)' is not a GUID")
        }
        if let name, !NodeAddress.isValidName(name) {
            throw ValidationError("--name '\(name)' must be 1 to 64 letters and digits")
        }
    }

    /// The TLS context of `--tls`, `--ca`, `--cert`, `--key`; nil without `--tls`. Throws
    /// `ClientError.connectFailed` when a file cannot be used.
    func makeTLS() throws -> ClientTLS? {
        guard tls else { return nil }
        do {
            return try ClientTLS(files: ClientTLSFiles(trustRoots: ca, certificateChain: cert, privateKey: key))
        } catch {
            throw ClientError.connectFailed("TLS: \(error)", endpoint: relay)
        }
    }

    /// `--keepalive` and `--handshake-timeout`, for every link a command opens (to `--relay`, and
    /// to a `--probe`).
    var timing: LinkTiming {
        LinkTiming(keepalive: .milliseconds(Int64(keepalive * 1000)), handshakeLimit: .milliseconds(Int64(handshakeTimeout * 1000)))
    }

    /// `RelayLink.run` to `--relay` with this command's timing: the one place a command's options
    /// become a link, so that a new one reaches every command.
    func link<Result: Sendable>(
        identity: SenderTag, tls: ClientTLS?, localPort: Int? = nil, timeout: (limit: Duration, what: String)? = nil,
        conversation: @escaping @Sendable (inout RelaySession) async throws -> Result
    ) async throws -> Result {
        try await RelayLink.run(
            endpoint: relay, tls: tls, identity: identity, timing: timing, localPort: localPort, timeout: timeout,
            conversation: conversation)
    }

    /// This node as written in `sender_id`: `name@GUID`. Without `--node-id` each call draws a new GUID.
    func makeIdentity() -> SenderTag {
        let given = nodeID.flatMap { NodeAddress($0) }
        let id = given?.id ?? GUID.random()
        return SenderTag(NodeAddress(id: id, name: name ?? given?.name ?? "ptpchat"))
    }
}

/// Parses a `--to` recipient: a GUID, or `name@GUID` of which only the GUID counts.
struct Recipient: ExpressibleByArgument, Sendable {
    var id: GUID

    init?(argument: String) {
        guard let address = NodeAddress(argument) else { return nil }
        id = address.id
    }
}

/// How a link to a relay keeps time: a keepalive every `keepalive`, and at most `handshakeLimit`
/// for the connection, TLS and the relay's answer to HELLO.
struct LinkTiming: Sendable {
    var keepalive: Duration
    var handshakeLimit: Duration
}
