import NIOCore
import PTPProtocol

/// What the client needs of one frame from the relay or from a direct link.
public struct InboundFrame: Sendable {
    public var verb: Verb
    /// `msg_data.msg_id`, else the head `msg_id`: for ACK and NACK the id they answer.
    public var messageID: GUID?
    /// Head `sender_id`'s id: for the relay's HELLO and ROUTING, the relay's own id.
    public var sender: GUID?
    /// `msg_data.node_id`, else head `sender_id`: for a HELLO, the node it binds.
    public var origin: GUID?
    /// NACK `reason` and `stored`.
    public var reason: String?
    public var stored: Bool?
    /// NACK: the recipients it names (`msg_data.recipient`); empty when it names none.
    public var nackRecipients: [GUID] = []
    /// MESSAGE: `msg_data.message`, as sent.
    public var message: String?
    /// CONNECT: its members (PROFILE.md section 8 and docs/nat-traversal.md).
    public var connect: ConnectFields?
    /// The frame as one line of compact, ASCII-only JSON.
    public var line: [UInt8]

    /// The members of a CONNECT: node ids, addresses as written (an empty string reads as nil),
    /// the relay's RTT hints and the outcome report's members.
    public struct ConnectFields: Sendable, Equatable {
        public var sourceNode: GUID
        public var destinationNode: GUID
        public var src: String?
        public var dst: String?
        public var sourceRTTMilliseconds: Int?
        public var destinationRTTMilliseconds: Int?
        /// `rtt_hint: false` (the initiator asks not to wait for the hint).
        public var rttHintRefused = false
        public var result: String?
        /// Step 3 and 4: the responder's `nat` when it found its NAT symmetric.
        public var nat: String?

        public init(
            sourceNode: GUID, destinationNode: GUID, src: String?, dst: String?, sourceRTTMilliseconds: Int? = nil,
            destinationRTTMilliseconds: Int? = nil, rttHintRefused: Bool = false, result: String? = nil,
            nat: String? = nil
        ) {
            self.sourceNode = sourceNode
            self.destinationNode = destinationNode
            self.src = src
            self.dst = dst
            self.sourceRTTMilliseconds = sourceRTTMilliseconds
            self.destinationRTTMilliseconds = destinationRTTMilliseconds
            self.rttHintRefused = rttHintRefused
            self.result = result
            self.nat = nat
        }
    }

    /// Reads `frame`; throws `InvalidMessage` when it is not a valid message.
    public static func read(_ frame: ByteBuffer, with reader: inout MessageReader) throws(InvalidMessage) -> InboundFrame {
        let result: Result<InboundFrame, InvalidMessage> = frame.withUnsafeReadableBytes { bytes in
            do throws(InvalidMessage) {
                let envelope = try reader.read(bytes)
                let tape = reader.tape
                func string(_ key: StaticString) -> String? {
                    guard let token = tape.member(key, in: envelope.data, of: bytes), tape[token].kind == .string else { return nil }
                    let value = tape.string(token, of: bytes)
                    return value.isEmpty ? nil : value
                }
                func integer(_ key: StaticString) -> Int? {
                    guard let token = tape.member(key, in: envelope.data, of: bytes) else { return nil }
                    return tape.integer(token, of: bytes)
                }
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
                var connect: ConnectFields?
                if envelope.verb == .connect, let source = envelope.connectSource, let destination = envelope.connectDestination {
                    var refused = false
                    if let token = tape.member("rtt_hint", in: envelope.data, of: bytes), tape[token].kind == .false { refused = true }
                    connect = ConnectFields(
                        sourceNode: source, destinationNode: destination, src: string("src"), dst: string("dst"),
                        sourceRTTMilliseconds: integer("src_rtt_ms"), destinationRTTMilliseconds: integer("dst_rtt_ms"),
                        rttHintRefused: refused, result: string("result"), nat: string("nat"))
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
                        verb: envelope.verb, messageID: envelope.messageID, sender: envelope.sender?.id, origin: envelope.origin?.id,
                        reason: envelope.reason, stored: stored, nackRecipients: nackRecipients, message: message, connect: connect,
                        line: line))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}
