#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import XCTest

// Helpers for the store-and-forward tests: killing a relay hard, running `ptpchat-relay mailbox`,
// reading the store's counters, a seeded random generator.

extension RelayProcess {
    /// SIGKILL (no chance to commit or close anything), then waits for the process to be gone.
    /// Returns false when it was still running 10 s later.
    @discardableResult
    func kill9() -> Bool {
        guard child.isRunning else { return true }
        kill(child.process.processIdentifier, SIGKILL)
        return child.waitForExit(timeout: 10) != nil
    }

    /// `<data dir>/store.sqlite`.
    var storeFile: URL { dataDirectory.appendingPathComponent("store.sqlite") }
}

/// One run of `ptpchat-relay mailbox …`.
struct MailboxRun: CustomStringConvertible {
    var arguments: [String]
    /// nil when it did not end in time.
    var status: Int32?
    var stdout: String
    var stderr: String

    var stdoutLines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
    var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }

    /// stdout as a JSON object (`stats --json`, `purge --json`).
    var jsonObject: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any]
    }

    /// stdout as a JSON array of objects (`list --json`).
    var jsonArray: [[String: Any]]? {
        (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [[String: Any]]
    }

    var description: String {
        "mailbox \(arguments.joined(separator: " ")) -> status \(status.map(String.init) ?? "still running")\n"
            + "stdout:\n\(stdout)stderr:\n\(stderr)"
    }
}


extension RelayTestCase {
    /// Runs `ptpchat-relay mailbox <arguments>` to its end (at most `timeout` seconds).
    func mailbox(_ arguments: [String], timeout: Double = 20) throws -> MailboxRun {
        let child = try runRelayBinary(["mailbox"] + arguments, name: "mailbox-\(Ids.make().prefix(8))")
        let status = child.waitForExit(timeout: timeout)
        if status == nil { child.stop(grace: 1) }
        return MailboxRun(arguments: arguments, status: status, stdout: child.stdout, stderr: child.stderr)
    }

    /// `mailbox stats --json` on `dataDirectory`: total messages, bytes and per recipient (lower-case
    /// id → messages). Fails the test (and returns nil) when the command does not answer so.
    func storeStats(_ dataDirectory: URL, file: StaticString = #filePath, line: UInt = #line)
        -> (messages: Int, bytes: Int, perRecipient: [String: Int])?
    {
        guard let run = try? mailbox(["stats", "--data-dir", dataDirectory.path, "--json"]) else {
            XCTFail("cannot run mailbox stats", file: file, line: line)
            return nil
        }
        guard run.status == 0, let object = run.jsonObject, let messages = object["messages"] as? Int,
            let bytes = object["bytes"] as? Int, let rows = object["recipients"] as? [[String: Any]]
        else {
            XCTFail("mailbox stats --json did not answer as expected: \(run)", file: file, line: line)
            return nil
        }
        var perRecipient: [String: Int] = [:]
        for row in rows {
            if let recipient = row["recipient"] as? String, let count = row["messages"] as? Int {
                perRecipient[recipient.lowercased()] = count
            }
        }
        return (messages, bytes, perRecipient)
    }

    /// Polls `mailbox stats --json` until the store holds `count` messages in all; returns the last
    /// count seen.
    @discardableResult
    func waitForStoredMessages(
        _ count: Int, in dataDirectory: URL, timeout: Double, file: StaticString = #filePath, line: UInt = #line
    ) -> Int? {
        var last: Int?
        _ = Deadline.poll(timeout: timeout, interval: 0.1) {
            last = storeStats(dataDirectory, file: file, line: line)?.messages
            return last == count || last == nil
        }
        return last
    }

    /// Connects, reads the relay's HELLO and sends this node's HELLO, without reading further: the
    /// test reads what the relay sends after it (ROUTING, CHANNELs, stored messages) itself.
    func sayHello(_ relay: RelayProcess, name: String, id: String = Ids.make(), file: StaticString = #filePath, line: UInt = #line)
        throws -> Node
    {
        let (client, _) = try connectAndReadHello(relay, label: name, file: file, line: line)
        client.send(json: Frames.hello(id: id, name: name))
        return Node(client: client, id: id, name: name)
    }

    /// Sends a MESSAGE from `sender` to `recipients` and returns the relay's answer (ACK or NACK)
    /// for it, or nil when none came within `expectWithin`.
    func sendAndAwaitAnswer(
        _ sender: Node, to recipients: [String], id: String = Ids.make(), text: String = "hello",
        file: StaticString = #filePath, line: UInt = #line
    ) -> [String: Any]? {
        sender.client.send(json: Frames.message(from: sender, to: recipients, id: id, text: text))
        let answer = sender.client.receive(timeout: expectWithin, file: file, line: line) { self.isAnswer($0, to: id) }
        XCTAssertNotNil(answer, "\(sender.label): no ACK or NACK for \(id)", file: file, line: line)
        return answer
    }

    /// A NACK `unreachable` with `stored: true` from `relay` for `messageID`.
    func assertStoredNack(
        _ frame: [String: Any]?, for messageID: String, relay: RelayProcess, file: StaticString = #filePath, line: UInt = #line
    ) {
        assertNack(frame, for: messageID, reason: "unreachable", relay: relay, file: file, line: line)
        XCTAssertEqual(frame?.data["stored"] as? Bool, true, "expected stored: true: \(String(describing: frame))", file: file, line: line)
    }
}

extension RelayTestCase {
    /// `bind`, retried while the relay still holds the id on an earlier connection that the test
    /// just closed (NACK `id_in_use`): the relay learns about the close asynchronously.
    func bindAgain(
        _ relay: RelayProcess, name: String, id: String, timeout: Double = 5, file: StaticString = #filePath, line: UInt = #line
    ) throws -> Node {
        let deadline = Deadline(timeout)
        var last = "nothing"
        while !deadline.hasPassed {
            let (client, _) = try connectAndReadHello(relay, label: name, file: file, line: line)
            client.send(json: Frames.hello(id: id, name: name))
            if let frame = client.receive(timeout: expectWithin, where: { $0.verb == "ROUTING" || $0.verb == "NACK" }) {
                if frame.verb == "ROUTING" { return Node(client: client, id: id, name: name) }
                last = "\(frame)"
            } else {
                last = client.closeReason ?? "no ROUTING"
            }
            client.close()
            usleep(50_000)
        }
        throw Sockets.Failure(description: "\(name): could not bind \(id) again within \(timeout) s; last answer: \(last)")
    }
}

extension RelayTestCase {
    /// Waits until `observer` hears from the relay (a ROUTING delta with `ttl` 32) that `id` left.
    func waitUntilReportedGone(_ id: String, to observer: Node, timeout: Double = 5) -> Bool {
        Deadline.poll(timeout: timeout) {
            observer.client.receive(timeout: 0.05) { frame in
                frame.verb == "ROUTING"
                    && (frame.data["nodes"] as? [Any] ?? []).contains {
                        guard let entry = $0 as? [String: Any] else { return false }
                        return (entry["node_id"] as? String)?.lowercased().hasSuffix(id) == true && entry["ttl"] as? Int == 32
                    }
            } != nil
        }
    }
}
