import Foundation
import XCTest

/// `ptpchat-relay mailbox stats|list|purge --data-dir DIR [--json]` on the store of a running
/// relay (docs/store.md).
final class MailboxCommandTests: RelayTestCase {
    /// Stores `count` messages from `sender` for each recipient, in this order, and returns their ids.
    private func store(_ count: Int, from sender: Node, for recipient: String, relay: RelayProcess, file: StaticString = #filePath, line: UInt = #line)
        -> [String]
    {
        (0..<count).map { _ in
            let id = Ids.make()
            assertStoredNack(sendAndAwaitAnswer(sender, to: [recipient], id: id, file: file, line: line), for: id, relay: relay, file: file, line: line)
            return id
        }
    }

    private func expectSuccess(_ run: MailboxRun, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(run.status, 0, "\(run)", file: file, line: line)
        XCTAssertEqual(run.stderr, "", "nothing on stderr on success: \(run)", file: file, line: line)
    }

    func testStatsInTextAndJSONWhileTheRelayRuns() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = Ids.make()
        let carol = Ids.make()
        _ = store(3, from: alice, for: bob, relay: relay)
        _ = store(1, from: alice, for: carol, relay: relay)
        let data = relay.dataDirectory.path

        let json = try mailbox(["stats", "--data-dir", data, "--json"])
        expectSuccess(json)
        XCTAssertEqual(json.stdoutLines.count, 1, "--json prints one line: \(json)")
        let object = try XCTUnwrap(json.jsonObject, "not a JSON object: \(json)")
        XCTAssertEqual(object["messages"] as? Int, 4)
        let rows = try XCTUnwrap(object["recipients"] as? [[String: Any]])
        XCTAssertEqual(rows.compactMap { ($0["recipient"] as? String)?.lowercased() }, [bob, carol], "rows by messages, most first")
        XCTAssertEqual(rows.compactMap { $0["messages"] as? Int }, [3, 1])
        let bytes = rows.compactMap { $0["bytes"] as? Int }
        XCTAssertEqual(bytes.count, 2)
        XCTAssertTrue(bytes.allSatisfy { $0 > 100 }, "bytes per recipient: \(bytes)")
        XCTAssertEqual(object["bytes"] as? Int, bytes.reduce(0, +), "total bytes must be the sum of the recipients' bytes")
        for row in rows {
            let age = row["oldest_age_s"] as? Int
            XCTAssertTrue(age.map { (0...5).contains($0) } ?? false, "oldest_age_s: \(row)")
        }

        let text = try mailbox(["stats", "--data-dir", data])
        expectSuccess(text)
        let lines = text.stdoutLines
        XCTAssertEqual(lines.count, 4, "header, two recipients, total: \(text)")
        XCTAssertEqual(lines.first?.split(separator: " ").map(String.init), ["RECIPIENT", "MESSAGES", "BYTES", "OLDEST"], "header: \(text)")
        if lines.count == 4 {
            XCTAssertEqual(lines[1].split(separator: " ").prefix(2).map(String.init), [bob, "3"], "first row: \(text)")
            XCTAssertEqual(lines[2].split(separator: " ").prefix(2).map(String.init), [carol, "1"], "second row: \(text)")
            XCTAssertTrue(lines[3].hasPrefix("total (2 recipients)"), "total row: \(text)")
            XCTAssertTrue(lines[3].contains(" 4 ") && lines[3].contains(String(bytes.reduce(0, +))), "total row: \(text)")
            // Aligned columns: every column starts at the same offset in each line.
            let offset = lines[0].range(of: "MESSAGES")!.lowerBound.utf16Offset(in: lines[0])
            XCTAssertEqual(lines[1].dropFirst(offset).first, "3", "columns not aligned: \(text)")
        }

        // The relay goes on storing and answering while the command reads.
        _ = store(1, from: alice, for: carol, relay: relay)
        XCTAssertEqual(storeStats(relay.dataDirectory)?.perRecipient, [bob: 3, carol: 2])
    }

    func testStatsOfAnEmptyStore() throws {
        let relay = try startRelay()
        _ = try bind(relay, name: "alice")
        let json = try mailbox(["stats", "--data-dir", relay.dataDirectory.path, "--json"])
        expectSuccess(json)
        XCTAssertEqual(json.jsonObject?["messages"] as? Int, 0, "\(json)")
        XCTAssertEqual(json.jsonObject?["bytes"] as? Int, 0, "\(json)")
        XCTAssertEqual((json.jsonObject?["recipients"] as? [Any])?.count, 0, "\(json)")
        let text = try mailbox(["stats", "--data-dir", relay.dataDirectory.path])
        expectSuccess(text)
        XCTAssertEqual(text.stdoutLines.count, 2, "header and total: \(text)")
        XCTAssertTrue(text.stdoutLines.last?.hasPrefix("total (0 recipients)") ?? false, "\(text)")
    }

    func testListInArrivalOrderWithFiltersAndAttempts() throws {
        let relay = try startRelay(config: "timeouts:\n  ack: 1\n")
        let alice = try bind(relay, name: "alice")
        let bob = Ids.make()
        let carol = Ids.make()
        var ids = store(2, from: alice, for: bob, relay: relay)
        ids += store(1, from: alice, for: carol, relay: relay)
        ids += store(1, from: alice, for: bob, relay: relay)
        let data = relay.dataDirectory.path

        let json = try mailbox(["list", "--data-dir", data, "--json"])
        expectSuccess(json)
        let rows = try XCTUnwrap(json.jsonArray, "not a JSON array: \(json)")
        XCTAssertEqual(rows.compactMap { ($0["msg_id"] as? String)?.lowercased() }, ids, "arrival order")
        XCTAssertEqual(rows.compactMap { ($0["recipient"] as? String)?.lowercased() }, [bob, bob, carol, bob])
        let seqs = rows.compactMap { $0["seq"] as? Int }
        XCTAssertEqual(seqs, seqs.sorted(), "seq must increase")
        XCTAssertEqual(Set(seqs).count, 4)
        for row in rows {
            XCTAssertEqual((row["sender"] as? String)?.lowercased(), alice.id, "sender: \(row)")
            XCTAssertGreaterThan(row["bytes"] as? Int ?? 0, 100, "bytes: \(row)")
            XCTAssertTrue((row["age_s"] as? Int).map { (0...5).contains($0) } ?? false, "age_s: \(row)")
            XCTAssertEqual(row["attempts"] as? Int, 0, "attempts: \(row)")
        }

        let bobs = try mailbox(["list", "--data-dir", data, "--json", "--recipient", bob])
        expectSuccess(bobs)
        XCTAssertEqual(bobs.jsonArray?.compactMap { ($0["msg_id"] as? String)?.lowercased() }, [ids[0], ids[1], ids[3]])
        // Any case and the name@GUID spelling name the same recipient.
        let spelled = try mailbox(["list", "--data-dir", data, "--json", "--recipient", "bob@\(bob.uppercased())"])
        expectSuccess(spelled)
        XCTAssertEqual(spelled.jsonArray?.count, 3, "\(spelled)")
        let limited = try mailbox(["list", "--data-dir", data, "--json", "--limit", "2"])
        expectSuccess(limited)
        XCTAssertEqual(limited.jsonArray?.compactMap { ($0["msg_id"] as? String)?.lowercased() }, Array(ids.prefix(2)))

        let text = try mailbox(["list", "--data-dir", data])
        expectSuccess(text)
        XCTAssertEqual(text.stdoutLines.count, 5, "header and four messages: \(text)")
        XCTAssertEqual(
            text.stdoutLines.first?.split(separator: " ").map(String.init), ["SEQ", "RECIPIENT", "MSG_ID", "SENDER", "BYTES", "AGE", "ATTEMPTS"])
        for (index, id) in ids.enumerated() where index + 1 < text.stdoutLines.count {
            let cells = text.stdoutLines[index + 1].split(separator: " ").map(String.init)
            XCTAssertEqual(cells.count, 7, "\(text.stdoutLines[index + 1])")
            XCTAssertEqual(cells.dropFirst(2).first, id, "row \(index + 1): \(text)")
            XCTAssertEqual(cells.last, "0", "attempts: \(text)")
        }

        // A delivery without an ACK counts as an attempt.
        let carolNode = try bind(relay, name: "carol", id: carol)
        XCTAssertNotNil(carolNode.client.receive(verb: "MESSAGE", timeout: expectWithin))
        var attempts: Int?
        _ = Deadline.poll(timeout: 5, interval: 0.2) {
            let run = try? mailbox(["list", "--data-dir", data, "--json", "--recipient", carol])
            attempts = run?.jsonArray?.first?["attempts"] as? Int
            return attempts == 1
        }
        XCTAssertEqual(attempts, 1, "the unACKed delivery was not counted as an attempt")
    }

    func testPurgeByRecipientWhileTheRelayRuns() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = Ids.make()
        let carol = Ids.make()
        _ = store(2, from: alice, for: bob, relay: relay)
        let carols = store(1, from: alice, for: carol, relay: relay)
        let data = relay.dataDirectory.path

        let purge = try mailbox(["purge", "--data-dir", data, "--recipient", bob, "--json"])
        expectSuccess(purge)
        XCTAssertEqual(purge.jsonObject?["purged"] as? Int, 2, "\(purge)")
        XCTAssertEqual(storeStats(relay.dataDirectory)?.perRecipient, [carol: 1])
        let again = try mailbox(["purge", "--data-dir", data, "--recipient", bob])
        expectSuccess(again)
        XCTAssertEqual(again.stdoutLines, ["purged 0 messages"])

        // The relay does not deliver what was purged, and still delivers the rest.
        let bobNode = try bind(relay, name: "bob", id: bob)
        let purged = bobNode.client.receive(timeout: 1.5) { $0.verb == "MESSAGE" }
        XCTAssertNil(purged, "a purged message was delivered: \(String(describing: purged))")
        let carolNode = try bind(relay, name: "carol", id: carol)
        XCTAssertEqual(carolNode.client.receive(verb: "MESSAGE", timeout: expectWithin)?.dataMessageID?.lowercased(), carols[0])
        carolNode.client.send(json: Frames.ack(from: carolNode, acknowledging: carols[0]))
        XCTAssertEqual(waitForStoredMessages(0, in: relay.dataDirectory, timeout: expectWithin), 0)

        // Its bounds still count right after the purge: bob's mailbox takes messages again.
        bobNode.client.close()
        XCTAssertTrue(waitUntilReportedGone(bob, to: alice))
        _ = store(1, from: alice, for: bob, relay: relay)
        XCTAssertEqual(storeStats(relay.dataDirectory)?.perRecipient, [bob: 1])
    }

    func testPurgeByAgeAndAll() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = Ids.make()
        let carol = Ids.make()
        let old = store(1, from: alice, for: bob, relay: relay)
        usleep(1_500_000)  // the age is the point
        let young = store(1, from: alice, for: bob, relay: relay) + store(1, from: alice, for: carol, relay: relay)
        let data = relay.dataDirectory.path

        let purge = try mailbox(["purge", "--data-dir", data, "--older-than", "1"])
        expectSuccess(purge)
        XCTAssertEqual(purge.stdoutLines, ["purged 1 message"], "\(purge)")
        let left = try mailbox(["list", "--data-dir", data, "--json"])
        XCTAssertEqual(left.jsonArray?.compactMap { ($0["msg_id"] as? String)?.lowercased() }, young, "\(left); the old one was \(old)")

        // Recipient and age together: only that recipient's messages older than that.
        let both = try mailbox(["purge", "--data-dir", data, "--recipient", carol, "--older-than", "100", "--json"])
        expectSuccess(both)
        XCTAssertEqual(both.jsonObject?["purged"] as? Int, 0, "\(both)")

        let all = try mailbox(["purge", "--data-dir", data, "--all", "--json"])
        expectSuccess(all)
        XCTAssertEqual(all.jsonObject?["purged"] as? Int, 2, "\(all)")
        XCTAssertEqual(storeStats(relay.dataDirectory)?.messages, 0)
    }

    func testPurgeWhileTheRelayIsWriting() throws {
        let relay = try startRelay(config: "store:\n  per_sender_messages: 10000\n  per_recipient_messages: 10000\n")
        let alice = try bind(relay, name: "alice")
        let bob = Ids.make()
        _ = store(50, from: alice, for: bob, relay: relay)
        // The purge runs while alice keeps the relay's writer busy.
        let purge = try runRelayBinary(["mailbox", "purge", "--data-dir", relay.dataDirectory.path, "--all", "--json"], name: "purge-busy")
        var answered = 0
        var stored = 0
        var sent = 0
        let total = 400
        let deadline = Deadline(20)
        while answered < total && !deadline.hasPassed {
            while sent < total && sent - answered < 16 {
                alice.client.send(json: Frames.message(from: alice, to: [bob]))
                sent += 1
            }
            if let answer = alice.client.receive(timeout: 1, where: { $0.verb == "NACK" || $0.verb == "ACK" }) {
                answered += 1
                if answer.data["stored"] as? Bool == true { stored += 1 }
            }
        }
        XCTAssertEqual(answered, total, "the relay stopped answering during the purge")
        XCTAssertEqual(stored, total, "messages not stored during the purge")
        let status = purge.waitForExit(timeout: 15)
        XCTAssertEqual(status, 0, "purge failed while the relay was writing: \(purge.stderr)")
        let purged = (try? JSONSerialization.jsonObject(with: Data(purge.stdout.utf8)) as? [String: Any])?["purged"] as? Int ?? -1
        XCTAssertGreaterThanOrEqual(purged, 50, "\(purge.stdout)")
        // Whatever the purge took, the counters match the rows that are left.
        let stats = storeStats(relay.dataDirectory)
        let listed = try mailbox(["list", "--data-dir", relay.dataDirectory.path, "--json", "--limit", "100000"]).jsonArray?.count
        XCTAssertEqual(stats?.messages, listed, "stats and list disagree after a purge during writes")
        XCTAssertEqual((stats?.messages ?? 0) + purged, 50 + total, "purged \(purged), left \(String(describing: stats))")
    }

    func testBadArgumentsExitNonZeroWithOneLine() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = Ids.make()
        _ = store(2, from: alice, for: bob, relay: relay)
        let data = relay.dataDirectory.path
        let missing = try directory.appendingPathComponent("no-such-dir").path

        let cases: [(arguments: [String], mentions: String)] = [
            (["purge", "--data-dir", data], "--all"),
            (["purge", "--data-dir", data, "--all", "--recipient", bob], "--all"),
            (["purge", "--data-dir", data, "--recipient", "not-a-guid"], "not-a-guid"),
            (["list", "--data-dir", data, "--recipient", "nobody"], "nobody"),
            (["purge", "--data-dir", data, "--older-than", "soon"], "soon"),
            (["stats", "--data-dir", missing], "no-such-dir"),
            (["stats", "--data-dir", data, "--no-such-option"], "--no-such-option"),
            (["frobnicate"], "frobnicate"),
            (["list", "--data-dir", data, "--limit", "many"], "many"),
            // Last: a negative age must be refused, not taken as "older than 5 s in the future".
            (["purge", "--data-dir", data, "--older-than=-5"], "-5"),
        ]
        for testCase in cases {
            let run = try mailbox(testCase.arguments)
            XCTAssertNotNil(run.status, "\(testCase.arguments): did not end")
            XCTAssertNotEqual(run.status, 0, "\(testCase.arguments) must fail: \(run)")
            XCTAssertEqual(run.stderrLines.count, 1, "\(testCase.arguments): one line on stderr: \(run)")
            XCTAssertTrue(run.stderr.contains(testCase.mentions), "\(testCase.arguments): the line must mention '\(testCase.mentions)': \(run)")
            XCTAssertEqual(run.stdout, "", "\(testCase.arguments): nothing on stdout: \(run)")
        }
        XCTAssertEqual(storeStats(relay.dataDirectory)?.perRecipient, [bob: 2], "a failed command changed the store")
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing), "stats created the missing data directory")
    }
}
