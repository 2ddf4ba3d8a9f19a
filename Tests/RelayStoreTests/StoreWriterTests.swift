import Foundation
import GRDB
import PTPProtocol
import XCTest

@testable import RelayStore

/// The writer thread: group commit, durability setting, closing, and failures (bad files, locks).
final class StoreWriterTests: StoreTestCase {
    let alice = GUID(high: 0xa11ce, low: 1)

    // MARK: Group commit

    func testManyQuickWritesShareFewTransactions() throws {
        let store = try openStore(settings: settings { $0.perRecipientMessages = 0; $0.perSenderMessages = 0 })
        let count = 2000
        let recipients = (0..<20).map { GUID(high: 0xbeef, low: UInt64($0)) }
        let messages = (0..<count).map { index in message(to: recipients[index % recipients.count], size: 256, seed: index) }
        let outcomes = Locked<[Int: InsertOutcome]>([:])
        let group = DispatchGroup()
        let before = store.writer.commits
        for (index, message) in messages.enumerated() {
            group.enter()
            store.writer.submit(
                .insert([message]) { result in
                    outcomes.mutate { $0[index] = result.first }
                    group.leave()
                })
        }
        XCTAssertEqual(group.wait(timeout: .now() + completionDeadline), .success, "every completion arrived")
        let after = store.writer.commits
        let results = outcomes.value
        XCTAssertEqual(results.count, count)
        XCTAssertTrue(results.values.allSatisfy { $0 == .stored }, "\(Set(results.values.map { "\($0)" }))")
        XCTAssertEqual(try store.totals().messages, count)
        XCTAssertEqual(after.writes - before.writes, count)
        let transactions = after.transactions - before.transactions
        XCTAssertGreaterThan(transactions, 0)
        XCTAssertLessThan(transactions, count / 10, "group commit: \(transactions) transactions for \(count) writes")
        // Submitted from one thread: stored in submission order.
        let stored = try store.messages(for: nil, limit: count)
        XCTAssertEqual(stored.map(\.messageID), messages.map(\.messageID))
        try assertCountersMatchRows(store)
    }

    func testLoneWriteIsCommittedWithoutWaitingForABatch() throws {
        // A single write must not wait for batchSize others: commitDelay bounds its wait.
        let store = try openStore(settings: settings { $0.commitDelay = 0.002; $0.batchSize = 512 })
        let started = Date()
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored)
        XCTAssertLessThan(Date().timeIntervalSince(started), 2, "committed within commitDelay plus one fsync")
        XCTAssertEqual(store.writer.commits.transactions, 1)
        XCTAssertEqual(store.writer.commits.writes, 1)
    }

    // MARK: Durability setting

    func testSyncFullSetsSynchronousFullOnTheWriterConnection() throws {
        let store = try openStore(settings: settings { $0.sync = .full })
        let promise = "store.sync=full promises that a committed message survives a power loss: PRAGMA synchronous = FULL (2)"
        XCTAssertEqual(try store.writerPragma("synchronous"), "2", promise)
        XCTAssertEqual(try store.writerPragma("journal_mode"), "wal")
        // The writer thread commits on that same connection (one writer connection per pool).
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored)
        XCTAssertEqual(try store.writerPragma("synchronous"), "2", promise)
    }

    func testSyncNormalSetsSynchronousNormalOnTheWriterConnection() throws {
        let store = try openStore(settings: settings { $0.sync = .normal })
        XCTAssertEqual(try store.writerPragma("synchronous"), "1")
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored)
        XCTAssertEqual(try store.writerPragma("synchronous"), "1")
    }

    // MARK: Close

    func testCloseCommitsWhatWasSubmittedThenWritesFail() throws {
        let store = try openStore()
        let completed = Locked<[InsertOutcome]>([])
        for index in 0..<100 {
            store.writer.submit(.insert([message(to: alice, seed: index)]) { outcomes in completed.mutate { $0 += outcomes } })
        }
        store.close()
        XCTAssertEqual(completed.value.count, 100, "close() returns after every queued write completed")
        XCTAssertTrue(completed.value.allSatisfy { $0 == .stored })
        XCTAssertEqual(try store.totals().messages, 100)

        // After close every kind of write completes, with a failure.
        let insert = store.insertAndWait(message(to: alice))
        guard case .failed(let reason)? = insert else {
            return XCTFail("insert after close: expected .failed, got \(String(describing: insert))")
        }
        XCTAssertTrue(reason.contains("closed"), reason)
        let attempt = store.attemptFailedAndWait(seq: 1, nextAttemptAt: now)
        guard case .failed? = attempt else {
            return XCTFail("attemptFailed after close: expected .failed, got \(String(describing: attempt))")
        }
        let seq1 = try XCTUnwrap(store.messages(for: alice).first)
        XCTAssertEqual(store.acknowledgeAndWait(seq1), false)
        XCTAssertEqual(store.expireAndWait(now: now + 1e9), 0)
        store.barrierAndWait()
        XCTAssertEqual(try store.totals().messages, 100, "nothing written or deleted after close")
        // Closing twice does not hang.
        store.close()
    }

    /// `stop()` documents "commits what is queued, then ends the thread": the writer thread must end,
    /// and with it the last references to the database, so that its files are closed.
    func testCloseEndsTheWriterThreadAndReleasesTheFile() throws {
        var writerThread = ""
        do {
            let store = try MessageStore(path: storePath, settings: StoreSettings(), logger: logger)
            XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored)
            writerThread = writerThreadID(store)
            XCTAssertTrue(threadIsAlive(writerThread))
            XCTAssertGreaterThan(openDescriptors(on: storePath), 0)
            store.close()
        }
        XCTAssertTrue(
            eventually { !threadIsAlive(writerThread) },
            "the writer thread (tid \(writerThread)) is still alive 3 s after close()")
        XCTAssertTrue(
            eventually { openDescriptors(on: storePath) == 0 },
            "\(openDescriptors(on: storePath)) descriptors still open on \(storePath) 3 s after close() and release")
    }

    // MARK: Bad files

    func testCorruptFileIsAStoreErrorNamingTheFile() throws {
        var garbage = [UInt8](repeating: 0, count: 8192)
        var generator = SystemRandomNumberGenerator()
        for index in garbage.indices { garbage[index] = UInt8.random(in: 0...255, using: &generator) }
        XCTAssertTrue(FileManager.default.createFile(atPath: storePath, contents: Data(garbage)))
        XCTAssertThrowsError(try openStore()) { error in
            guard let error = error as? StoreError else { return XCTFail("not a StoreError: \(error)") }
            XCTAssertEqual(error.path, storePath)
            XCTAssertTrue(error.description.contains(storePath), error.description)
            XCTAssertTrue(error.description.contains("not a valid database"), error.description)
        }
        // The file is left alone for the operator to look at.
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: storePath)), Data(garbage))
    }

    func testTextFileIsAStoreError() throws {
        XCTAssertTrue(FileManager.default.createFile(atPath: storePath, contents: Data("relay: not a database\n".utf8)))
        XCTAssertThrowsError(try openStore()) { error in
            XCTAssertTrue(error is StoreError, "\(error)")
            XCTAssertTrue("\(error)".contains(storePath), "\(error)")
        }
    }

    func testDamagedPagesOfAValidStoreAreAnErrorOrSuccessNeverACrash() throws {
        let store = try openStore()
        let many = (0..<400).map { message(to: GUID(high: 7, low: UInt64($0)), size: 512, seed: $0) }
        XCTAssertEqual(store.insertAndWait(many).filter { $0 == .stored }.count, 400)
        store.close()
        // A checkpointed copy, damaged past the first pages (the header and schema stay readable).
        let copy = (directory as NSString).appendingPathComponent("damaged.sqlite")
        let checkpointed = try DatabaseQueue(path: storePath)
        try checkpointed.writeWithoutTransaction { db in try db.execute(sql: "VACUUM INTO ?", arguments: [copy]) }
        try checkpointed.close()
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: copy))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: min(8 * 4096, size / 2))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 64 * 1024))
        try handle.close()
        do {
            let damaged = try openStore(path: copy)
            // Whatever it reads or writes: an error or a result, never a crash.
            _ = try? damaged.messages(for: nil, limit: 10_000)
            _ = try? damaged.mailboxes()
            let outcome = damaged.insertAndWait([message(to: alice)])
            XCTAssertEqual(outcome.count, 1)
            if case .failed(let reason)? = outcome.first { XCTAssertFalse(reason.isEmpty) }
        } catch let error as StoreError {
            XCTAssertTrue(error.description.contains(copy), error.description)
        }
    }

    func testMissingDirectoryIsAStoreErrorNamingTheFile() throws {
        let path = (directory as NSString).appendingPathComponent("no/such/dir/store.sqlite")
        XCTAssertThrowsError(try openStore(path: path)) { error in
            guard let error = error as? StoreError else { return XCTFail("not a StoreError: \(error)") }
            XCTAssertEqual(error.path, path)
            XCTAssertTrue(error.description.contains(path), error.description)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent("no")), "nothing created")
    }

    func testDirectoryThatIsAFileIsAStoreError() throws {
        let notADirectory = (directory as NSString).appendingPathComponent("plain-file")
        XCTAssertTrue(FileManager.default.createFile(atPath: notADirectory, contents: Data("x".utf8)))
        let path = (notADirectory as NSString).appendingPathComponent("store.sqlite")
        XCTAssertThrowsError(try openStore(path: path)) { error in
            guard let error = error as? StoreError else { return XCTFail("not a StoreError: \(error)") }
            XCTAssertTrue(error.description.contains(path), error.description)
        }
    }

    func testUnwritableDirectoryIsAStoreError() throws {
        let locked = (directory as NSString).appendingPathComponent("read-only")
        try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o555])
        defer { _ = try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: locked) }
        let path = (locked as NSString).appendingPathComponent("store.sqlite")
        // root writes anywhere: then the directory is not unwritable and the open succeeds.
        let probe = (locked as NSString).appendingPathComponent("probe")
        if FileManager.default.createFile(atPath: probe, contents: Data()) {
            try FileManager.default.removeItem(atPath: probe)
            throw XCTSkip("running as root: a 0555 directory is writable, nothing to test")
        }
        XCTAssertThrowsError(try openStore(path: path)) { error in
            guard let error = error as? StoreError else { return XCTFail("not a StoreError: \(error)") }
            XCTAssertTrue(error.description.contains(path), error.description)
        }
    }

    func testReadOnlyOpenOfAMissingStoreIsAStoreError() throws {
        XCTAssertThrowsError(try openStore(readOnly: true)) { error in
            guard let error = error as? StoreError else { return XCTFail("not a StoreError: \(error)") }
            XCTAssertTrue(error.description.contains(storePath), error.description)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: storePath), "a read-only open creates nothing")
    }

    func testReadOnlyOpenReadsAndRefusesWrites() throws {
        let store = try openStore()
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored)
        let reader = try openStore(readOnly: true)
        XCTAssertEqual(try reader.messages(for: alice).count, 1)
        XCTAssertEqual(try reader.totals().messages, 1)
        let outcome = reader.insertAndWait([message(to: alice)])
        guard case .failed? = outcome.first else { return XCTFail("write through a read-only store: \(outcome)") }
        XCTAssertEqual(try store.totals().messages, 1)
    }

    // MARK: Two stores on one file

    /// Another `MessageStore` on the same file holds a write transaction while a second one opens,
    /// reads and writes: errors or successes, never a crash or a lost message.
    func testOpenWhileAnotherStoreHoldsAWriteTransaction() throws {
        let holder = try openStore()
        XCTAssertEqual(holder.insertAndWait(message(to: alice)), .stored)

        let holding = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let released = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            try? holder.pool.write { db in
                try db.execute(sql: "UPDATE totals SET messages = messages WHERE id = 0")  // takes the write lock
                holding.signal()
                _ = release.wait(timeout: .now() + 10)
            }
            released.signal()
        }
        XCTAssertEqual(holding.wait(timeout: .now() + completionDeadline), .success)

        var second: MessageStore?
        do {
            second = try openStore()
        } catch let error as StoreError {
            XCTAssertTrue(error.description.contains(storePath), error.description)
        }
        // WAL: reading does not wait for the other writer.
        if let second {
            XCTAssertEqual(try second.messages(for: alice).count, 1)
        }
        release.signal()
        XCTAssertEqual(released.wait(timeout: .now() + completionDeadline), .success)

        if let second {
            XCTAssertEqual(second.insertAndWait(message(to: alice)), .stored, "writes once the other transaction ended")
            XCTAssertEqual(try holder.totals().messages, 2)
            try assertCountersMatchRows(holder)
        }
    }

    /// A commit that cannot get the write lock (another process holds it past the busy timeout)
    /// fails the whole batch with a reason; the writer keeps going afterwards.
    func testWriteLockedPastTheBusyTimeoutFailsAndTheWriterRecovers() throws {
        let store = try openStore()
        let other = try DatabaseQueue(path: storePath)
        let holding = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let released = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            try? other.inTransaction(.immediate) { _ in
                holding.signal()
                _ = release.wait(timeout: .now() + 20)
                return .commit
            }
            released.signal()
        }
        XCTAssertEqual(holding.wait(timeout: .now() + completionDeadline), .success)
        // Busy timeout is 5 s: this waits that long, then fails.
        let outcomes = store.insertAndWait([message(to: alice), message(to: alice)])
        release.signal()
        XCTAssertEqual(released.wait(timeout: .now() + completionDeadline), .success)
        XCTAssertEqual(outcomes.count, 2)
        for outcome in outcomes {
            guard case .failed(let reason) = outcome else { XCTFail("expected .failed, got \(outcome)"); continue }
            XCTAssertTrue(reason.contains("locked"), reason)
        }
        XCTAssertEqual(try store.totals().messages, 0, "nothing of the failed batch is stored")
        XCTAssertEqual(store.insertAndWait(message(to: alice)), .stored, "the writer recovers")
        try other.close()
    }
}
