import ArgumentParser
import PTPProtocol
import PTPPunch

/// `ptpchat send`: delivers one MESSAGE and waits until the relay has answered for every recipient.
struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send one message and wait until the relay delivered or stored it.",
        discussion: """
            Exits 0 when the message was delivered (the relay's ACK) or stored by the relay for a \
            recipient that is offline (NACK with stored: true), and says which on stderr. When the \
            relay refuses it for a recipient (NACK with stored: false), prints the reason on stderr \
            and exits 1. --plain sends the text as it is, on the existing C# client's built-in \
            channel, as that client sends and shows chat.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .customLong("to"), help: ArgumentHelp("A recipient's node id (repeatable).", valueName: "guid"))
    var recipients: [Recipient]

    @Option(help: ArgumentHelp("Seconds to wait for the whole exchange.", valueName: "seconds"))
    var timeout: Double = 15

    @Flag(help: "Send the text as it is (not base64), on the existing client's built-in channel.")
    var plain = false

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
        let plain = plain
        let messageID = GUID.random()
        do {
            let outcome = try await RelayLink.run(
                endpoint: connection.relay, tls: try connection.makeTLS(), identity: identity, keepalive: connection.keepaliveInterval,
                timeout: (.milliseconds(Int64(timeout * 1000)), "after \(timeout) s waiting for the relay to answer for the message")
            ) { session in
                try await session.handshake()
                try await session.send(
                    ClientFrames.message(text, id: messageID, to: recipients, channelID: .random(), from: identity, plain: plain))
                // The relay skips the sender among the recipients.
                var answers = DeliveryAnswers(recipients: recipients.filter { $0 != identity.address.id })
                while true {
                    let frame = try await session.next()
                    guard frame.messageID == messageID else { continue }
                    switch frame.verb {
                    case .ack: answers.acked()
                    case .nack: answers.refused(frame.nackRecipients, reason: frame.reason, stored: frame.stored == true)
                    default: continue
                    }
                    if let outcome = try answers.outcome() { return outcome }
                }
            }
            switch outcome {
            case .delivered:
                Console.diagnostic("ptpchat: message \(messageID) delivered")
            case .stored(let count, let total) where count == total:
                Console.diagnostic("ptpchat: message \(messageID) stored by the relay: it is delivered when the recipient comes online")
            case .stored(let count, let total):
                Console.diagnostic(
                    "ptpchat: message \(messageID) delivered to \(total - count) of \(total) recipients and stored by the relay for the other \(count)")
            }
        } catch let error as ClientError {
            Console.diagnostic("ptpchat: \(error)")
            throw ExitCode(error.exitCode)
        }
    }
}

/// What the relay said about one message: an ACK comes once every next hop has it or its copy
/// is stored; a NACK names the recipients it is about (or all of them), `stored: true` when the
/// relay keeps the message for them.
struct DeliveryAnswers {
    enum Outcome: Equatable {
        case delivered
        /// Stored for `count` of `total` recipients, delivered to the others.
        case stored(count: Int, total: Int)
    }

    private let total: Int
    private var unanswered: Set<GUID>
    private var stored: Set<GUID> = []
    private var refusal: ClientError?
    private var isAcked = false

    init(recipients: [GUID]) {
        unanswered = Set(recipients)
        total = unanswered.count
    }

    mutating func acked() { isAcked = true }

    mutating func refused(_ named: [GUID], reason: String?, stored: Bool) {
        let those = named.isEmpty ? unanswered : Set(named)
        unanswered.subtract(those)
        if stored {
            self.stored.formUnion(those)
        } else if refusal == nil {
            refusal = .refused(verb: "MESSAGE", reason: reason, stored: false)
        }
    }

    /// The outcome once every recipient is answered for; throws the first refusal.
    func outcome() throws(ClientError) -> Outcome? {
        guard isAcked || unanswered.isEmpty else { return nil }
        if let refusal { throw refusal }
        return stored.isEmpty ? .delivered : .stored(count: stored.count, total: total)
    }
}
