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
        XCTAssertFalse(store.storedRecipients.contains(alice))
        let listedAtCompletion = waitForCompletion { (done: @escaping @Sendable (Bool) -> Void) in
            store.writer.submit(.insert([message(to: alice)]) { _ in done(store.storedRecipients.contains(alice)) })
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

    /// An ACK that empties a mailbox and an insert for the same recipient in one transaction: the
    /// recipient stays listed, whichever comes first.
    func testDeleteAndInsertInOneTransactionKeepTheRecipient() throws {
        // A long commit delay and a large batch: writes submitted together share one transaction.
        let store = try openStore(settings: settings { $0.commitDelay = 0.3; $0.batchSize = 1000 })
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored)
        let old = try XCTUnwrap(store.due(for: alice, now: now).first)
        let before = store.writer.commits.transactions
        store.writer.submit(.acknowledged(seq: old.seq, recipient: alice, messageID: old.messageID) { _ in })
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored)
        XCTAssertEqual(store.writer.commits.transactions - before, 1, "the ACK and the insert shared one transaction")
        XCTAssertTrue(store.storedRecipients.contains(alice), "deleted then inserted: listed")

        let second = try XCTUnwrap(store.due(for: alice, now: now).first)
        let next = message(to: alice)
        let transactions = store.writer.commits.transactions
        store.writer.submit(.insert([next]) { _ in })
        XCTAssertEqual(store.acknowledgeAndWait(second), true)
        XCTAssertEqual(store.writer.commits.transactions - transactions, 1)
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
