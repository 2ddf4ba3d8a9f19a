import NIOConcurrencyHelpers
import NIOCore
import PTPProtocol
import RelayStore

@testable import RelayCore

/// A `StoreAccess` for handler tests: keeps messages in memory and answers on the caller's thread
/// (the test's EmbeddedEventLoop). With `holdCommits`, completions wait until `commit()` so a test
/// can check that nothing is acknowledged before the "transaction" commits.
final class InMemoryStore: StoreAccess, @unchecked Sendable {
    private let lock = NIOLock()
    private var rows: [StoredMessage] = []
    private var delivered: Set<[GUID]> = []
    private var nextSeq: Int64 = 0
    private var held: [() -> Void] = []
    var holdCommits = false
    var failWrites = false
    var settings = StoreSettings()

    var messages: [StoredMessage] { lock.withLock { rows } }

    /// Makes every stored message due now: the relay's retry times are on the wall clock, which a
    /// test does not wait for.
    func makeAllDue() {
        lock.withLock {
            for index in rows.indices { rows[index].nextAttemptAt = 0 }
        }
    }

    /// Moves every stored message's arrival `seconds` into the past (for `store.max_age`).
    func backdate(by seconds: Double) {
        lock.withLock {
            for index in rows.indices { rows[index].createdAt -= seconds }
        }
    }

    /// Completions held back by `holdCommits` and not yet released by `commit()`.
    var heldCount: Int { lock.withLock { held.count } }

    func submit(_ write: StoreWriter.Write) {
        let completion: () -> Void = lock.withLock { apply(write) }
        if holdCommits {
            lock.withLock {
                held.append(completion)
                if case .insert(let messages, _) = write { unlisted.formUnion(messages.map(\.recipient)) }
            }
        } else {
            completion()
        }
    }

    /// Runs the completions held back by `holdCommits`.
    func commit() {
        let pending = lock.withLock { () -> [() -> Void] in
            defer {
                held.removeAll()
                unlisted.removeAll()
            }
            return held
        }
        pending.forEach { $0() }
    }

    /// Exact, as `StoredRecipients` is for the SQLite store: a recipient with no row is never read.
    /// With `holdCommits`, rows inserted since the last `commit()` are not listed yet (as if the
    /// writer had not reached them when the HELLO asked).
    func mayHoldMessages(for recipient: GUID) -> Bool {
        lock.withLock { rows.contains { $0.recipient == recipient } && !unlisted.contains(recipient) }
    }

    private var unlisted: Set<GUID> = []

    /// Reads of a recipient's due messages so far.
    private(set) var dueReads = 0

    func due(for recipient: GUID, now: Double, on eventLoop: EventLoop) -> EventLoopFuture<(messages: [StoredMessage], more: Bool)> {
        lock.withLock { dueReads += 1 }
        let (due, more) = lock.withLock { () -> ([StoredMessage], Bool) in
            let mine = rows.filter { $0.recipient == recipient }
            return (mine.filter { $0.nextAttemptAt <= now }, !mine.isEmpty)
        }
        return eventLoop.makeSucceededFuture((due, more))
    }

    func recipients(withMessagesAmong nodes: [GUID], on eventLoop: EventLoop) -> EventLoopFuture<[GUID]> {
        let holding = lock.withLock { Set(rows.map(\.recipient)) }
        return eventLoop.makeSucceededFuture(nodes.filter(holding.contains))
    }

    func close() {}

    private func apply(_ write: StoreWriter.Write) -> () -> Void {
        switch write {
        case .insert(let messages, let completion):
            let outcomes = messages.map(insert)
            return { completion(outcomes) }
        case .acknowledged(let seq, let recipient, let messageID, let completion):
            let before = rows.count
            rows.removeAll { $0.seq == seq }
            delivered.insert([recipient, messageID])
            let deleted = rows.count < before
            return { completion(deleted) }
        case .attemptFailed(let seq, let next, let completion):
            guard let index = rows.firstIndex(where: { $0.seq == seq }) else { return { completion(.gone) } }
            rows[index].attempts += 1
            rows[index].nextAttemptAt = next
            if settings.maxAttempts > 0 && rows[index].attempts >= settings.maxAttempts {
                rows.remove(at: index)
                return { completion(.dropped) }
            }
            return { completion(.retry) }
        case .expire(let now, let completion):
            let before = rows.count
            rows.removeAll { $0.createdAt < now - settings.maxAge }
            let removed = before - rows.count
            return { completion(removed) }
        case .barrier(let completion):
            return completion
        }
    }

    private func insert(_ message: NewMessage) -> InsertOutcome {
        if failWrites { return .failed("injected failure") }
        if delivered.contains([message.recipient, message.messageID]) { return .alreadyDelivered }
        if rows.contains(where: { $0.recipient == message.recipient && $0.messageID == message.messageID }) { return .duplicate }
        let mine = rows.filter { $0.recipient == message.recipient }
        if settings.perRecipientMessages > 0 && mine.count + 1 > settings.perRecipientMessages {
            return .overQuota(.recipientMessages)
        }
        nextSeq += 1
        rows.append(StoredMessage(seq: nextSeq, message: message))
        return .stored
    }
}
