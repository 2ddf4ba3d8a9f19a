/// What routing needs to know of one inbound frame, read from its JSON tape.
///
/// Only the head and the `msg_data` keys that routing and validation look at are read; the rest of
/// the frame stays in the tape as byte ranges and is copied to the wire as it is.
public struct Envelope: Sendable, Equatable {
    /// The verb as routed: a HELLO that carries `message` and `recipient` after the handshake is
    /// the existing client's chat frame and reads as `.message`, with `isLabelledChat` set.
    public var verb: Verb
    public var isLabelledChat = false
    /// Head `ttl` (or the verb's default), not yet clamped.
    public var ttl: Int
    public var flood: Bool
    /// `msg_data.msg_id`, else a non-zero head `msg_id`.
    public var messageID: GUID?
    /// Head `msg_id` when it is a non-zero GUID.
    public var headMessageID: GUID?
    /// Head `sender_id`.
    public var sender: NodeAddress?
    /// `msg_data.node_id`.
    public var dataNodeID: NodeAddress?
    /// Head `target_id`.
    public var target: GUID?
    /// Token index of `msg_data` in the tape.
    public var data: Int

    // Verb-specific fields.
    /// MESSAGE: every `recipient[].node_id`, in order.
    public var recipients = Recipients()
    /// CERTIFICATE, KEY, GETCERTIFICATE, GETKEY: `msg_data.recipient_id`.
    public var recipientID: GUID?
    /// HELLO: `attributes.node_type` is `server`.
    public var declaresServer = false
    /// HELLO: the existing public client's (PROFILE.md section 4a): `attributes.node_type` is the
    /// literal `"string"` or `version` starts with `ptpchat-client`.
    public var declaresLegacyClient = false
    /// CONNECT: node ids.
    public var connectSource: GUID?
    public var connectDestination: GUID?
    /// NACK: `msg_data.stored` is true (the refusing node keeps the message for later delivery).
    public var nackStored = false
    /// The texts only a few verbs carry, together: nil for the others (MESSAGE, ACK), whose
    /// envelopes are then destroyed without four string releases each (callgrind: about 1 % of
    /// the instructions per relayed message). Setting nil where there are none keeps it nil.
    var texts: Texts?

    /// Sets one of the texts in place; nil where there are none leaves them none.
    @inline(__always)
    private mutating func setText(_ value: String?, _ assign: (inout Texts, String?) -> Void) {
        if texts == nil {
            guard value != nil else { return }
            texts = Texts()
        }
        assign(&texts!, value)
    }

    struct Texts: Sendable, Equatable {
        var meshNonce: String?
        var meshProof: String?
        var channelID: String?
        var reason: String?
    }

    /// HELLO: `attributes.mesh_nonce` when it is a string (PROFILE.md section 9), else nil.
    public var meshNonce: String? {
        get { texts?.meshNonce }
        set { setText(newValue) { $0.meshNonce = $1 } }
    }
    /// HELLO: `attributes.mesh_proof` when it is a string (PROFILE.md section 9), else nil.
    public var meshProof: String? {
        get { texts?.meshProof }
        set { setText(newValue) { $0.meshProof = $1 } }
    }
    /// CHANNEL: `msg_data.channel_id`.
    public var channelID: String? {
        get { texts?.channelID }
        set { setText(newValue) { $0.channelID = $1 } }
    }
    /// ACK and NACK: `msg_data.reason` of a NACK.
    public var reason: String? {
        get { texts?.reason }
        set { setText(newValue) { $0.reason = $1 } }
    }

    /// The node the message says it comes from: `msg_data.node_id`, else head `sender_id`; the
    /// name comes from whichever of the two gives one for that id.
    public var origin: NodeAddress? {
        guard let dataNodeID else { return sender }
        if dataNodeID.name == nil, let sender, sender.id == dataNodeID.id { return sender }
        return dataNodeID
    }

    /// The id a flood is remembered by.
    public var floodID: GUID? { messageID }
}

/// A frame that is JSON but not a valid message of its verb.
public struct InvalidMessage: Error, Sendable, CustomStringConvertible {
    public var reason: String
    /// The message's id when one could be read: the NACK `invalid` refers to it.
    public var messageID: GUID?
    public var verb: Verb?

    public init(_ reason: String, messageID: GUID? = nil, verb: Verb? = nil) {
        self.reason = reason
        self.messageID = messageID
        self.verb = verb
    }

    public var description: String { reason }
}
