import NIOConcurrencyHelpers
import PTPProtocol

/// The recipients the store holds messages for, in memory: every HELLO asks here instead of
/// reading SQLite, and only a recipient listed here gets a store read (most nodes have nothing
/// stored, and a read costs about as much as the rest of the handshake).
///
/// Kept by the store's single writer (`StoreWriter`), so it follows the database's own order:
/// a recipient goes in when its row is inserted (inside the transaction, before the commit and
/// before the insert's completion runs), and goes out only after a commit that left it no row.
/// It never misses a recipient with rows; it may list one with none for a moment (a transaction
/// that failed after an insert; a purge by the `mailbox` command, which writes outside the
/// writer), which costs one read that finds nothing. Loaded from the `mailbox` table at open.
public final class StoredRecipients: Sendable {
    private let recipients: NIOLockedValueBox<Set<GUID>>

    public init(_ recipients: Set<GUID> = []) {
        self.recipients = NIOLockedValueBox(recipients)
    }

    /// Whether the store may hold messages for `recipient` (false: it holds none).
    public func contains(_ recipient: GUID) -> Bool {
        recipients.withLockedValue { $0.contains(recipient) }
    }

    public var count: Int { recipients.withLockedValue { $0.count } }

    /// Every listed recipient (tests, statistics).
    public var all: Set<GUID> { recipients.withLockedValue { $0 } }

    // MARK: The writer's side

    /// A row for `recipient` is being inserted (called before the commit).
    func insert(_ recipient: GUID) {
        _ = recipients.withLockedValue { $0.insert(recipient) }
    }

    /// A committed transaction left these recipients no row.
    func remove(_ emptied: Set<GUID>) {
        guard !emptied.isEmpty else { return }
        recipients.withLockedValue { $0.subtract(emptied) }
    }

    /// The whole set as the database has it now (at open, after an expiry).
    func replace(with current: Set<GUID>) {
        recipients.withLockedValue { $0 = current }
    }
}
