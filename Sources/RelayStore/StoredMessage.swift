import PTPProtocol

/// A message to keep for a recipient that is not reachable: the frame exactly as it will be sent.
public struct NewMessage: Sendable, Equatable {
    public var recipient: GUID
    public var messageID: GUID
    public var sender: GUID
    public var frame: [UInt8]
    /// Seconds since 1970.
    public var createdAt: Double
    public var attempts: Int
    public var nextAttemptAt: Double

    public init(recipient: GUID, messageID: GUID, sender: GUID, frame: [UInt8], createdAt: Double, attempts: Int = 0, nextAttemptAt: Double = 0) {
        self.recipient = recipient
        self.messageID = messageID
        self.sender = sender
        self.frame = frame
        self.createdAt = createdAt
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
    }
}

/// A message in the store, in arrival order (`seq`): its fields are those of the `NewMessage` it
/// was stored as (`stored.recipient`, `stored.attempts`, …).
@dynamicMemberLookup
public struct StoredMessage: Sendable, Equatable {
    public var seq: Int64
    public var message: NewMessage

    public init(seq: Int64, message: NewMessage) {
        self.seq = seq
        self.message = message
    }

    public init(
        seq: Int64, recipient: GUID, messageID: GUID, sender: GUID, frame: [UInt8], createdAt: Double, attempts: Int,
        nextAttemptAt: Double
    ) {
        self.init(
            seq: seq,
            message: NewMessage(
                recipient: recipient, messageID: messageID, sender: sender, frame: frame, createdAt: createdAt,
                attempts: attempts, nextAttemptAt: nextAttemptAt))
    }

    public subscript<Value>(dynamicMember field: WritableKeyPath<NewMessage, Value>) -> Value {
        get { message[keyPath: field] }
        set { message[keyPath: field] = newValue }
    }
}

/// Why a message was not stored.
public enum QuotaKind: String, Sendable {
    case recipientMessages = "per_recipient_messages"
    case recipientBytes = "per_recipient_bytes"
    case senderMessages = "per_sender_messages"
    case storeBytes = "max_bytes"
}

public enum InsertOutcome: Sendable, Equatable {
    /// Committed: durable with the configured `store.sync`.
    case stored
    /// The same message id is already stored for that recipient: nothing new was written.
    case duplicate
    /// The recipient ACKed this message id recently: nothing was written.
    case alreadyDelivered
    case overQuota(QuotaKind)
    /// The write failed; nothing is stored.
    case failed(String)
}

/// What happened to a delivery attempt that got no ACK.
public enum AttemptOutcome: Sendable, Equatable {
    /// Kept; next try at `nextAttemptAt`.
    case retry
    /// `store.max_attempts` reached: deleted.
    case dropped
    /// Already gone (ACKed, purged or expired meanwhile).
    case gone
    case failed(String)
}

/// One recipient's mailbox as `mailbox stats` shows it.
public struct MailboxSummary: Sendable, Equatable {
    public var recipient: GUID
    public var messages: Int
    public var bytes: Int
    /// Seconds since 1970 of the oldest message.
    public var oldest: Double
}
