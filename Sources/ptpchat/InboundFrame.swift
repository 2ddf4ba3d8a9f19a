import NIOCore
import PTPProtocol

/// What the client needs of one frame from the relay.
struct InboundFrame: Sendable {
    var verb: Verb
    /// `msg_data.msg_id`, else the head `msg_id`: for ACK and NACK the id they answer.
    var messageID: GUID?
    /// NACK `reason` and `stored`.
    var reason: String?
    var stored: Bool?
    /// NACK: the recipients it names (`msg_data.recipient`); empty when it names none.
    var nackRecipients: [GUID] = []
    /// MESSAGE: `msg_data.message`, as sent.
    var message: String?
    /// The frame as one line of compact, ASCII-only JSON.
    var line: [UInt8]

    /// Reads `frame`; throws `InvalidMessage` when it is not a valid message.
    static func read(_ frame: ByteBuffer, with reader: inout MessageReader) throws(InvalidMessage) -> InboundFrame {
        let result: Result<InboundFrame, InvalidMessage> = frame.withUnsafeReadableBytes { bytes in
            do throws(InvalidMessage) {
                let envelope = try reader.read(bytes)
                let tape = reader.tape
                var stored: Bool?
                if let token = tape.member("stored", in: envelope.data, of: bytes) {
                    switch tape[token].kind {
                    case .true: stored = true
                    case .false: stored = false
                    default: break
                    }
                }
                var nackRecipients: [GUID] = []
                if envelope.verb == .nack, let list = tape.member("recipient", in: envelope.data, of: bytes), tape[list].kind == .array {
                    tape.forEachElement(of: list) { element in
                        guard tape[element].kind == .object, let node = tape.member("node_id", in: element, of: bytes),
                            tape[node].kind == .string, let address = NodeAddress(tape.string(node, of: bytes))
                        else { return }
                        nackRecipients.append(address.id)
                    }
                }
                var message: String?
                if envelope.verb == .message, let token = tape.member("message", in: envelope.data, of: bytes), tape[token].kind == .string {
                    message = tape.string(token, of: bytes)
                }
                var line: [UInt8]
                if tape.isCompactASCII {
                    line = Array(bytes)
                } else {
                    var compact = ByteBuffer()
                    compact.writeCompactJSON(bytes, compactASCII: false)
                    line = Array(compact.readableBytesView)
                }
                return .success(
                    InboundFrame(
                        verb: envelope.verb, messageID: envelope.messageID, reason: envelope.reason, stored: stored,
                        nackRecipients: nackRecipients, message: message, line: line))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}
