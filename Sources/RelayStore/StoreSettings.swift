/// The store's bounds and durability, from the `store.*` configuration keys.
public struct StoreSettings: Sendable, Equatable {
    public enum Sync: String, Sendable {
        /// `PRAGMA synchronous = FULL`: a committed message survives a power loss.
        case full
        /// `PRAGMA synchronous = NORMAL`: survives a crash of the relay (`kill -9`), may lose the
        /// last commits on a power loss.
        case normal
    }

    public var sync: Sync = .full
    public var maxAttempts = 5
    /// 0 in any bound means unlimited.
    public var perRecipientMessages = 1000
    public var perRecipientBytes = 10_485_760
    public var perSenderMessages = 100
    public var maxBytes = 1_073_741_824
    /// Seconds a message is kept at most.
    public var maxAge: Double = 604_800
    /// Seconds a delivered message id is remembered, so that a re-sent copy is not stored again.
    public var deliveredMemory: Double = 600
    /// Group commit: a transaction is committed when it holds this many writes...
    public var batchSize = 512
    /// ...or when the first write in it has waited this long (seconds).
    public var commitDelay: Double = 0.002

    public init() {}
}
