import Foundation
import GRDB
import Logging
import PTPProtocol
import XCTest

@testable import RelayStore

/// A value set on one thread (the store's writer) and read on another (the test).
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value

    init(_ value: Value) { stored = value }

    var value: Value {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); defer { lock.unlock() }; stored = newValue }
    }

    func mutate<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&stored)
    }
}

/// How long a test waits for a writer completion before it fails (the writer commits within
/// milliseconds; this only bounds a hang).
let completionDeadline: Double = 15

/// Submits through `body` and waits (with a deadline, no sleeping) for the completion it passes on.
func waitForCompletion<T: Sendable>(
    _ what: String = "writer completion", timeout: Double = completionDeadline, file: StaticString = #filePath,
    line: UInt = #line, _ body: (@escaping @Sendable (T) -> Void) -> Void
) -> T? {
    let result = Locked<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    body { value in
        result.value = value
        done.signal()
    }
    if done.wait(timeout: .now() + timeout) == .timedOut {
        XCTFail("\(what) did not arrive within \(timeout) s", file: file, line: line)
        return nil
    }
    return result.value
}

extension MessageStore {
    func insertAndWait(_ messages: [NewMessage], file: StaticString = #filePath, line: UInt = #line) -> [InsertOutcome] {
        waitForCompletion("insert completion", file: file, line: line) { done in writer.submit(.insert(messages, done)) } ?? []
    }

    func insertAndWait(_ message: NewMessage, file: StaticString = #filePath, line: UInt = #line) -> InsertOutcome? {
        insertAndWait([message], file: file, line: line).first
    }

    func acknowledgeAndWait(_ message: StoredMessage, file: StaticString = #filePath, line: UInt = #line) -> Bool? {
        waitForCompletion("acknowledged completion", file: file, line: line) { done in
            writer.submit(.acknowledged(seq: message.seq, recipient: message.recipient, messageID: message.messageID, done))
        }
    }

    func attemptFailedAndWait(seq: Int64, nextAttemptAt: Double, file: StaticString = #filePath, line: UInt = #line) -> AttemptOutcome? {
        waitForCompletion("attemptFailed completion", file: file, line: line) { done in
            writer.submit(.attemptFailed(seq: seq, nextAttemptAt: nextAttemptAt, done))
        }
    }

    func expireAndWait(now: Double, file: StaticString = #filePath, line: UInt = #line) -> Int? {
        waitForCompletion("expire completion", file: file, line: line) { done in writer.submit(.expire(now: now, done)) }
    }

    /// Everything submitted before has been committed.
    func barrierAndWait(file: StaticString = #filePath, line: UInt = #line) {
        _ = waitForCompletion("barrier completion", file: file, line: line) { (done: @escaping @Sendable (Bool) -> Void) in
            writer.submit(.barrier { done(true) })
        }
    }

    /// A pragma as the writer connection (the one `StoreWriter` commits on) sees it.
    func writerPragma(_ name: String) throws -> String? {
        try pool.write { db in try String.fetchOne(db, sql: "PRAGMA \(name)") }
    }
}

/// A fresh directory per test, removed afterwards, and the stores opened in it (closed afterwards).
class StoreTestCase: XCTestCase {
    private(set) var directory = ""
    private var opened: [MessageStore] = []
    let logger = Logger(label: "relay-store-tests")
    /// Seconds since 1970 at the start of the test: messages' `createdAt` are placed around it.
    let now = Date().timeIntervalSince1970

    override func setUpWithError() throws {
        try super.setUpWithError()
        let base = URL(fileURLWithPath: NSTemporaryDirectory(), isDirectory: true)
            .appendingPathComponent("relay-store-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        directory = base.path
    }

    override func tearDownWithError() throws {
        for store in opened { store.close() }
        opened.removeAll()
        if !directory.isEmpty {
            // Undo any chmod a test made, so the directory can go.
            _ = try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory)
            try? FileManager.default.removeItem(atPath: directory)
        }
        try super.tearDownWithError()
    }

    var storePath: String { MessageStore.path(inDataDirectory: directory) }

    func settings(_ configure: (inout StoreSettings) -> Void = { _ in }) -> StoreSettings {
        var settings = StoreSettings()
        configure(&settings)
        return settings
    }

    /// Opens a store (closed in tearDown).
    func openStore(
        path: String? = nil, settings: StoreSettings = StoreSettings(), readOnly: Bool = false
    ) throws -> MessageStore {
        let store = try MessageStore(path: path ?? storePath, settings: settings, logger: logger, readOnly: readOnly)
        opened.append(store)
        return store
    }

    /// A frame of `size` bytes with a pattern that depends on `seed` (every byte value appears).
    func frame(size: Int = 100, seed: Int = 0) -> [UInt8] {
        (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) }
    }

    func message(
        to recipient: GUID, id: GUID = .random(), from sender: GUID = GUID(high: 0x5e, low: 0xd3), size: Int = 100,
        createdAt: Double? = nil, seed: Int = 0
    ) -> NewMessage {
        NewMessage(recipient: recipient, messageID: id, sender: sender, frame: frame(size: size, seed: seed), createdAt: createdAt ?? now)
    }

    /// The store's counter tables (mailbox, pair, totals) agree with the rows of `message`.
    func assertCountersMatchRows(
        _ store: MessageStore, checkOldest: Bool = false, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let rows = try store.messages(for: nil, limit: 1_000_000)
        var boxes: [GUID: (messages: Int, bytes: Int, oldest: Double)] = [:]
        var pairs: [[GUID]: Int] = [:]
        for row in rows {
            let box = boxes[row.recipient] ?? (0, 0, .infinity)
            boxes[row.recipient] = (box.messages + 1, box.bytes + row.frame.count, min(box.oldest, row.createdAt))
            pairs[[row.recipient, row.sender], default: 0] += 1
        }
        let totals = try store.totals()
        XCTAssertEqual(totals.messages, rows.count, "totals.messages", file: file, line: line)
        XCTAssertEqual(totals.bytes, rows.reduce(0) { $0 + $1.frame.count }, "totals.bytes", file: file, line: line)
        let summaries = try store.mailboxes()
        XCTAssertEqual(
            Set(summaries.map(\.recipient)), Set(boxes.keys), "mailbox rows are exactly the recipients with messages",
            file: file, line: line)
        for summary in summaries {
            guard let expected = boxes[summary.recipient] else { continue }
            XCTAssertEqual(summary.messages, expected.messages, "mailbox.messages of \(summary.recipient)", file: file, line: line)
            XCTAssertEqual(summary.bytes, expected.bytes, "mailbox.bytes of \(summary.recipient)", file: file, line: line)
            if checkOldest {
                XCTAssertEqual(
                    summary.oldest, expected.oldest, "mailbox.oldest of \(summary.recipient) is its oldest message's created_at",
                    file: file, line: line)
            }
        }
        let pairRows = try store.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT recipient, sender, messages FROM pair")
        }
        var counted: [[GUID]: Int] = [:]
        for row in pairRows {
            counted[[row.guid("recipient"), row.guid("sender")]] = row["messages"]
        }
        XCTAssertEqual(counted, pairs, "pair counters (per recipient and sender)", file: file, line: line)
    }

    /// The kernel's id of the calling thread (Linux: `/proc/thread-self` -> `PID/task/TID`).
    static func currentThreadID() -> String {
        let link = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self")) ?? ""
        return (link as NSString).lastPathComponent
    }

    /// The kernel's name of the calling thread (what `top -H`, `perf` and gdb show).
    static func currentThreadName() -> String {
        let comm = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
        return comm.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Whether a thread of this process with that kernel id is still alive.
    func threadIsAlive(_ id: String) -> Bool {
        !id.isEmpty && FileManager.default.fileExists(atPath: "/proc/self/task/\(id)")
    }

    /// The kernel id of the thread that runs the store's completions.
    func writerThreadID(_ store: MessageStore, file: StaticString = #filePath, line: UInt = #line) -> String {
        waitForCompletion("barrier completion", file: file, line: line) { (done: @escaping @Sendable (String) -> Void) in
            store.writer.submit(.barrier { done(StoreTestCase.currentThreadID()) })
        } ?? ""
    }

    /// Open descriptors of this process on `path` (or its -wal / -shm files).
    func openDescriptors(on path: String) -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.filter { fd in
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? ""
            return target.hasPrefix(path)
        }.count
    }

    /// Polls `condition` until it holds or `timeout` passes (for effects with no completion to wait
    /// on, such as a thread ending).
    func eventually(timeout: Double = 3, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
