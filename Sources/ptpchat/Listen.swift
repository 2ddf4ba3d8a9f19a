import ArgumentParser
import PTPProtocol

/// `ptpchat listen`: prints every MESSAGE that arrives as one JSON line on stdout and ACKs it.
struct Listen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Receive messages: print each MESSAGE as one JSON line on stdout and ACK it.",
        discussion: """
            Prints `ready <node-id>` on stderr once the relay has bound the connection. Runs until \
            the connection ends, then exits non-zero with the reason.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let identity = connection.makeIdentity()
        do {
            try await RelayLink.run(
                endpoint: connection.relay, identity: identity, keepalive: connection.keepaliveInterval
            ) { session in
                try await session.handshake()
                Console.diagnostic("ready \(identity.address.id)")
                while true {
                    let frame = try await session.next()
                    switch frame.verb {
                    case .message:
                        Console.output(frame.line)
                        if let id = frame.messageID {
                            try await session.send(ClientFrames.ack(id, from: identity))
                        }
                    case .nack:
                        Console.diagnostic(
                            "ptpchat: NACK for \(frame.messageID.map(String.init(describing:)) ?? "?"): "
                                + "\(frame.reason ?? "no reason")")
                    default:
                        continue
                    }
                }
            }
        } catch let error as ClientError {
            Console.diagnostic("ptpchat: \(error)")
            throw ExitCode(error.exitCode)
        }
    }
}
