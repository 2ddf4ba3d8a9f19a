import Foundation
import GRDB
import Logging
import PTPProtocol

/// The relay's offline buffer: one SQLite database in WAL mode (`<data dir>/store.sqlite`).
///
/// Writes go through `writer`, a single thread that commits many of them per transaction; reads
/// (what to deliver, statistics) run on any thread as WAL readers and never wait for the writer.
/// No SQL is built from message content: every statement is a cached prepared statement.
public final class MessageStore: Sendable {
    public let path: String
    public let settings: StoreSettings
    let pool: DatabasePool
    public let writer: StoreWriter
    /// The recipients it holds messages for, kept in memory by `writer` (no read per HELLO).
    public let storedRecipients: StoredRecipients

    /// Stores up to this size are checked with `PRAGMA quick_check` when opened.
    public static let integrityCheckLimit = 256 * 1024 * 1024

    public static func path(inDataDirectory directory: String) -> String {
        (directory as NSString).appendingPathComponent("store.sqlite")
    }

    /// Opens (creating and migrating when needed) the store. Throws `StoreError` naming the file
    /// when it is corrupt, locked, or cannot be written.
    public init(path: String, settings: StoreSettings, logger: Logger, readOnly: Bool = false) throws {
        self.path = path
        self.settings = settings
        var configuration = Configuration()
        configuration.readonly = readOnly
        configuration.busyMode = .timeout(5)
        configuration.label = "ptpchat-store"
        let synchronous = settings.sync == .full ? "FULL" : "NORMAL"
        configuration.prepareDatabase { db in
            if !readOnly {
                try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            }
        }
        do {
            if readOnly && !FileManager.default.fileExists(atPath: path) {
                throw StoreError(path: path, reason: "no store here (the relay creates it on first start)")
            }
            pool = try DatabasePool(path: path, configuration: configuration)
            if !readOnly {
                try Schema.migrator.migrate(pool)
                // GRDB sets NORMAL on the writer connection when it turns WAL on, after
                // `prepareDatabase`: set the durability asked for once the pool is open.
                try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(synchronous)") }
            }
            // Reading the schema and the counters proves the file is a usable database; a store of
            // moderate size is checked page by page too (the check's time grows with the file).
            _ = try pool.read { db in try Int.fetchOne(db, sql: "SELECT messages FROM totals WHERE id = 0") }
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            if size <= Self.integrityCheckLimit {
                let verdict = try pool.read { db in try String.fetchOne(db, sql: "PRAGMA quick_check(1)") } ?? "ok"
                guard verdict == "ok" else {
                    let oneLine = verdict.split(whereSeparator: \.isNewline).joined(separator: "; ")
                    throw StoreError(path: path, reason: "the database is damaged (\(oneLine))")
                }
            }
        } catch let error as StoreError {
            throw error
        } catch let error as DatabaseError {
            throw StoreError(path: path, reason: Self.describe(error))
        } catch {
            throw StoreError(path: path, reason: "\(error)")
        }
        do {
            storedRecipients = StoredRecipients(try pool.read(Self.recipientsWithMessages))
        } catch let error as DatabaseError {
            throw StoreError(path: path, reason: Self.describe(error))
        }
        writer = StoreWriter(pool: pool, settings: settings, path: path, logger: logger, recipients: storedRecipients)
    }

    static func describe(_ error: DatabaseError) -> String {
        switch error.resultCode {
        case .SQLITE_CORRUPT, .SQLITE_NOTADB: "the file is not a valid database (corrupt?)"
        case .SQLITE_BUSY, .SQLITE_LOCKED: "the database is locked by another process"
        case .SQLITE_READONLY: "the database is read-only"
        case .SQLITE_CANTOPEN: "cannot open the file (missing directory or no permission?)"
        case .SQLITE_FULL: "the disk is full"
        default: error.message ?? "\(error.resultCode)"
        }
    }

    // MARK: Reads

    /// The recipient's messages due for delivery (`next_attempt_at` passed), in arrival order.
    public func due(for recipient: GUID, now: Double, limit: Int = 1000) throws -> [StoredMessage] {
        try pool.read { db in
            let statement = try db.cachedStatement(
                sql: """
                    SELECT seq, recipient, msg_id, sender, frame, created_at, attempts, next_attempt_at
                    FROM message WHERE recipient = ? AND next_attempt_at <= ? ORDER BY seq LIMIT ?
                    """)
            return try Row.fetchAll(statement, arguments: [recipient.blob, now, limit]).map(Self.message)
        }
    }

    /// All of a recipient's messages (or everyone's), in arrival order.
    public func messages(for recipient: GUID?, limit: Int = 10_000) throws -> [StoredMessage] {
        try pool.read { db in
            if let recipient {
                return try Row.fetchAll(
                    db,
                    sql: """
                        SELECT seq, recipient, msg_id, sender, frame, created_at, attempts, next_attempt_at
                        FROM message WHERE recipient = ? ORDER BY seq LIMIT ?
                        """, arguments: [recipient.blob, limit]
                ).map(Self.message)
            }
            return try Row.fetchAll(
                db,
                sql: """
                    SELECT seq, recipient, msg_id, sender, frame, created_at, attempts, next_attempt_at
                    FROM message ORDER BY seq LIMIT ?
                    """, arguments: [limit]
            ).map(Self.message)
        }
    }

    /// Messages and bytes per recipient, with the age of the oldest.
    public func mailboxes() throws -> [MailboxSummary] {
        try pool.read { db in
            // `oldest` in the table only ever goes down (the delete trigger cannot cheaply raise it):
            // the true oldest is read from the messages themselves.
            try Row.fetchAll(
                db,
                sql: """
                    SELECT recipient, messages, bytes,
                        coalesce((SELECT min(created_at) FROM message WHERE message.recipient = mailbox.recipient), oldest) AS oldest
                    FROM mailbox ORDER BY messages DESC, recipient
                    """)
                .map { row in
                    MailboxSummary(recipient: row.guid("recipient"), messages: row["messages"], bytes: row["bytes"], oldest: row["oldest"])
                }
        }
    }

    /// The recipients the store holds messages for.
    public func recipientsWithMessages() throws -> Set<GUID> {
        try pool.read(Self.recipientsWithMessages)
    }

    static func recipientsWithMessages(_ db: Database) throws -> Set<GUID> {
        Set(try Row.fetchAll(db.cachedStatement(sql: "SELECT recipient FROM mailbox WHERE messages > 0")).map { $0.guid("recipient") })
    }

    /// Messages and bytes in the whole store.
    public func totals() throws -> (messages: Int, bytes: Int) {
        try pool.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT messages, bytes FROM totals WHERE id = 0")
            return (row?["messages"] ?? 0, row?["bytes"] ?? 0)
        }
    }

    /// Whether the recipient has anything stored (due or not).
    public func hasMessages(for recipient: GUID) throws -> Bool {
        try pool.read { db in try Self.hasMessages(for: recipient, db) }
    }

    static func hasMessages(for recipient: GUID, _ db: Database) throws -> Bool {
        try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM mailbox WHERE recipient = ?)"), arguments: [recipient.blob]) ?? false
    }

    static func message(_ row: Row) -> StoredMessage {
        StoredMessage(
            seq: row["seq"], recipient: row.guid("recipient"), messageID: row.guid("msg_id"), sender: row.guid("sender"),
            frame: [UInt8](row["frame"] as Data), createdAt: row["created_at"], attempts: row["attempts"],
            nextAttemptAt: row["next_attempt_at"])
    }

    // MARK: Operator commands (synchronous, outside the relay's writer)

    /// Deletes a recipient's messages, or those older than `olderThan` seconds; returns how many.
    public func purge(recipient: GUID?, olderThan: Double?, now: Double = Date().timeIntervalSince1970) throws -> Int {
        try pool.write { db in
            switch (recipient, olderThan) {
            case (let recipient?, let age?):
                try db.execute(sql: "DELETE FROM message WHERE recipient = ? AND created_at < ?", arguments: [recipient.blob, now - age])
            case (let recipient?, nil):
                try db.execute(sql: "DELETE FROM message WHERE recipient = ?", arguments: [recipient.blob])
            case (nil, let age?):
                try db.execute(sql: "DELETE FROM message WHERE created_at < ?", arguments: [now - age])
            case (nil, nil):
                try db.execute(sql: "DELETE FROM message")
            }
            return db.changesCount
        }
    }

    /// Waits until everything submitted to the writer is committed, then stops it.
    public func close() {
        writer.stop()
    }
}
