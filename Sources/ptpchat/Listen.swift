import ArgumentParser
import Foundation
import NIOCore
import PTPProtocol
import PTPPunch

/// `ptpchat listen`: prints every MESSAGE that arrives as one line on stdout and ACKs it: a readable
/// line (`ReadableLine`) by default, with `--json` the frame with two members added: `text`, the
/// message decoded (base64 as SPEC.md says, or plain as the existing client sends it), and
/// `text_encoding`, which of the two it was. With `--all` the floods (JOIN, LEAVE, CHANNEL) too.
/// With `--accept-punch` it also answers punches (docs/nat-traversal.md) and each line says which
/// `path` the message took, `direct` or `relay`.
struct Listen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Receive messages: print one line per MESSAGE on stdout and ACK it.",
        discussion: """
            Each message is one line: the local time it arrived, the sender's name and id, its \
            channel (#name) when it has one, and its text decoded; characters a terminal would act \
            on (escape sequences, line breaks) are shown escaped, as \\n or \\u{1b}. --json prints \
            the frame as one JSON line instead, with "text" (decoded) and "text_encoding" \
            ("base64" or "plain") added. --all also shows JOIN, LEAVE and CHANNEL floods.

            Prints `ready <node-id>` on stderr once the relay has bound the connection (with \
            --accept-punch: once its public address is known). Runs until the connection \
            ends, then exits non-zero with the reason. With --accept-punch it answers CONNECT step 2 \
            with step 3, dials the initiator from its punching port, and takes messages over direct \
            links as well as from the relay; one line per punch on stderr says what happened (with \
            --json also one JSON object on stdout).
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(
        name: .customLong("join"),
        help: ArgumentHelp(
            "Announce this node as a member of a channel (JOIN) once bound (repeatable). The existing C# client sends chat only to members of its built-in channel \(LegacyClientChannel.id).",
            valueName: "channel-id"))
    var channels: [String] = []

    @Option(help: ArgumentHelp("The channel name sent with --join.", valueName: "name"))
    var channelName: String = LegacyClientChannel.name

    @Flag(name: .customLong("accept-punch"), help: "Answer hole punches (`ptpchat punch`) and take messages over the direct links.")
    var acceptPunch = false

    @Flag(help: "Print each message as its JSON frame with \"text\" and \"text_encoding\" added (and punch reports as JSON objects).")
    var json = false

    @Flag(help: "Also show the floods: JOIN, LEAVE and CHANNEL.")
    var all = false

    @Option(
        name: .customLong("punch-deadline"),
        help: ArgumentHelp("With --accept-punch: seconds each punch may take before it stays on the relay.", valueName: "seconds"))
    var punchDeadline: Double = 5

    @Flag(name: .customLong("no-rtt-hint"), help: "With --accept-punch: dial at once instead of waiting the relay's RTT hint.")
    var noRTTHint = false

    @Option(
        help: ArgumentHelp(
            "With --accept-punch: a second address of the relay to detect a symmetric NAT at start (punches are then answered but not dialed).",
            valueName: "host:port"))
    var probe: Endpoint?

    @Flag(
        name: .customLong("punch-no-direct"),
        help: ArgumentHelp("With --accept-punch: answer punches but neither listen nor dial (as behind a port that is blocked).", visibility: .hidden))
    var punchNoDirect = false

    /// How long to wait for the relay's answer to address discovery at start.
    static let discoveryTimeout: Duration = .seconds(5)

    func validate() throws {
        if !acceptPunch, noRTTHint || punchNoDirect || probe != nil {
            throw ValidationError("--no-rtt-hint, --probe and --punch-no-direct need --accept-punch")
        }
        if !(punchDeadline > 0 && punchDeadline <= 600) {
            throw ValidationError("--punch-deadline must be more than 0 and at most 600 seconds")
        }
    }

    func run() async throws {
        let identity = connection.makeIdentity()
        let channels = channels
        let channelName = channelName
        let output = output
        let responder = acceptPunch ? PunchAnswering(listen: self, identity: identity, tls: try connection.makeTLS()) : nil
        do {
            try await connection.link(identity: identity, tls: try connection.makeTLS(), localPort: acceptPunch ? 0 : nil) { session in
                try await session.handshake()
                for channel in channels {
                    try await session.send(ClientFrames.join(channelID: channel, channel: channelName, from: identity))
                }
                if let responder {
                    // Prints `ready` itself once the public address is known; runs until the connection ends.
                    try await responder.run(&session)
                    throw ClientError.connectionLost("closed by the relay")
                }
                Console.diagnostic("ready \(identity.address.id)")
                while true {
                    let frame = try await session.next()
                    try await Self.handle(frame, on: session.writer, identity: identity, output: output, path: nil)
                }
            }
        } catch let error as ClientError {
            Console.diagnostic("ptpchat: \(error)")
            throw ExitCode(error.exitCode)
        }
    }

    var output: ListenOutput { ListenOutput(json: json, floods: all) }

    /// A frame from the relay: a MESSAGE is printed and ACKed, a flood printed when asked, a NACK reported.
    static func handle(
        _ frame: InboundFrame, on writer: RelayWriter, identity: SenderTag, output: ListenOutput, path: PunchReport.Path?
    ) async throws {
        switch frame.verb {
        case .message:
            output.show(frame, path: path)
            if let id = frame.messageID {
                try await writer.send(ClientFrames.ack(id, from: identity))
            }
        case .join, .leave, .channel:
            if output.floods { output.show(frame, path: nil) }
        case .nack:
            Console.diagnostic(
                "ptpchat: NACK for \(frame.messageID.map(String.init(describing:)) ?? "?"): "
                    + "\(frame.reason ?? "no reason")")
        default:
            break
        }
    }
}

/// How `listen` prints what it receives; made once by `Listen` from its options and shared with
/// `PunchAnswering` (messages over direct links are printed the same way).
struct ListenOutput: Sendable {
    /// `--json`: each frame as its JSON line (a MESSAGE with `text` and `text_encoding` added).
    var json: Bool
    /// `--all`: JOIN, LEAVE and CHANNEL are shown too.
    var floods: Bool

    func show(_ frame: InboundFrame, path: PunchReport.Path?) {
        if json {
            Console.output(frame.verb == .message ? Listen.line(frame, path: path) : frame.line)
        } else if let line = ReadableLine.format(frame.line, at: Date(), path: path?.rawValue) {
            Console.output(Array(line.utf8))
        }
    }
}

extension Listen {
    /// The frame's JSON with `"text"` and `"text_encoding"` (and `"path"` when given) added before
    /// its closing brace.
    static func line(_ frame: InboundFrame, path: PunchReport.Path? = nil) -> [UInt8] {
        guard let message = frame.message, frame.line.last == UInt8(ascii: "}") else { return frame.line }
        let (text, encoding) = MessageText.decode(message)
        var out = ByteBuffer()
        out.writeBytes(frame.line.dropLast())
        out.writeASCII(",\"text\":")
        out.writeJSONString(text)
        out.writeASCII(",\"text_encoding\":")
        out.writeJSONString(encoding.rawValue)
        if let path {
            out.writeASCII(",\"path\":")
            out.writeJSONString(path.rawValue)
        }
        out.writeInteger(UInt8(ascii: "}"))
        return Array(out.readableBytesView)
    }
}
