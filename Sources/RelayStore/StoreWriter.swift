import Foundation
import GRDB
import Logging
import NIOConcurrencyHelpers
import PTPProtocol

/// The store's only writer: a thread of its own that takes every write submitted since its last
/// commit and commits them in one transaction (group commit), when `batchSize` are waiting or the
/// oldest has waited `commitDelay`. Completions run on the writer thread after the commit: callers
/// hop back to their event loop from there. An event loop never waits for SQLite.
public final class StoreWriter: Sendable {
    public enum Write: Sendable {
        case insert([NewMessage], @Sendable ([InsertOutcome]) -> Void)
        /// The recipient ACKed a stored message: delete it and remember the id as delivered.
        case acknowledged(seq: Int64, recipient: GUID, messageID: GUID, @Sendable (Bool) -> Void)
        /// A delivery of a stored message got no ACK: count the attempt, drop it after `maxAttempts`.
        case attemptFailed(seq: Int64, nextAttemptAt: Double, @Sendable (AttemptOutcome) -> Void)
        /// Deletes messages older than `store.max_age` and forgets old delivered ids.
        case expire(now: Double, @Sendable (Int) -> Void)
        /// Completes once everything submitted before it is committed.
        case barrier(@Sendable () -> Void)
    }

    private struct Queue {
        var writes: [Write] = []
        var firstQueuedAt: UInt64 = 0
        var stopping = false
        var stopped = false
    }

    private let pool: DatabasePool
    private let settings: StoreSettings
    private let path: String
    private let logger: Logger
    private let queue = ConditionLock(value: 0)
    private let state = NIOLockedValueBox(Queue())
    private let committed = NIOLockedValueBox<(transactions: Int, writes: Int)>((0, 0))
    /// The recipients with rows, kept here as this thread writes them (shared with the readers).
    let recipients: StoredRecipients

    init(pool: DatabasePool, settings: StoreSettings, path: String, logger: Logger, recipients: StoredRecipients) {
        self.pool = pool
        self.settings = settings
        self.path = path
        self.logger = logger
        self.recipients = recipients
        let thread = Thread { [self] in run() }
        thread.start()
    }

    /// Transactions and writes committed so far (for statistics and benchmarks).
    public var commits: (transactions: Int, writes: Int) { committed.withLockedValue { $0 } }

    public func submit(_ write: Write) {
        let accepted = state.withLockedValue { state -> Bool in
            guard !state.stopping else { return false }
            if state.writes.isEmpty { state.firstQueuedAt = DispatchTime.now().uptimeNanoseconds }
            state.writes.append(write)
            return true
        }
        guard accepted else {
            Self.fail(write, reason: "the store is closed")
            return
        }
        queue.lock()
        queue.unlock(withValue: 1)
    }

    /// Commits what is queued, then ends the thread. Writes submitted afterwards fail.
    public func stop() {
        let done = ConditionLock(value: 0)
        submit(.barrier { done.lock(); done.unlock(withValue: 1) })
        state.withLockedValue { $0.stopping = true }
        queue.lock()
        queue.unlock(withValue: 1)
        done.lock(whenValue: 1)
        done.unlock()
    }

    /// Gives the calling thread its kernel name (top -H, /proc/PID/task/*/comm; 15 characters
    /// kept). Foundation's `Thread.name` reaches the kernel only when the starting thread has
    /// recorded the new one's handle first, which the new thread can outrun: then no name at all.
    /// Linux lets a thread write its own name into /proc (proc(5), `comm`).
    static func nameCurrentThread(_ name: String) {
        #if os(Linux)
        if (try? name.write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)) != nil { return }
        #endif
        Thread.current.name = name
    }

    private func run() {
        Self.nameCurrentThread("ptpchat-store")
        let delayNanos = UInt64(max(settings.commitDelay, 0) * 1e9)
        while true {
            queue.lock(whenValue: 1)
            queue.unlock(withValue: 0)
            // Let the batch fill: until it is full or its first write waited `commitDelay`.
            while true {
                let (count, first, stopping) = state.withLockedValue { ($0.writes.count, $0.firstQueuedAt, $0.stopping) }
                if count == 0 && stopping { return }
                if count == 0 { break }
                let waited = DispatchTime.now().uptimeNanoseconds &- first
                if count >= settings.batchSize || waited >= delayNanos || stopping { break }
                let remaining = delayNanos - waited
                if queue.lock(whenValue: 1, timeoutSeconds: Double(remaining) / 1e9) {
                    queue.unlock(withValue: 0)
                }
            }
            let batch = state.withLockedValue { state -> [Write] in
                let writes = state.writes
                state.writes.removeAll(keepingCapacity: true)
                return writes
            }
            if !batch.isEmpty { commit(batch) }
            if state.withLockedValue({ $0.stopping && $0.writes.isEmpty }) { return }
        }
    }

    /// What a transaction's deletes did to `recipients`, settled before its commit.
    private struct RecipientChanges {
        /// Recipients that lost a row: those left with none go out after the commit.
        var lostRows: Set<GUID> = []
        /// Many rows went at once (expiry): the whole set is read again.
        var reload = false
        /// Set by `settle`: what the set becomes after the commit.
        var emptied: Set<GUID> = []
        var current: Set<GUID>?

        mutating func settle(_ db: Database) throws {
            if reload {
                current = try MessageStore.recipientsWithMessages(db)
                return
            }
            for recipient in lostRows where !(try MessageStore.hasMessages(for: recipient, db)) {
                emptied.insert(recipient)
            }
        }

        func apply(to recipients: StoredRecipients) {
            if let current {
                recipients.replace(with: current)
            } else {
                recipients.remove(emptied)
            }
        }
    }

    private func commit(_ batch: [Write]) {
        var completions: [() -> Void] = []
        completions.reserveCapacity(batch.count)
        var changes = RecipientChanges()
        do {
            try pool.write { db in
                completions.removeAll(keepingCapacity: true)
                changes = RecipientChanges()
                let now = Date().timeIntervalSince1970
                for write in batch {
                    completions.append(try apply(write, db, now: now, changes: &changes))
                }
                // After every write of the batch: a row inserted after a delete keeps its recipient.
                try changes.settle(db)
            }
            // Before the completions: a caller told "deleted" finds the set up to date.
            changes.apply(to: recipients)
            committed.withLockedValue { $0.transactions += 1; $0.writes += batch.count }
        } catch {
            let reason = (error as? DatabaseError).map(MessageStore.describe) ?? "\(error)"
            logger.error("store write failed", metadata: ["file": "\(path)", "writes": "\(batch.count)", "reason": "\(reason)"])
            completions = batch.map { write in { Self.fail(write, reason: reason) } }
        }
        for completion in completions { completion() }
    }

    /// Applies one write inside the transaction and returns what to tell its caller after the
    /// commit.
    private func apply(_ write: Write, _ db: Database, now: Double, changes: inout RecipientChanges) throws -> () -> Void {
        switch write {
        case .insert(let messages, let completion):
            var outcomes: [InsertOutcome] = []
            outcomes.reserveCapacity(messages.count)
            for message in messages {
                outcomes.append(try insert(message, db))
            }
            return { completion(outcomes) }

        case .acknowledged(let seq, let recipient, let messageID, let completion):
            try db.cachedStatement(sql: "DELETE FROM message WHERE seq = ?").execute(arguments: [seq])
            let deleted = db.changesCount > 0
            if deleted { changes.lostRows.insert(recipient) }
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO delivered (recipient, msg_id, at) VALUES (?, ?, ?)")
                .execute(arguments: [recipient.blob, messageID.blob, now])
            return { completion(deleted) }

        case .attemptFailed(let seq, let nextAttemptAt, let completion):
            try db.cachedStatement(sql: "UPDATE message SET attempts = attempts + 1, next_attempt_at = ? WHERE seq = ?")
                .execute(arguments: [nextAttemptAt, seq])
            guard db.changesCount > 0 else { return { completion(.gone) } }
            let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT attempts, recipient FROM message WHERE seq = ?"), arguments: [seq])
            let attempts: Int = row?["attempts"] ?? 0
            if settings.maxAttempts > 0 && attempts >= settings.maxAttempts {
                try db.cachedStatement(sql: "DELETE FROM message WHERE seq = ?").execute(arguments: [seq])
                if let row { changes.lostRows.insert(row.guid("recipient")) }
                return { completion(.dropped) }
            }
            return { completion(.retry) }

        case .expire(let now, let completion):
            var removed = 0
            if settings.maxAge > 0 {
                try db.cachedStatement(sql: "DELETE FROM message WHERE created_at < ?").execute(arguments: [now - settings.maxAge])
                removed = db.changesCount
                if removed > 0 { changes.reload = true }
            }
            try db.cachedStatement(sql: "DELETE FROM delivered WHERE at < ?").execute(arguments: [now - settings.deliveredMemory])
            return { completion(removed) }

        case .barrier(let completion):
            return completion
        }
    }

    private func insert(_ message: NewMessage, _ db: Database) throws -> InsertOutcome {
        let recipient = message.recipient.blob
        let messageID = message.messageID.blob
        let sender = message.sender.blob
        if try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM delivered WHERE recipient = ? AND msg_id = ?)"),
            arguments: [recipient, messageID]) == true
        {
            return .alreadyDelivered
        }
        if try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM message WHERE recipient = ? AND msg_id = ?)"),
            arguments: [recipient, messageID]) == true
        {
            return .duplicate
        }
        let size = message.frame.count
        if let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT messages, bytes FROM mailbox WHERE recipient = ?"), arguments: [recipient]) {
            let messages: Int = row["messages"]
            let bytes: Int = row["bytes"]
            if settings.perRecipientMessages > 0 && messages + 1 > settings.perRecipientMessages { return .overQuota(.recipientMessages) }
            if settings.perRecipientBytes > 0 && bytes + size > settings.perRecipientBytes { return .overQuota(.recipientBytes) }
        } else if settings.perRecipientBytes > 0 && size > settings.perRecipientBytes {
            return .overQuota(.recipientBytes)
        }
        if settings.perSenderMessages > 0,
            let messages = try Int.fetchOne(
                db.cachedStatement(sql: "SELECT messages FROM pair WHERE recipient = ? AND sender = ?"), arguments: [recipient, sender]),
            messages + 1 > settings.perSenderMessages
        {
            return .overQuota(.senderMessages)
        }
        if settings.maxBytes > 0,
            let bytes = try Int.fetchOne(db.cachedStatement(sql: "SELECT bytes FROM totals WHERE id = 0")),
            bytes + size > settings.maxBytes
        {
            return .overQuota(.storeBytes)
        }
        try db.cachedStatement(
            sql: """
                INSERT INTO message (recipient, msg_id, sender, frame, size, created_at, attempts, next_attempt_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: [
            recipient, messageID, sender, Data(message.frame), size, message.createdAt, message.attempts, message.nextAttemptAt,
        ])
        recipients.insert(message.recipient)
        return .stored
    }

    private static func fail(_ write: Write, reason: String) {
        switch write {
        case .insert(let messages, let completion): completion(Array(repeating: .failed(reason), count: messages.count))
        case .acknowledged(_, _, _, let completion): completion(false)
        case .attemptFailed(_, _, let completion): completion(.failed(reason))
        case .expire(_, let completion): completion(0)
        case .barrier(let completion): completion()
        }
    }
}
