import Foundation
import GRDB
import PTPProtocol
import XCTest

@testable import RelayStore

/// The store on real SQLite files: schema, inserts and their outcomes, delivery order, ACKs,
/// retries, expiry, purges and the counters the triggers keep.
final class MessageStoreTests: StoreTestCase {
    let alice = GUID(high: 0xa11ce, low: 1)
    let bob = GUID(high: 0xb0b, low: 2)
    let carol = GUID(high: 0xca801, low: 3)
    let sender1 = GUID(high: 0x5e1, low: 1)
    let sender2 = GUID(high: 0x5e2, low: 2)

    // MARK: Open, schema, reopen

    func testOpenCreatesTheFileAndSchemaInWALMode() throws {
        XCTAssertFalse(FileManager.default.fileExists(atPath: storePath))
        let store = try openStore()
        XCTAssertTrue(FileManager.default.fileExists(atPath: storePath), "store.sqlite created")
        XCTAssertEqual(store.path, storePath)
        XCTAssertEqual(try store.pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }, "wal")

        // Another connection, not configured by the store, sees the file itself in WAL mode.
        let independent = try DatabaseQueue(path: storePath)
        try independent.read { db in
            XCTAssertEqual(try String.fetchOne(db, sql: "PRAGMA journal_mode"), "wal")
            let tables = try String.fetchSet(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'")
            for table in ["message", "mailbox", "pair", "totals", "delivered"] {
                XCTAssertTrue(tables.contains(table), "table \(table) exists")
            }
            let triggers = try String.fetchSet(db, sql: "SELECT name FROM sqlite_master WHERE type = 'trigger'")
            XCTAssertEqual(triggers, ["message_added", "message_removed"])
        }
        try independent.close()

        XCTAssertEqual(try store.totals().messages, 0)
        XCTAssertEqual(try store.totals().bytes, 0)
        XCTAssertEqual(try store.mailboxes(), [])
        XCTAssertEqual(try store.messages(for: nil), [])
        XCTAssertFalse(try store.hasMessages(for: alice))
    }

    func testReopenKeepsMessagesAndCounters() throws {
        let first = try openStore()
        let sent = [
            message(to: alice, size: 10, createdAt: now - 3, seed: 1),
            message(to: bob, size: 2000, createdAt: now - 2, seed: 2),
            message(to: alice, size: 1, createdAt: now - 1, seed: 3),
        ]
        XCTAssertEqual(first.insertAndWait(sent), [.stored, .stored, .stored])
        let before = try first.messages(for: nil)
        first.close()

        let second = try openStore()
        let after = try second.messages(for: nil)
        XCTAssertEqual(after, before)
        XCTAssertEqual(after.map(\.messageID), sent.map(\.messageID))
        XCTAssertEqual(after.map(\.frame), sent.map(\.frame), "frames come back byte for byte")
        XCTAssertEqual(after.map(\.createdAt), sent.map(\.createdAt))
        XCTAssertEqual(try second.totals().messages, 3)
        XCTAssertEqual(try second.totals().bytes, 2011)
        try assertCountersMatchRows(second)
        // And it keeps working: ids are still unique, seq keeps growing.
        XCTAssertEqual(second.insertAndWait(sent[0]), .duplicate)
        XCTAssertEqual(second.insertAndWait(message(to: carol)), .stored)
        XCTAssertGreaterThan(try second.messages(for: carol)[0].seq, after.map(\.seq).max() ?? 0)
    }

    // MARK: Insert, order, duplicates

    func testInsertIsStoredAndDueReturnsArrivalOrder() throws {
        let store = try openStore()
        var sentToAlice: [NewMessage] = []
        for index in 0..<12 {
            // Alice's messages interleaved with Bob's, in several transactions, created_at not
            // monotonic: arrival order is what counts.
            let forAlice = message(to: alice, from: index % 2 == 0 ? sender1 : sender2, size: 50 + index, createdAt: now - Double(index % 5), seed: index)
            sentToAlice.append(forAlice)
            XCTAssertEqual(store.insertAndWait([forAlice, message(to: bob, seed: index)]), [.stored, .stored])
        }
        let due = try store.due(for: alice, now: now)
        XCTAssertEqual(due.map(\.messageID), sentToAlice.map(\.messageID), "arrival order")
        XCTAssertEqual(due.map(\.seq), due.map(\.seq).sorted())
        XCTAssertEqual(Set(due.map(\.seq)).count, due.count)
        for (stored, sent) in zip(due, sentToAlice) {
            XCTAssertEqual(stored.recipient, alice)
            XCTAssertEqual(stored.sender, sent.sender)
            XCTAssertEqual(stored.frame, sent.frame)
            XCTAssertEqual(stored.createdAt, sent.createdAt)
            XCTAssertEqual(stored.attempts, 0)
            XCTAssertEqual(stored.nextAttemptAt, 0)
        }
        XCTAssertEqual(try store.due(for: alice, now: now, limit: 3).map(\.messageID), sentToAlice.prefix(3).map(\.messageID))
        XCTAssertEqual(try store.due(for: bob, now: now).count, 12)
        XCTAssertEqual(try store.due(for: carol, now: now), [])
        XCTAssertTrue(try store.hasMessages(for: alice))
        XCTAssertFalse(try store.hasMessages(for: carol))
        try assertCountersMatchRows(store)
    }

    func testSeveralMessagesInOneWriteGetOutcomesInOrder() throws {
        let store = try openStore(settings: settings { $0.perRecipientMessages = 2 })
        let id = GUID.random()
        let outcomes = store.insertAndWait([
            message(to: alice, id: id), message(to: alice, id: id), message(to: alice), message(to: alice), message(to: bob),
        ])
        // Each insert sees the earlier ones of the same transaction.
        XCTAssertEqual(outcomes, [.stored, .duplicate, .stored, .overQuota(.recipientMessages), .stored])
        XCTAssertEqual(try store.messages(for: alice).count, 2)
        try assertCountersMatchRows(store)
    }

    func testCompletionRunsOnTheWriterThreadAfterTheCommit() throws {
        let store = try openStore()
        let alice = self.alice
        let writerThread = writerThreadID(store)
        XCTAssertFalse(writerThread.isEmpty)
        XCTAssertNotEqual(writerThread, StoreTestCase.currentThreadID(), "completions do not run on the submitting thread")
        for _ in 0..<3 {
            let sent = message(to: alice)
            let seen = waitForCompletion { (done: @escaping @Sendable ((thread: String, visible: Bool)) -> Void) in
                store.writer.submit(
                    .insert([sent]) { _ in
                        // A read runs on another connection: it sees only committed data.
                        let due = (try? store.due(for: alice, now: Date().timeIntervalSince1970, limit: 100)) ?? []
                        done((StoreTestCase.currentThreadID(), due.map(\.messageID).contains(sent.messageID)))
                    })
            }
            XCTAssertEqual(seen?.thread, writerThread, "every completion runs on the one writer thread")
            XCTAssertEqual(seen?.visible, true, "the row is committed when the completion runs")
        }
    }

    /// The writer thread is meant to show as `ptpchat-store-writer` in `top -H`, perf and gdb. On
    /// Linux, Foundation applies `Thread.name` to the OS thread only when set from the thread itself,
    /// and the kernel keeps at most 15 characters.
    func testWriterThreadCarriesItsName() throws {
        let store = try openStore()
        let name = waitForCompletion { (done: @escaping @Sendable (String) -> Void) in
            store.writer.submit(.barrier { done(StoreTestCase.currentThreadName()) })
        }
        XCTAssertEqual(name?.hasPrefix("ptpchat-store"), true, "the writer thread's kernel name is '\(name ?? "?")'")
    }

    func testSameRecipientAndMessageIDIsADuplicateWithOneRow() throws {
        let store = try openStore()
        let id = GUID.random()
        XCTAssertEqual(store.insertAndWait(message(to: alice, id: id, seed: 1)), .stored)
        // Another copy (even from another sender, with another frame) is not stored again.
        XCTAssertEqual(store.insertAndWait(message(to: alice, id: id, from: sender2, size: 300, seed: 2)), .duplicate)
        let rows = try store.messages(for: alice)
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows.first?.frame, frame(seed: 1), "the first copy is kept")
        // The same id for another recipient is another row.
        XCTAssertEqual(store.insertAndWait(message(to: bob, id: id)), .stored)
        XCTAssertEqual(try store.totals().messages, 2)
        try assertCountersMatchRows(store)
    }

    // MARK: ACK

    func testAcknowledgedDeletesTheRowAndTheIDIsRemembered() throws {
        let store = try openStore()
        let id = GUID.random()
        XCTAssertEqual(store.insertAndWait([message(to: alice, id: id), message(to: alice)]), [.stored, .stored])
        let first = try XCTUnwrap(store.due(for: alice, now: now).first)
        XCTAssertEqual(first.messageID, id)

        XCTAssertEqual(store.acknowledgeAndWait(first), true)
        XCTAssertEqual(try store.messages(for: alice).map(\.messageID).contains(id), false, "the row is gone")
        XCTAssertEqual(try store.messages(for: alice).count, 1)
        try assertCountersMatchRows(store)

        // A re-sent copy is not stored again, and no row appears.
        XCTAssertEqual(store.insertAndWait(message(to: alice, id: id)), .alreadyDelivered)
        XCTAssertEqual(try store.messages(for: alice).count, 1)
        // Only for that recipient.
        XCTAssertEqual(store.insertAndWait(message(to: bob, id: id)), .stored)

        // A second ACK of the same seq deletes nothing.
        XCTAssertEqual(store.acknowledgeAndWait(first), false)
        try assertCountersMatchRows(store)
    }

    // MARK: Bounds

    func testPerRecipientMessagesBound() throws {
        let store = try openStore(settings: settings { $0.perRecipientMessages = 3 })
        for _ in 0..<3 { XCTAssertEqual(store.insertAndWait(message(to: alice, from: .random())), .stored) }
        let before = try store.totals()
        XCTAssertEqual(store.insertAndWait(message(to: alice, from: .random())), .overQuota(.recipientMessages))
        XCTAssertEqual(try store.totals().messages, before.messages, "nothing written")
        XCTAssertEqual(try store.totals().bytes, before.bytes)
        XCTAssertEqual(try store.messages(for: alice).count, 3)
        XCTAssertEqual(store.insertAndWait(message(to: bob)), .stored, "another recipient has room")
        // Room again after an ACK.
        XCTAssertEqual(store.acknowledgeAndWait(try XCTUnwrap(store.due(for: alice, now: now).first)), true)
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored)
        try assertCountersMatchRows(store)
    }

    func testPerRecipientBytesBound() throws {
        let store = try openStore(settings: settings { $0.perRecipientBytes = 250 })
        XCTAssertEqual(store.insertAndWait(message(to: alice, size: 100)), .stored)
        XCTAssertEqual(store.insertAndWait(message(to: alice, size: 150)), .stored, "exactly at the bound")
        XCTAssertEqual(store.insertAndWait(message(to: alice, size: 1)), .overQuota(.recipientBytes))
        // A single message larger than the bound for a recipient with nothing stored.
        XCTAssertEqual(store.insertAndWait(message(to: bob, size: 251)), .overQuota(.recipientBytes))
        XCTAssertEqual(try store.totals().messages, 2, "nothing written")
        XCTAssertEqual(try store.totals().bytes, 250)
        XCTAssertFalse(try store.hasMessages(for: bob))
        XCTAssertEqual(store.insertAndWait(message(to: bob, size: 250)), .stored)
        try assertCountersMatchRows(store)
    }

    func testPerSenderMessagesBound() throws {
        let store = try openStore(settings: settings { $0.perSenderMessages = 2 })
        XCTAssertEqual(store.insertAndWait([message(to: alice, from: sender1), message(to: alice, from: sender1)]), [.stored, .stored])
        XCTAssertEqual(store.insertAndWait(message(to: alice, from: sender1)), .overQuota(.senderMessages))
        XCTAssertEqual(try store.messages(for: alice).count, 2, "nothing written")
        // The bound is per sender and per recipient.
        XCTAssertEqual(store.insertAndWait(message(to: alice, from: sender2)), .stored)
        XCTAssertEqual(store.insertAndWait(message(to: bob, from: sender1)), .stored)
        XCTAssertEqual(try store.totals().messages, 4)
        try assertCountersMatchRows(store)
    }

    func testWholeStoreBytesBound() throws {
        let store = try openStore(settings: settings { $0.maxBytes = 250 })
        XCTAssertEqual(store.insertAndWait(message(to: alice, size: 100)), .stored)
        XCTAssertEqual(store.insertAndWait(message(to: bob, size: 100)), .stored)
        XCTAssertEqual(store.insertAndWait(message(to: carol, size: 51)), .overQuota(.storeBytes))
        XCTAssertEqual(try store.totals().messages, 2, "nothing written")
        XCTAssertEqual(try store.totals().bytes, 200)
        XCTAssertFalse(try store.hasMessages(for: carol))
        XCTAssertEqual(store.insertAndWait(message(to: carol, size: 50)), .stored, "exactly at the bound")
        try assertCountersMatchRows(store)
    }

    func testZeroMeansUnlimited() throws {
        let store = try openStore(
            settings: settings {
                $0.perRecipientMessages = 0
                $0.perRecipientBytes = 0
                $0.perSenderMessages = 0
                $0.maxBytes = 0
            })
        // Far above every default bound: one sender, one recipient, 1500 messages of 8 KiB (12 MB).
        let batch = (0..<1500).map { _ in message(to: alice, from: sender1, size: 8192) }
        let outcomes = store.insertAndWait(batch)
        XCTAssertEqual(outcomes.count, 1500)
        XCTAssertTrue(outcomes.allSatisfy { $0 == .stored }, "\(Set(outcomes.map { "\($0)" }))")
        XCTAssertEqual(try store.totals().messages, 1500)
        XCTAssertEqual(try store.totals().bytes, 1500 * 8192)
        try assertCountersMatchRows(store)
    }

    func testDefaultBoundsAreThoseOfTheProfile() {
        let defaults = StoreSettings()
        XCTAssertEqual(defaults.sync, .full)
        XCTAssertEqual(defaults.maxAttempts, 5)
        XCTAssertEqual(defaults.perRecipientMessages, 1000)
        XCTAssertEqual(defaults.perRecipientBytes, 10_485_760)
        XCTAssertEqual(defaults.perSenderMessages, 100)
        XCTAssertEqual(defaults.maxBytes, 1_073_741_824)
        XCTAssertEqual(defaults.maxAge, 604_800)
    }

    // MARK: Retries

    func testAttemptFailedCountsDelaysAndDropsAtMaxAttempts() throws {
        let store = try openStore(settings: settings { $0.maxAttempts = 3 })
        XCTAssertEqual(store.insertAndWait([message(to: alice), message(to: alice)]), [.stored, .stored])
        let due = try store.due(for: alice, now: now)
        let first = due[0]
        let second = due[1]

        XCTAssertEqual(store.attemptFailedAndWait(seq: first.seq, nextAttemptAt: now + 100), .retry)
        var row = try XCTUnwrap(store.messages(for: alice).first { $0.seq == first.seq })
        XCTAssertEqual(row.attempts, 1)
        XCTAssertEqual(row.nextAttemptAt, now + 100)
        XCTAssertEqual(try store.due(for: alice, now: now).map(\.seq), [second.seq], "not due before next_attempt_at")
        XCTAssertEqual(try store.due(for: alice, now: now + 99.5).map(\.seq), [second.seq])
        XCTAssertEqual(try store.due(for: alice, now: now + 100).map(\.seq), [first.seq, second.seq], "due again, in arrival order")

        XCTAssertEqual(store.attemptFailedAndWait(seq: first.seq, nextAttemptAt: now + 200), .retry)
        row = try XCTUnwrap(store.messages(for: alice).first { $0.seq == first.seq })
        XCTAssertEqual(row.attempts, 2)
        XCTAssertEqual(row.nextAttemptAt, now + 200)

        XCTAssertEqual(store.attemptFailedAndWait(seq: first.seq, nextAttemptAt: now + 300), .dropped, "third failure of 3")
        XCTAssertEqual(try store.messages(for: alice).map(\.seq), [second.seq], "dropped row deleted")
        try assertCountersMatchRows(store)

        XCTAssertEqual(store.attemptFailedAndWait(seq: first.seq, nextAttemptAt: now), .gone)
        XCTAssertEqual(store.attemptFailedAndWait(seq: 987_654, nextAttemptAt: now), .gone, "unknown seq")
        XCTAssertEqual(try store.messages(for: alice).first?.attempts, 0, "the other message untouched")
    }

    func testAttemptsUnlimitedWhenMaxAttemptsIsZero() throws {
        let store = try openStore(settings: settings { $0.maxAttempts = 0 })
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored)
        let seq = try XCTUnwrap(store.due(for: alice, now: now).first).seq
        for _ in 0..<20 { XCTAssertEqual(store.attemptFailedAndWait(seq: seq, nextAttemptAt: now), .retry) }
        XCTAssertEqual(try store.messages(for: alice).first?.attempts, 20)
    }

    // MARK: Expiry

    func testExpireDeletesMessagesOlderThanMaxAge() throws {
        let store = try openStore(settings: settings { $0.maxAge = 100 })
        let old = [message(to: alice, createdAt: now - 500), message(to: bob, createdAt: now - 101)]
        let young = [message(to: alice, createdAt: now - 99), message(to: bob, createdAt: now)]
        XCTAssertEqual(store.insertAndWait(old + young), [.stored, .stored, .stored, .stored])
        XCTAssertEqual(store.expireAndWait(now: now), 2)
        XCTAssertEqual(Set(try store.messages(for: nil).map(\.messageID)), Set(young.map(\.messageID)))
        try assertCountersMatchRows(store)
        XCTAssertEqual(store.expireAndWait(now: now), 0, "nothing left to expire")
        XCTAssertEqual(store.expireAndWait(now: now + 100.5), 2, "the rest, later")
        XCTAssertEqual(try store.totals().messages, 0)
        XCTAssertEqual(try store.mailboxes(), [])
        try assertCountersMatchRows(store)
    }

    func testExpireForgetsOldDeliveredIDs() throws {
        let store = try openStore(settings: settings { $0.deliveredMemory = 600 })
        let id = GUID.random()
        XCTAssertEqual(store.insertAndWait(message(to: alice, id: id)), .stored)
        XCTAssertEqual(store.acknowledgeAndWait(try XCTUnwrap(store.due(for: alice, now: now).first)), true)
        let ackedAt = Date().timeIntervalSince1970

        XCTAssertEqual(store.expireAndWait(now: ackedAt), 0)
        XCTAssertEqual(store.insertAndWait(message(to: alice, id: id)), .alreadyDelivered, "remembered for deliveredMemory")
        XCTAssertEqual(store.expireAndWait(now: ackedAt + 500), 0)
        XCTAssertEqual(store.insertAndWait(message(to: alice, id: id)), .alreadyDelivered)

        XCTAssertEqual(store.expireAndWait(now: ackedAt + 700), 0)
        XCTAssertEqual(store.insertAndWait(message(to: alice, id: id)), .stored, "forgotten after deliveredMemory")
        XCTAssertEqual(try store.messages(for: alice).count, 1)
    }

    func testExpireWithMaxAgeZeroKeepsMessages() throws {
        let store = try openStore(settings: settings { $0.maxAge = 0 })
        XCTAssertEqual(store.insertAndWait(message(to: alice, createdAt: 1)), .stored)
        XCTAssertEqual(store.expireAndWait(now: now), 0)
        XCTAssertEqual(try store.totals().messages, 1)
    }

    // MARK: Purge and counters

    /// Alice and Bob each get two old (1000 s) and two recent (10 s) messages, from two senders.
    private func fillForPurge(_ store: MessageStore) -> [NewMessage] {
        var sent: [NewMessage] = []
        for recipient in [alice, bob] {
            for (index, age) in [1000.0, 10, 1000, 10].enumerated() {
                sent.append(message(to: recipient, from: index % 2 == 0 ? sender1 : sender2, size: 10 + index, createdAt: now - age))
            }
        }
        XCTAssertEqual(store.insertAndWait(sent), Array(repeating: .stored, count: sent.count))
        return sent
    }

    func testPurgeRecipientOlderThan() throws {
        let store = try openStore()
        let sent = fillForPurge(store)
        XCTAssertEqual(try store.purge(recipient: alice, olderThan: 500, now: now), 2)
        let expected = sent.filter { $0.recipient != alice || $0.createdAt > now - 500 }
        XCTAssertEqual(try store.messages(for: nil).map(\.messageID), expected.map(\.messageID))
        try assertCountersMatchRows(store)
    }

    func testPurgeRecipient() throws {
        let store = try openStore()
        let sent = fillForPurge(store)
        XCTAssertEqual(try store.purge(recipient: alice, olderThan: nil, now: now), 4)
        XCTAssertEqual(try store.messages(for: nil).map(\.messageID), sent.filter { $0.recipient == bob }.map(\.messageID))
        XCTAssertFalse(try store.hasMessages(for: alice))
        XCTAssertEqual(try store.mailboxes().map(\.recipient), [bob])
        XCTAssertEqual(try store.purge(recipient: carol, olderThan: nil, now: now), 0, "unknown recipient")
        try assertCountersMatchRows(store)
    }

    func testPurgeOlderThan() throws {
        let store = try openStore()
        let sent = fillForPurge(store)
        XCTAssertEqual(try store.purge(recipient: nil, olderThan: 500, now: now), 4)
        XCTAssertEqual(try store.messages(for: nil).map(\.messageID), sent.filter { $0.createdAt > now - 500 }.map(\.messageID))
        try assertCountersMatchRows(store)
    }

    func testPurgeEverything() throws {
        let store = try openStore()
        _ = fillForPurge(store)
        XCTAssertEqual(try store.purge(recipient: nil, olderThan: nil, now: now), 8)
        XCTAssertEqual(try store.totals().messages, 0)
        XCTAssertEqual(try store.totals().bytes, 0)
        XCTAssertEqual(try store.mailboxes(), [])
        try assertCountersMatchRows(store)
        // Counters start again from zero.
        XCTAssertEqual(store.insertAndWait(message(to: alice, size: 7)), .stored)
        XCTAssertEqual(try store.mailboxes().map(\.messages), [1])
        XCTAssertEqual(try store.mailboxes().map(\.bytes), [7])
        try assertCountersMatchRows(store)
    }

    func testPurgeWhileTheWriterRunsKeepsCountersRight() throws {
        let store = try openStore(settings: settings { $0.perRecipientMessages = 0; $0.perSenderMessages = 0 })
        let writes = 300
        let group = DispatchGroup()
        for index in 0..<writes {
            group.enter()
            store.writer.submit(.insert([message(to: index % 3 == 0 ? alice : bob, size: 20, createdAt: now - Double(index))]) { _ in group.leave() })
            if index % 50 == 0 { _ = try store.purge(recipient: alice, olderThan: Double(index / 2), now: now) }
        }
        XCTAssertEqual(group.wait(timeout: .now() + completionDeadline), .success)
        try assertCountersMatchRows(store)
    }

    func testCountersFollowEveryKindOfDelete() throws {
        let store = try openStore(settings: settings { $0.maxAttempts = 1; $0.maxAge = 100 })
        XCTAssertEqual(
            store.insertAndWait([
                message(to: alice, from: sender1, size: 11), message(to: alice, from: sender2, size: 22),
                message(to: alice, from: sender1, size: 33, createdAt: now - 200), message(to: bob, from: sender1, size: 44),
            ]), [.stored, .stored, .stored, .stored])
        try assertCountersMatchRows(store)
        let due = try store.due(for: alice, now: now)
        XCTAssertEqual(store.acknowledgeAndWait(due[0]), true)
        try assertCountersMatchRows(store)
        XCTAssertEqual(store.attemptFailedAndWait(seq: due[1].seq, nextAttemptAt: now), .dropped)
        try assertCountersMatchRows(store)
        XCTAssertEqual(store.expireAndWait(now: now), 1)
        try assertCountersMatchRows(store)
        XCTAssertFalse(try store.hasMessages(for: alice), "alice's mailbox row is gone with her last message")
        XCTAssertEqual(try store.mailboxes().map(\.recipient), [bob])
        XCTAssertEqual(try store.totals().messages, 1)
        XCTAssertEqual(try store.totals().bytes, 44)
    }

    /// `mailbox stats` shows the age of a recipient's oldest message from `mailbox.oldest`: it must
    /// follow deletes (purge --older-than, expiry, ACKs of the oldest message), not only inserts.
    func testMailboxOldestFollowsDeletes() throws {
        let store = try openStore()
        XCTAssertEqual(
            store.insertAndWait([message(to: alice, createdAt: now - 5000), message(to: alice, createdAt: now - 10)]),
            [.stored, .stored])
        XCTAssertEqual(try store.mailboxes().first?.oldest, now - 5000)
        XCTAssertEqual(try store.purge(recipient: nil, olderThan: 3600, now: now), 1)
        XCTAssertEqual(try store.messages(for: alice).map(\.createdAt), [now - 10])
        XCTAssertEqual(
            try store.mailboxes().first?.oldest, now - 10,
            "after the 5000 s old message is purged, the oldest left is 10 s old")
        try assertCountersMatchRows(store, checkOldest: true)
    }
}
