/// Reads an `Envelope` from a frame and validates the verb's `msg_data` as SPEC.md and PROFILE.md
/// say: required keys present and of the right type, extra keys ignored.
public struct MessageReader: Sendable {
    public var tape = JSONTape()

    public init() {}

    /// `handshakeDone` decides whether a HELLO with `message` and `recipient` is a chat frame.
    public mutating func read(_ bytes: UnsafeRawBufferPointer, handshakeDone: Bool = true) throws(InvalidMessage) -> Envelope {
        do {
            try tape.parse(bytes)
        } catch {
            throw InvalidMessage(error.description)
        }
        return try Self.envelope(tape.view, bytes, handshakeDone: handshakeDone)
    }

    @inline(__always)
    static func envelope(_ tape: JSONTape.View, _ bytes: UnsafeRawBufferPointer, handshakeDone: Bool) throws(InvalidMessage) -> Envelope {
        guard tape[0].kind == .object else { throw InvalidMessage("frame is not a JSON object") }
        let fields = Fields(tape: tape, bytes: bytes)

        // Head: read everything first so the NACK for an invalid message can name its id.
        var verbToken: Int?
        var ttlToken: Int?
        var floodToken: Int?
        var headIDToken: Int?
        var senderToken: Int?
        var targetToken: Int?
        var dataToken: Int?
        tape.forEachMember(of: 0) { key, value in
            let token = tape[key]
            guard !token.escaped else { return }
            let start = Int(token.start)
            let end = Int(token.end)
            switch end - start {
            case 3 where JSONTape.View.equals("ttl", bytes, start, end): ttlToken = value
            case 5 where JSONTape.View.equals("flood", bytes, start, end): floodToken = value
            case 6 where JSONTape.View.equals("msg_id", bytes, start, end): headIDToken = value
            case 8 where JSONTape.View.equals("msg_type", bytes, start, end): verbToken = value
            case 8 where JSONTape.View.equals("msg_data", bytes, start, end): dataToken = value
            case 9 where JSONTape.View.equals("sender_id", bytes, start, end): senderToken = value
            case 9 where JSONTape.View.equals("target_id", bytes, start, end): targetToken = value
            default: break
            }
        }

        var members = DataMembers()
        if let dataToken, tape[dataToken].kind == .object {
            members.collect(tape, bytes, object: dataToken)
        }

        var headMessageID: GUID?
        if let headIDToken, tape[headIDToken].kind == .string, let id = fields.guid(headIDToken), !id.isZero {
            headMessageID = id
        }
        var dataMessageID: GUID?
        var dataIDInvalid = false
        if let idToken = members.msgID {
            if tape[idToken].kind == .string, let id = fields.guid(idToken) {
                // An all-zero id is no id: the head's is used, as for the existing client's frames.
                if !id.isZero { dataMessageID = id }
            } else {
                dataIDInvalid = true
            }
        }
        let messageID = dataMessageID ?? headMessageID

        func invalid(_ reason: String, _ verb: Verb? = nil) -> InvalidMessage {
            InvalidMessage(reason, messageID: messageID, verb: verb)
        }

        guard let verbToken else { throw invalid("no msg_type") }
        guard tape[verbToken].kind == .string, let parsedVerb = Verb(bytes: tape.rawString(verbToken, of: bytes)) else {
            throw invalid("unknown msg_type")
        }
        var verb = parsedVerb
        guard let dataToken, tape[dataToken].kind == .object else { throw invalid("msg_data is not an object", verb) }
        if dataIDInvalid { throw invalid("msg_data.msg_id is not a GUID", verb) }

        var ttl = verb.defaultTTL
        if let ttlToken {
            switch tape[ttlToken].kind {
            case .number:
                guard let value = tape.integer(ttlToken, of: bytes) else { throw invalid("ttl is not an integer", verb) }
                ttl = value
            case .null: break
            default: throw invalid("ttl is not an integer", verb)
            }
        }
        var flood = verb.defaultFlood
        if let floodToken {
            switch tape[floodToken].kind {
            case .true: flood = true
            case .false: flood = false
            case .null: break
            default: throw invalid("flood is not a boolean", verb)
            }
        }
        var sender: NodeAddress?
        if let senderToken {
            switch tape[senderToken].kind {
            case .null: break
            case .string:
                guard let address = fields.address(senderToken) else { throw invalid("sender_id is not a node id", verb) }
                sender = address
            default: throw invalid("sender_id is not a string", verb)
            }
        }
        var target: GUID?
        if let targetToken {
            switch tape[targetToken].kind {
            case .null: break
            case .string:
                guard let address = fields.address(targetToken) else { throw invalid("target_id is not a node id", verb) }
                target = address.id
            default: throw invalid("target_id is not a string", verb)
            }
        }
        var dataNodeID: NodeAddress?
        if let nodeToken = members.nodeID {
            switch tape[nodeToken].kind {
            case .null: break
            case .string:
                guard let address = fields.address(nodeToken) else { throw invalid("msg_data.node_id is not a node id", verb) }
                dataNodeID = address
            default: throw invalid("msg_data.node_id is not a string", verb)
            }
        }

        var isLabelledChat = false
        if verb == .hello, handshakeDone, members.message != nil, members.recipient != nil {
            verb = .message
            isLabelledChat = true
        }

        var envelope = Envelope(
            verb: verb, isLabelledChat: isLabelledChat, ttl: ttl, flood: flood, messageID: messageID,
            headMessageID: headMessageID, sender: sender, dataNodeID: dataNodeID, target: target, data: dataToken)
        do {
            try fields.validate(&envelope, members)
        } catch {
            throw invalid(error.reason, verb)
        }
        return envelope
    }
}

private struct FieldError: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Typed access to `msg_data` members, throwing a reason that names the key.
private struct Fields {
    let tape: JSONTape.View
    let bytes: UnsafeRawBufferPointer

    func guid(_ token: Int) -> GUID? {
        GUID(canonical: tape.rawString(token, of: bytes))
    }

    func address(_ token: Int) -> NodeAddress? {
        guard !tape[token].escaped else { return NodeAddress(tape.string(token, of: bytes)) }
        return NodeAddress(bytes: tape.rawString(token, of: bytes))
    }

    func member(_ key: StaticString, _ object: Int) -> Int? {
        guard let token = tape.member(key, in: object, of: bytes), tape[token].kind != .null else { return nil }
        return token
    }

    @discardableResult
    func requireString(_ token: Int?, _ key: StaticString) throws(FieldError) -> Int {
        guard let token else { throw FieldError("msg_data.\(key) is missing") }
        guard tape[token].kind == .string else { throw FieldError("msg_data.\(key) is not a string") }
        return token
    }

    func optionalString(_ token: Int?, _ key: StaticString) throws(FieldError) -> Int? {
        guard let token else { return nil }
        guard tape[token].kind == .string else { throw FieldError("msg_data.\(key) is not a string") }
        return token
    }

    func requireNodeID(_ token: Int?, _ key: StaticString) throws(FieldError) -> GUID {
        let token = try requireString(token, key)
        guard let address = address(token) else { throw FieldError("msg_data.\(key) is not a node id") }
        return address.id
    }

    func optionalNodeID(_ token: Int?, _ key: StaticString) throws(FieldError) -> GUID? {
        guard let token = try optionalString(token, key) else { return nil }
        guard let address = address(token) else { throw FieldError("msg_data.\(key) is not a node id") }
        return address.id
    }

    func requireArray(_ token: Int?, _ key: StaticString) throws(FieldError) -> Int {
        guard let token else { throw FieldError("msg_data.\(key) is missing") }
        guard tape[token].kind == .array else { throw FieldError("msg_data.\(key) is not an array") }
        return token
    }

    @discardableResult
    func requireString(_ key: StaticString, _ object: Int) throws(FieldError) -> Int {
        guard let token = member(key, object) else { throw FieldError("msg_data.\(key) is missing") }
        guard tape[token].kind == .string else { throw FieldError("msg_data.\(key) is not a string") }
        return token
    }

    func optionalString(_ key: StaticString, _ object: Int) throws(FieldError) -> Int? {
        guard let token = member(key, object) else { return nil }
        guard tape[token].kind == .string else { throw FieldError("msg_data.\(key) is not a string") }
        return token
    }

    func requireNodeID(_ key: StaticString, _ object: Int) throws(FieldError) -> GUID {
        let token = try requireString(key, object)
        guard let address = address(token) else { throw FieldError("msg_data.\(key) is not a node id") }
        return address.id
    }



    func requireMessageID(_ envelope: Envelope) throws(FieldError) {
        if envelope.messageID == nil { throw FieldError("msg_id is missing") }
    }

    func requireOrigin(_ envelope: Envelope) throws(FieldError) {
        if envelope.origin == nil { throw FieldError("neither msg_data.node_id nor sender_id names the sender") }
    }

    func validate(_ envelope: inout Envelope, _ m: DataMembers) throws(FieldError) {
        switch envelope.verb {
        case .hello:
            if let sender = envelope.sender, let node = envelope.dataNodeID, sender.id != node.id {
                throw FieldError("sender_id and msg_data.node_id name different nodes")
            }
            try requireOrigin(envelope)
            if let version = try optionalString(m.version, "version") {
                envelope.declaresLegacyClient = tape.string(version, of: bytes).hasPrefix("ptpchat-client")
            }
            if let attributes = m.attributes {
                guard tape[attributes].kind == .object else { throw FieldError("msg_data.attributes is not an object") }
                if let type = try optionalString("node_type", attributes) {
                    let start = Int(tape[type].start)
                    let end = Int(tape[type].end)
                    envelope.declaresServer = JSONTape.View.equals("server", bytes, start, end)
                    envelope.declaresLegacyClient = envelope.declaresLegacyClient || JSONTape.View.equals("string", bytes, start, end)
                }
                // The mesh proof attributes: a value that is not a string is no value (never refused).
                if let nonce = member("mesh_nonce", attributes), tape[nonce].kind == .string {
                    envelope.meshNonce = tape.string(nonce, of: bytes)
                }
                if let proof = member("mesh_proof", attributes), tape[proof].kind == .string {
                    envelope.meshProof = tape.string(proof, of: bytes)
                }
            }

        case .ack, .nack:
            // A present `msg_data.msg_id` was parsed above (a non-GUID there is refused before this).
            guard m.msgID != nil else { throw FieldError("msg_data.msg_id is missing") }
            if envelope.verb == .nack, let reason = try optionalString(m.reason, "reason") {
                envelope.reason = tape.string(reason, of: bytes)
            }
            if envelope.verb == .nack, let stored = m.stored {
                envelope.nackStored = tape[stored].kind == .true
            }

        case .join, .leave:
            try requireString(m.channel, "channel")
            try requireString(m.channelID, "channel_id")

        case .channel:
            try requireString(m.channel, "channel")
            let channelID = try requireString(m.channelID, "channel_id")
            envelope.channelID = tape.string(channelID, of: bytes)
            let members = try requireArray(m.members, "members")
            try tape.forEachElement(of: members) { (element: Int) throws(FieldError) in
                guard tape[element].kind == .object else { throw FieldError("msg_data.members has an element that is not an object") }
                _ = try requireNodeID("node_id", element)
            }
            if let closed = m.closed {
                switch tape[closed].kind {
                case .true, .false, .string: break
                default: throw FieldError("msg_data.closed is not a boolean")
                }
            }

        case .getCertificate:
            try requireMessageID(envelope)
            envelope.recipientID = try optionalNodeID(m.recipientID, "recipient_id") ?? envelope.target

        case .certificate:
            try requireMessageID(envelope)
            envelope.recipientID = try requireNodeID(m.recipientID, "recipient_id")
            try requireString(m.certificate, "certificate")

        case .getKey:
            try requireMessageID(envelope)
            try requireString(m.channel, "channel")
            try requireString(m.channelID, "channel_id")
            envelope.recipientID = try optionalNodeID(m.recipientID, "recipient_id") ?? envelope.target

        case .key:
            try requireMessageID(envelope)
            envelope.recipientID = try requireNodeID(m.recipientID, "recipient_id")
            try requireString(m.channel, "channel")
            try requireString(m.channelID, "channel_id")
            try requireString(m.cipher, "cipher")
            try requireString(m.key, "key")

        case .message:
            try requireMessageID(envelope)
            let recipients = try requireArray(m.recipient, "recipient")
            var ids = Recipients()
            try tape.forEachElement(of: recipients) { (element: Int) throws(FieldError) in
                guard tape[element].kind == .object else { throw FieldError("msg_data.recipient has an element that is not an object") }
                let id = try requireNodeID("node_id", element)
                if ids.isEmpty { ids = Recipients(id) } else { ids.append(id) }
            }
            guard !ids.isEmpty else { throw FieldError("msg_data.recipient is empty") }
            envelope.recipients = ids
            try requireString(m.timestamp, "timestamp")
            try requireString(m.channel, "channel")
            try requireString(m.channelID, "channel_id")
            try requireString(m.message, "message")
            if let attachments = m.attachment {
                guard tape[attachments].kind == .array else { throw FieldError("msg_data.attachment is not an array") }
                try tape.forEachElement(of: attachments) { (element: Int) throws(FieldError) in
                    guard tape[element].kind == .object else { throw FieldError("msg_data.attachment has an element that is not an object") }
                    try requireString("attachment", element)
                    try requireString("attachment_type", element)
                }
            }

        case .routing:
            let nodes = try requireArray(m.nodes, "nodes")
            try tape.forEachElement(of: nodes) { (element: Int) throws(FieldError) in
                guard tape[element].kind == .object else { throw FieldError("msg_data.nodes has an element that is not an object") }
                _ = try requireNodeID("node_id", element)
                guard let ttl = member("ttl", element) else { throw FieldError("msg_data.nodes[].ttl is missing") }
                switch tape[ttl].kind {
                case .number:
                    guard tape.integer(ttl, of: bytes) != nil else { throw FieldError("msg_data.nodes[].ttl is not an integer") }
                case .string:
                    guard Int(tape.string(ttl, of: bytes)) != nil else { throw FieldError("msg_data.nodes[].ttl is not an integer") }
                default:
                    throw FieldError("msg_data.nodes[].ttl is not an integer")
                }
            }

        case .connect:
            envelope.connectSource = try requireNodeID(m.srcNodeID, "src_node_id")
            envelope.connectDestination = try requireNodeID(m.dstNodeID, "dst_node_id")
            _ = try optionalString(m.src, "src")
            _ = try optionalString(m.dst, "dst")
        }
    }
}

/// The `msg_data` members validation and routing look at, found in one pass over the object.
/// A member whose value is `null` counts as absent. A key given twice: the last one counts, `null`
/// included (as `JSONTape.member`).
///
/// Each member's value token is kept in 32 bits, all in one vector (-1: absent): 128 bytes made
/// and copied with a few vector moves, where 23 `Int?` took 368 bytes, set one by one for every
/// frame and copied with a `memcpy` call (Benchmarks/instructions.sh).
struct DataMembers {
    enum Member: Int {
        case msgID, nodeID, recipient, recipientID, timestamp, channel, channelID, message, attachment, certificate, cipher, key, reason, stored, nodes, members, closed, src, dst, srcNodeID, dstNodeID, version, attributes
    }

    private var tokens = SIMD32<Int32>(repeating: -1)

    @inline(__always)
    subscript(member: Member) -> Int? {
        get {
            let token = tokens[member.rawValue]
            return token < 0 ? nil : Int(token)
        }
        set { tokens[member.rawValue] = newValue.map { Int32(truncatingIfNeeded: $0) } ?? -1 }
    }

    var msgID: Int? { get { self[.msgID] } set { self[.msgID] = newValue } }
    var nodeID: Int? { get { self[.nodeID] } set { self[.nodeID] = newValue } }
    var recipient: Int? { get { self[.recipient] } set { self[.recipient] = newValue } }
    var recipientID: Int? { get { self[.recipientID] } set { self[.recipientID] = newValue } }
    var timestamp: Int? { get { self[.timestamp] } set { self[.timestamp] = newValue } }
    var channel: Int? { get { self[.channel] } set { self[.channel] = newValue } }
    var channelID: Int? { get { self[.channelID] } set { self[.channelID] = newValue } }
    var message: Int? { get { self[.message] } set { self[.message] = newValue } }
    var attachment: Int? { get { self[.attachment] } set { self[.attachment] = newValue } }
    var certificate: Int? { get { self[.certificate] } set { self[.certificate] = newValue } }
    var cipher: Int? { get { self[.cipher] } set { self[.cipher] = newValue } }
    var key: Int? { get { self[.key] } set { self[.key] = newValue } }
    var reason: Int? { get { self[.reason] } set { self[.reason] = newValue } }
    var stored: Int? { get { self[.stored] } set { self[.stored] = newValue } }
    var nodes: Int? { get { self[.nodes] } set { self[.nodes] = newValue } }
    var members: Int? { get { self[.members] } set { self[.members] = newValue } }
    var closed: Int? { get { self[.closed] } set { self[.closed] = newValue } }
    var src: Int? { get { self[.src] } set { self[.src] = newValue } }
    var dst: Int? { get { self[.dst] } set { self[.dst] = newValue } }
    var srcNodeID: Int? { get { self[.srcNodeID] } set { self[.srcNodeID] = newValue } }
    var dstNodeID: Int? { get { self[.dstNodeID] } set { self[.dstNodeID] = newValue } }
    var version: Int? { get { self[.version] } set { self[.version] = newValue } }
    var attributes: Int? { get { self[.attributes] } set { self[.attributes] = newValue } }

    mutating func collect(_ tape: JSONTape.View, _ bytes: UnsafeRawBufferPointer, object: Int) {
        tape.forEachMember(of: object) { keyIndex, valueIndex in
            let key = tape[keyIndex]
            guard !key.escaped else { return }
            let value: Int? = tape[valueIndex].kind == .null ? nil : valueIndex
            let start = Int(key.start)
            let end = Int(key.end)
            @inline(__always) func matches(_ name: StaticString) -> Bool { JSONTape.View.equals(name, bytes, start, end) }
            switch end - start {
            case 3:
                if matches("key") { self.key = value } else if matches("src") { src = value } else if matches("dst") { dst = value }
            case 5:
                if matches("nodes") { nodes = value }
            case 6:
                if matches("msg_id") { msgID = value } else if matches("cipher") { cipher = value } else if matches("reason") { reason = value } else if matches("closed") { closed = value } else if matches("stored") { stored = value }
            case 7:
                if matches("node_id") { nodeID = value } else if matches("channel") { channel = value } else if matches("message") { message = value } else if matches("members") { members = value } else if matches("version") { version = value }
            case 9:
                if matches("recipient") { recipient = value } else if matches("timestamp") { timestamp = value }
            case 10:
                if matches("channel_id") { channelID = value } else if matches("attachment") { attachment = value } else if matches("attributes") { attributes = value }
            case 11:
                if matches("certificate") { certificate = value } else if matches("src_node_id") { srcNodeID = value } else if matches("dst_node_id") { dstNodeID = value }
            case 12:
                if matches("recipient_id") { recipientID = value }
            default:
                break
            }
        }
    }
}
