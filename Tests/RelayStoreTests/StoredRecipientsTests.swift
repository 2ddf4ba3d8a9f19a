import Foundation
import PTPProtocol
import XCTest

@testable import RelayStore

/// `StoredRecipients`, the in-memory list of recipients with rows that every HELLO asks instead of
/// reading SQLite: it must never miss a recipient with rows (its messages would wait for the next
/// one stored), and should list no other (each costs a read).
final class StoredRecipientsTests: StoreTestCase {
    let alice = GUID(high: 0xa11ce, low: 1)
    let bob = GUID(high: 0xb0b, low: 2)
    let carol = GUID(high: 0xca201, low: 3)

    /// The set is exactly the recipients the database holds rows for.
    private func assertExact(_ store: MessageStore, _ what: String = "", file: StaticString = #filePath, line: UInt = #line) throws {
        store.barrierAndWait(file: file, line: line)
        let rows = Set(try store.messages(for: nil, limit: 1_000_000).map(\.recipient))
        XCTAssertEqual(store.storedRecipients.all, rows, "stored recipients \(what)", file: file, line: line)
    }

    func testAnInsertListsItsRecipientBeforeItsCompletionRuns() throws {
        let store = try openStore()
        let alice = self.alice
        XCTAssertFalse(store.storedRecipients.contains(alice))
        let insert = message(to: alice)
        let listedAtCompletion = waitForCompletion { (done: @escaping @Sendable (Bool) -> Void) in
            store.writer.submit(.insert([insert]) { _ in done(store.storedRecipients.contains(alice)) })
        }
        XCTAssertEqual(listedAtCompletion, true, "a caller told `stored` (and announcing it) finds the recipient listed")
        XCTAssertFalse(store.storedRecipients.contains(bob))
        try assertExact(store)
    }

    func testRefusedInsertsListNobody() throws {
        let store = try openStore(settings: settings { $0.perRecipientMessages = 1 })
        let first = message(to: alice)
        XCTAssertEqual(store.insertAndWait(first), .stored)
        XCTAssertEqual(store.insertAndWait(first), .duplicate)
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .overQuota(.recipientMessages))
        XCTAssertEqual(store.insertAndWait(message(to: bob, size: 0)), .stored)
        let stored = try XCTUnwrap(store.due(for: bob, now: now).first)
        XCTAssertEqual(store.acknowledgeAndWait(stored), true)
        XCTAssertEqual(store.insertAndWait(message(to: bob, id: stored.messageID)), .alreadyDelivered)
        try assertExact(store, "after refusals")
        XCTAssertEqual(store.storedRecipients.all, [alice])
    }

    func testAcknowledgingTheLastRowRemovesTheRecipient() throws {
        let store = try openStore()
        XCTAssertEqual(store.insertAndWait([message(to: alice), message(to: alice), message(to: bob)]), [.stored, .stored, .stored])
        try assertExact(store)
        let due = try store.due(for: alice, now: now)
        XCTAssertEqual(store.acknowledgeAndWait(due[0]), true)
        XCTAssertTrue(store.storedRecipients.contains(alice), "one row left")
        XCTAssertEqual(store.acknowledgeAndWait(due[1]), true)
        XCTAssertFalse(store.storedRecipients.contains(alice), "out once the commit left her no row")
        XCTAssertEqual(store.acknowledgeAndWait(due[1]), false, "a second ACK deletes nothing")
        try assertExact(store)
        XCTAssertEqual(store.storedRecipients.all, [bob])
    }

    func testDroppingAfterTheLastAttemptRemovesTheRecipient() throws {
        let store = try openStore(settings: settings { $0.maxAttempts = 2 })
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored)
        let seq = try XCTUnwrap(store.due(for: alice, now: now).first).seq
        XCTAssertEqual(store.attemptFailedAndWait(seq: seq, nextAttemptAt: now), .retry)
        XCTAssertTrue(store.storedRecipients.contains(alice), "kept for another attempt")
        XCTAssertEqual(store.attemptFailedAndWait(seq: seq, nextAttemptAt: now), .dropped)
        XCTAssertFalse(store.storedRecipients.contains(alice))
        try assertExact(store)
    }

    func testExpiryRemovesRecipientsLeftWithNothing() throws {
        let store = try openStore(settings: settings { $0.maxAge = 100 })
        XCTAssertEqual(
            store.insertAndWait([
                message(to: alice, createdAt: now - 500), message(to: bob, createdAt: now - 500), message(to: bob, createdAt: now),
                message(to: carol, createdAt: now),
            ]), [.stored, .stored, .stored, .stored])
        XCTAssertEqual(store.expireAndWait(now: now), 2)
        XCTAssertEqual(store.storedRecipients.all, [bob, carol])
        try assertExact(store, "after expiry")
        XCTAssertEqual(store.expireAndWait(now: now + 200), 2)
        XCTAssertEqual(store.storedRecipients.count, 0)
    }

    /// Runs `submit` while the writer thread is held in a completion: what it submits is queued
    /// meanwhile and committed in the writer's next transaction, together.
    private func submitTogether(_ store: MessageStore, _ submit: () -> Void) {
        let held = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        store.writer.submit(.barrier { held.signal(); release.wait() })
        XCTAssertEqual(held.wait(timeout: .now() + completionDeadline), .success, "the writer reached the barrier")
        submit()
        release.signal()
    }

    /// An ACK that empties a mailbox and an insert for the same recipient in one transaction: the
    /// recipient stays listed, whichever comes first.
    func testDeleteAndInsertInOneTransactionKeepTheRecipient() throws {
        let store = try openStore()
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored)
        // The transaction count as each completion saw it (they run after their commit).
        let seen = Locked<[Int]>([])
        let note: @Sendable () -> Void = { seen.mutate { $0.append(store.writer.commits.transactions) } }
        let old = try XCTUnwrap(store.due(for: alice, now: now).first)
        submitTogether(store) {
            store.writer.submit(.acknowledged(seq: old.seq, recipient: alice, messageID: old.messageID) { _ in note() })
            store.writer.submit(.insert([message(to: alice)]) { _ in note() })
        }
        store.barrierAndWait()
        XCTAssertEqual(seen.value.count, 2)
        XCTAssertEqual(Set(seen.value).count, 1, "the ACK and the insert shared one transaction")
        XCTAssertEqual(try store.messages(for: alice).count, 1)
        XCTAssertTrue(store.storedRecipients.contains(alice), "deleted then inserted: listed")

        seen.value = []
        let second = try XCTUnwrap(store.due(for: alice, now: now).first)
        submitTogether(store) {
            store.writer.submit(.insert([message(to: alice)]) { _ in note() })
            store.writer.submit(.acknowledged(seq: second.seq, recipient: alice, messageID: second.messageID) { _ in note() })
        }
        store.barrierAndWait()
        XCTAssertEqual(seen.value.count, 2)
        XCTAssertEqual(Set(seen.value).count, 1, "the insert and the ACK shared one transaction")
        XCTAssertEqual(try store.messages(for: alice).count, 1)
        XCTAssertTrue(store.storedRecipients.contains(alice), "inserted then the other row deleted: listed")
        try assertExact(store)
    }

    func testReopeningLoadsTheRecipientsFromTheStore() throws {
        var store: MessageStore? = try openStore()
        XCTAssertEqual(store?.insertAndWait([message(to: alice), message(to: bob), message(to: bob)]), [.stored, .stored, .stored])
        if let first = try store?.due(for: alice, now: now).first { XCTAssertEqual(store?.acknowledgeAndWait(first), true) }
        store?.close()
        store = nil
        let reopened = try openStore()
        XCTAssertEqual(reopened.storedRecipients.all, [bob], "a restart starts from the mailbox table")
        try assertExact(reopened)
    }

    /// The `mailbox purge` command writes outside the relay's writer: the set may keep a recipient
    /// the purge emptied (one read that finds nothing), never lose one that has rows.
    func testPurgeOutsideTheWriterLeavesASupersetNeverASubset() throws {
        let store = try openStore()
        XCTAssertEqual(store.insertAndWait([message(to: alice), message(to: bob)]), [.stored, .stored])
        XCTAssertEqual(try store.purge(recipient: alice, olderThan: nil), 1)
        XCTAssertTrue(store.storedRecipients.contains(bob))
        XCTAssertTrue(store.storedRecipients.all.isSuperset(of: try store.recipientsWithMessages()))
    }

    /// Many recipients, random inserts, ACKs, failed attempts and expiries: the set matches the
    /// rows after every round.
    func testStaysExactUnderAMixOfWrites() throws {
        let store = try openStore(settings: settings { $0.maxAttempts = 2; $0.maxAge = 50; $0.perRecipientMessages = 0; $0.perSenderMessages = 0 })
        var random = SystemRandomNumberGenerator()
        let recipients = (0..<12).map { GUID(high: 0x5e7, low: UInt64($0)) }
        for round in 0..<25 {
            let inserts = (0..<Int.random(in: 0...6, using: &random)).map { _ in
                message(to: recipients.randomElement(using: &random)!, createdAt: now - Double(Int.random(in: 0...100, using: &random)))
            }
            store.writer.submit(.insert(inserts) { _ in })
            for row in try store.messages(for: nil) where Int.random(in: 0..<4, using: &random) == 0 {
                if Bool.random(using: &random) {
                    store.writer.submit(.acknowledged(seq: row.seq, recipient: row.recipient, messageID: row.messageID) { _ in })
                } else {
                    store.writer.submit(.attemptFailed(seq: row.seq, nextAttemptAt: now) { _ in })
                }
            }
            if round % 7 == 6 { store.writer.submit(.expire(now: now) { _ in }) }
            try assertExact(store, "after round \(round)")
        }
    }
}
