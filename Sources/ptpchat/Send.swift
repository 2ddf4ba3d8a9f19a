import ArgumentParser
import PTPProtocol

/// `ptpchat send`: delivers one MESSAGE and waits for the relay's ACK or NACK.
struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send one message and wait until the relay ACKs it.",
        discussion: """
            Exits 0 on the relay's ACK; on a NACK prints its reason (and whether the relay stored \
            the message) on stderr and exits non-zero.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .customLong("to"), help: ArgumentHelp("A recipient's node id (repeatable).", valueName: "guid"))
    var recipients: [Recipient]

    @Option(help: ArgumentHelp("Seconds to wait for the whole exchange.", valueName: "seconds"))
    var timeout: Double = 15

    @Argument(help: "The text to send.")
    var text: String

    func validate() throws {
        if recipients.isEmpty { throw ValidationError("at least one --to is required") }
        if !(timeout > 0 && timeout <= 86_400) { throw ValidationError("--timeout must be more than 0 and at most 86400 seconds") }
    }

    func run() async throws {
        let identity = connection.makeIdentity()
        let recipients = recipients.map(\.id)
        let text = text
        let messageID = GUID.random()
        do {
            try await RelayLink.run(
                endpoint: connection.relay, identity: identity, keepalive: connection.keepaliveInterval,
                timeout: (.milliseconds(Int64(timeout * 1000)), "after \(timeout) s waiting for the relay to ACK the message")
            ) { session in
                try await session.handshake()
                try await session.send(
                    ClientFrames.message(text, id: messageID, to: recipients, channelID: .random(), from: identity))
                while true {
                    let frame = try await session.next()
                    guard frame.messageID == messageID else { continue }
                    switch frame.verb {
                    case .ack: return
                    case .nack: throw ClientError.refused(verb: "MESSAGE", reason: frame.reason, stored: frame.stored)
                    default: continue
                    }
                }
            }
            Console.diagnostic("ptpchat: message \(messageID) acknowledged")
        } catch let error as ClientError {
            Console.diagnostic("ptpchat: \(error)")
            throw ExitCode(error.exitCode)
        }
    }
}
