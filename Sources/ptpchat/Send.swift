import ArgumentParser
import Foundation
import PTPProtocol
import PTPPunch

/// `ptpchat send`: delivers one MESSAGE and waits until the relay has answered for every recipient.
struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send one message and wait until the relay delivered or stored it.",
        discussion: """
            The text is the argument, or when there is none, all of stdin (one trailing newline \
            dropped); an empty stdin is an error (exit 64).

            Prints one line on stdout: "delivered to ID" when every recipient has it (the relay's \
            ACK); "stored by the relay: delivered when ID connects" when the relay keeps it for a \
            recipient that is offline (NACK with stored: true) - both exit 0. When the relay refuses \
            it for a recipient (NACK with stored: false) the reason is said in words on stderr and \
            the exit status is 1. --json prints one JSON object instead: "outcome" is "delivered", \
            "stored" (stored for at least one recipient, delivered to the others) or "refused", with \
            "msg_id" and the recipients under "delivered", "stored" and "refused" (each with its \
            NACK "reason"); when no answer came, "outcome" is "failed", with "error" ("connection" \
            or "timeout"; "refused" when the relay refused the connection itself), "message" in \
            words and "exit_status" (the message may or may not have reached the relay). --plain sends the text as it is, on the existing C# client's built-in \
            channel, as that client sends and shows chat.

            Exit status: 0 delivered or stored, \(ClientError.refusedExitCode) refused by the relay, \
            \(ClientError.connectionExitCode) connection failed or lost, \(ClientError.timeoutExitCode) \
            no answer within --timeout, 64 bad usage or nothing to send.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .customLong("to"), help: ArgumentHelp("A recipient's node id (repeatable).", valueName: "guid"))
    var recipients: [Recipient]

    @Option(help: ArgumentHelp("Seconds to wait for the whole exchange.", valueName: "seconds"))
    var timeout: Double = 15

    @Flag(help: "Send the text as it is (not base64), on the existing client's built-in channel.")
    var plain = false

    @Flag(help: "Print the outcome as one JSON object on stdout.")
    var json = false

    @Argument(help: "The text to send (default: read from stdin).")
    var text: String?

    /// `EX_USAGE`, as ArgumentParser exits on a bad option: also for an empty stdin.
    static let usageExitCode: Int32 = 64

    func validate() throws {
        if recipients.isEmpty { throw ValidationError("at least one --to is required") }
        if !(timeout > 0 && timeout <= 86_400) { throw ValidationError("--timeout must be more than 0 and at most 86400 seconds") }
    }

    func run() async throws {
        let text: String
        if let given = self.text {
            text = given
        } else {
            guard let read = Self.readStandardInput() else {
                Console.diagnostic("ptpchat: nothing to send: stdin is empty (give the text as an argument or on stdin)")
                throw ExitCode(Self.usageExitCode)
            }
            text = read
        }
        let identity = connection.makeIdentity()
        // The relay skips the sender among the recipients.
        let recipients = recipients.map(\.id)
        let answerFor = recipients.filter { $0 != identity.address.id }
        let plain = plain
        let messageID = GUID.random()
        let report: DeliveryReport
        do {
            report = try await connection.link(
                identity: identity, tls: try connection.makeTLS(),
                timeout: (.milliseconds(Int64(timeout * 1000)), "after \(timeout) s waiting for the relay to answer for the message")
            ) { session in
                try await session.handshake()
                try await session.send(
                    ClientFrames.message(text, id: messageID, to: recipients, channelID: .random(), from: identity, plain: plain))
                var answers = DeliveryAnswers(messageID: messageID, recipients: answerFor)
                while true {
                    let frame = try await session.next()
                    guard frame.messageID == messageID else { continue }
                    switch frame.verb {
                    case .ack: answers.acked()
                    case .nack: answers.refused(frame.nackRecipients, reason: frame.reason, stored: frame.stored == true)
                    default: continue
                    }
                    if let report = answers.report() { return report }
                }
            }
        } catch let error as ClientError {
            Console.diagnostic("ptpchat: \(error)")
            if json { Console.output(Array(SendFailure(messageID: messageID, error: error).json.utf8)) }
            throw ExitCode(error.exitCode)
        }
        if json {
            Console.output(Array(report.json.utf8))
        } else if let line = report.humanLine {
            Console.output(Array(line.utf8))
        }
        for refusal in report.refused {
            Console.diagnostic(
                "ptpchat: the relay refused the message for \(refusal.node): \(NackReasonText.sentence(refusal.reason, stored: false))"
                    + " (NACK \(refusal.reason ?? "without a reason"))")
        }
        if !report.refused.isEmpty { throw ExitCode(ClientError.refusedExitCode) }
    }

    /// All of stdin as text with one trailing newline dropped (as `echo` adds); nil when empty.
    private static func readStandardInput() -> String? {
        if isatty(STDIN_FILENO) == 1 {
            Console.diagnostic("ptpchat: reading the message from stdin (end it with Ctrl-D)")
        }
        let data = (try? FileHandle.standardInput.readToEnd()) ?? Data()
        var text = String(decoding: data, as: UTF8.self)
        if text.hasSuffix("\r\n") {
            text.removeLast()  // "\r\n" is one Character
        } else if text.hasSuffix("\n") {
            text.removeLast()
        }
        return text.isEmpty ? nil : text
    }
}

/// What the relay said about one message, recipient by recipient: an ACK comes once every next hop
/// has it or its copy is stored; a NACK names the recipients it is about (or all of them),
/// `stored: true` when the relay keeps the message for them.
struct DeliveryAnswers {
    private let messageID: GUID
    private let recipients: [GUID]
    private var unanswered: Set<GUID>
    private var stored: [GUID: String?] = [:]
    private var refused: [GUID: String?] = [:]
    private var isAcked = false

    init(messageID: GUID, recipients: [GUID]) {
        self.messageID = messageID
        var seen = Set<GUID>()
        self.recipients = recipients.filter { seen.insert($0).inserted }
        unanswered = seen
    }

    mutating func acked() { isAcked = true }

    mutating func refused(_ named: [GUID], reason: String?, stored: Bool) {
        let those = named.isEmpty ? unanswered : Set(named).intersection(unanswered)
        unanswered.subtract(those)
        for node in those {
            if stored { self.stored[node] = reason } else { refused[node] = reason }
        }
    }

    /// The report once every recipient is answered for (the ACK answers for all that are left).
    func report() -> DeliveryReport? {
        guard isAcked || unanswered.isEmpty else { return nil }
        func answers(_ table: [GUID: String?]) -> [DeliveryReport.Answer] {
            recipients.compactMap { node in table[node].map { DeliveryReport.Answer(node: node, reason: $0) } }
        }
        return DeliveryReport(
            messageID: messageID,
            delivered: recipients.filter { stored[$0] == nil && refused[$0] == nil },
            stored: answers(stored), refused: answers(refused))
    }
}

/// The outcome of `send` for its message, in the order the recipients were given.
struct DeliveryReport: Equatable, Encodable {
    struct Answer: Equatable, Encodable {
        var node: GUID
        /// The NACK's `reason`.
        var reason: String?

        enum CodingKeys: String, CodingKey {
            case node = "node_id"
            case reason
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(node.description, forKey: .node)
            try container.encode(reason, forKey: .reason)
        }
    }

    enum Outcome: String, Encodable {
        /// Every recipient has it.
        case delivered
        /// The relay stored it for at least one recipient and delivered it to the others.
        case stored
        /// The relay refused it for at least one recipient.
        case refused
    }

    var messageID: GUID
    var delivered: [GUID]
    var stored: [Answer]
    var refused: [Answer]

    var outcome: Outcome { !refused.isEmpty ? .refused : !stored.isEmpty ? .stored : .delivered }

    /// The stdout line; nil when the relay delivered or stored it for no one (all refused: said on stderr).
    var humanLine: String? {
        var parts: [String] = []
        let total = delivered.count + stored.count + refused.count
        if !delivered.isEmpty {
            if delivered.count == total {
                parts.append(total == 1 ? "delivered to \(delivered[0])" : "delivered to all \(total) recipients")
            } else {
                parts.append("delivered to \(delivered.count) of \(total) recipients")
            }
        }
        if !stored.isEmpty {
            let waiting = stored.allSatisfy { $0.reason == NackReason.slowConsumer.rawValue } ? "catches up" : "connects"
            if stored.count == 1 {
                parts.append("stored by the relay: delivered when \(stored[0].node) \(waiting)")
            } else {
                parts.append("stored by the relay for \(stored.count) recipients: delivered when each \(waiting)")
            }
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    /// One JSON object: `outcome`, `msg_id`, `delivered` (node ids), `stored` and `refused`
    /// (`{node_id, reason}` each); keys sorted.
    var json: String { sortedJSON(self) }

    enum CodingKeys: String, CodingKey {
        case outcome, delivered, stored, refused
        case messageID = "msg_id"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(outcome, forKey: .outcome)
        try container.encode(messageID.description, forKey: .messageID)
        try container.encode(delivered.map(\.description), forKey: .delivered)
        try container.encode(stored, forKey: .stored)
        try container.encode(refused, forKey: .refused)
    }
}

/// The `--json` line when no answer came for the message: why, in a word and in words.
struct SendFailure: Encodable {
    var messageID: GUID
    var error: ClientError

    enum CodingKeys: String, CodingKey {
        case outcome, error, message
        case messageID = "msg_id"
        case exitStatus = "exit_status"
    }

    /// `connection`, `timeout` or `refused` (the HELLO), as the exit status tells them apart.
    var kind: String {
        switch error {
        case .refused: "refused"
        case .connectFailed, .connectionLost: "connection"
        case .timedOut: "timeout"
        }
    }

    var json: String { sortedJSON(self) }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode("failed", forKey: .outcome)
        try container.encode(kind, forKey: .error)
        try container.encode(error.description, forKey: .message)
        try container.encode(messageID.description, forKey: .messageID)
        try container.encode(error.exitCode, forKey: .exitStatus)
    }
}

/// One JSON object, keys sorted: what `send --json` prints.
private func sortedJSON(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(value) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}
