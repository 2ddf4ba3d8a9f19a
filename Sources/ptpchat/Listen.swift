import ArgumentParser
import NIOCore
import PTPProtocol

/// `ptpchat listen`: prints every MESSAGE that arrives as one JSON line on stdout and ACKs it.
/// The line is the frame with two members added: `text`, the message decoded (base64 as SPEC.md
/// says, or plain as the existing client sends it), and `text_encoding`, which of the two it was.
struct Listen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Receive messages: print each MESSAGE as one JSON line on stdout and ACK it.",
        discussion: """
            Prints `ready <node-id>` on stderr once the relay has bound the connection. Runs until \
            the connection ends, then exits non-zero with the reason.
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

    func run() async throws {
        let identity = connection.makeIdentity()
        do {
            try await RelayLink.run(
                endpoint: connection.relay, tls: try connection.makeTLS(), identity: identity, keepalive: connection.keepaliveInterval
            ) { session in
                try await session.handshake()
                for channel in channels {
                    try await session.send(ClientFrames.join(channelID: channel, channel: channelName, from: identity))
                }
                Console.diagnostic("ready \(identity.address.id)")
                while true {
                    let frame = try await session.next()
                    switch frame.verb {
                    case .message:
                        Console.output(Self.line(frame))
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

extension Listen {
    /// The frame's JSON with `"text"` and `"text_encoding"` added before its closing brace.
    static func line(_ frame: InboundFrame) -> [UInt8] {
        guard let message = frame.message, frame.line.last == UInt8(ascii: "}") else { return frame.line }
        let (text, encoding) = MessageText.decode(message)
        var out = ByteBuffer()
        out.writeBytes(frame.line.dropLast())
        out.writeASCII(",\"text\":")
        out.writeJSONString(text)
        out.writeASCII(",\"text_encoding\":")
        out.writeJSONString(encoding.rawValue)
        out.writeInteger(UInt8(ascii: "}"))
        return Array(out.readableBytesView)
    }
}
