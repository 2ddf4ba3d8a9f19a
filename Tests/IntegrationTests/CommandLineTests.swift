import Foundation
import PTPProtocol
import XCTest

/// The `ptpchat` client end to end through the relay, and the relay's own start-up failures.
final class CommandLineTests: RelayTestCase {
    func testPtpchatSendAndListenDeliverAMessageEndToEnd() throws {
        let relay = try startRelay()
        let listenerID = Ids.make()
        let listener = try startPtpchat(
            ["listen", "--relay", relay.endpoint, "--node-id", listenerID, "--name", "listener", "--json"], name: "listen")
        let ready = listener.waitForStderrLine(containing: "ready", timeout: 10)
        XCTAssertEqual(ready, "ready \(listenerID)", "listen did not report ready: \(listener.stderr)")

        let text = "hello \u{fc}ber \u{1F44B} \"quoted\"\nsecond line"
        let sender = try startPtpchat(["send", "--relay", relay.endpoint, "--to", listenerID, "--timeout", "10", text], name: "send")
        let status = sender.waitForExit(timeout: 15)
        XCTAssertEqual(status, 0, "ptpchat send did not exit 0: \(sender.stderr)")
        XCTAssertEqual(sender.stdoutLines, ["delivered to \(listenerID)"])

        let lines = listener.waitForStdoutLines(1, timeout: 5)
        XCTAssertEqual(lines.count, 1, "listen must print exactly one line per message: \(lines)")
        let line = try XCTUnwrap(lines.first)
        XCTAssertTrue(line.utf8.allSatisfy { $0 < 0x80 }, "the printed line is not ASCII: \(line)")
        let frame = try XCTUnwrap(JSON.object(Array(line.utf8)), "the printed line is not a JSON object: \(line)")
        XCTAssertEqual(frame.verb, "MESSAGE")
        XCTAssertEqual(frame.recipientIDs, [listenerID])
        let encoded = try XCTUnwrap(frame.data["message"] as? String)
        XCTAssertEqual(Data(base64Encoded: encoded).map { String(decoding: $0, as: UTF8.self) }, text)
        XCTAssertEqual(frame.data["channel"] as? String, "cli")
        XCTAssertTrue(listener.isRunning, "listen stopped after one message: \(listener.stderr)")
    }

    func testPtpchatSendToAnOfflineNodeSaysStoredAndARefusalExitsNonZeroWithTheReasonInWords() throws {
        let relay = try startRelay(config: "store:\n  per_recipient_messages: 2\n")
        let offline = Ids.make()
        let stored = try startPtpchat(["send", "--relay", relay.endpoint, "--to", offline, "--timeout", "10", "anyone?"], name: "send-stored")
        XCTAssertEqual(stored.waitForExit(timeout: 15), 0, "a message the relay stored is not a failure: \(stored.stderr)")
        XCTAssertEqual(stored.stdoutLines, ["stored by the relay: delivered when \(offline) connects"], stored.stderr)

        let storedJSON = try startPtpchat(
            ["send", "--relay", relay.endpoint, "--to", offline, "--timeout", "10", "--json", "still there?"], name: "send-stored-json")
        XCTAssertEqual(storedJSON.waitForExit(timeout: 15), 0, storedJSON.stderr)
        let storedOutcome = try XCTUnwrap(JSON.object(Array(storedJSON.stdout.utf8)), "not one JSON object: \(storedJSON.stdout)")
        XCTAssertEqual(storedOutcome["outcome"] as? String, "stored")
        XCTAssertEqual(storedOutcome["delivered"] as? [String], [])
        let storedFor = try XCTUnwrap(storedOutcome["stored"] as? [[String: Any]])
        XCTAssertEqual(storedFor.map { $0["node_id"] as? String }, [offline])
        XCTAssertEqual(storedFor.first?["reason"] as? String, "unreachable")
        XCTAssertNotNil((storedOutcome["msg_id"] as? String).flatMap(UUID.init(uuidString:)))

        // The recipient's queue is full: refused, not stored; the reason in words and as the code.
        let refused = try startPtpchat(["send", "--relay", relay.endpoint, "--to", offline, "--timeout", "10", "again?"], name: "send-refused")
        XCTAssertEqual(refused.waitForExit(timeout: 15), 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("the relay refused the message for \(offline): the relay's store for the recipient is full"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("(NACK queue_full)"), "the NACK reason is not on stderr: \(refused.stderr)")
        XCTAssertTrue(refused.stdout.isEmpty, "a refused send printed on stdout: \(refused.stdout)")

        let refusedJSON = try startPtpchat(
            ["send", "--relay", relay.endpoint, "--to", offline, "--timeout", "10", "--json", "and again?"], name: "send-refused-json")
        XCTAssertEqual(refusedJSON.waitForExit(timeout: 15), 1, refusedJSON.stderr)
        let refusedOutcome = try XCTUnwrap(JSON.object(Array(refusedJSON.stdout.utf8)), "not one JSON object: \(refusedJSON.stdout)")
        XCTAssertEqual(refusedOutcome["outcome"] as? String, "refused")
        let refusedFor = try XCTUnwrap(refusedOutcome["refused"] as? [[String: Any]])
        XCTAssertEqual(refusedFor.map { $0["node_id"] as? String }, [offline])
        XCTAssertEqual(refusedFor.first?["reason"] as? String, "queue_full")
    }

    func testPtpchatSendToAnOnlineAndAnOfflineRecipientSaysDeliveredToOneAndStoredForTheOther() throws {
        let relay = try startRelay()
        let listenerID = Ids.make()
        let offline = Ids.make()
        let listener = try startPtpchat(["listen", "--relay", relay.endpoint, "--node-id", listenerID], name: "listen")
        XCTAssertNotNil(listener.waitForStderrLine(containing: "ready", timeout: 10), "listen did not report ready: \(listener.stderr)")
        let sender = try startPtpchat(
            ["send", "--relay", relay.endpoint, "--to", listenerID, "--to", offline, "--timeout", "10", "two of us"], name: "send")
        XCTAssertEqual(sender.waitForExit(timeout: 15), 0, "\(sender.stderr)")
        XCTAssertEqual(
            sender.stdoutLines, ["delivered to 1 of 2 recipients; stored by the relay: delivered when \(offline) connects"], sender.stderr)
        XCTAssertEqual(listener.waitForStdoutLines(1, timeout: expectWithin).count, 1)
    }

    func testPtpchatSendReadsTheTextFromStdinAndRefusesAnEmptyStdin() throws {
        let relay = try startRelay()
        let listenerID = Ids.make()
        let listener = try startPtpchat(["listen", "--relay", relay.endpoint, "--node-id", listenerID, "--json"], name: "listen")
        XCTAssertNotNil(listener.waitForStderrLine(containing: "ready", timeout: 10), "listen did not report ready: \(listener.stderr)")

        let empty = try startPtpchat(["send", "--relay", relay.endpoint, "--to", listenerID, "--timeout", "10"], input: "", name: "send-empty")
        XCTAssertEqual(empty.waitForExit(timeout: 15), 64, empty.stderr)
        XCTAssertTrue(empty.stderr.contains("nothing to send: stdin is empty"), empty.stderr)

        let piped = try startPtpchat(
            ["send", "--relay", relay.endpoint, "--to", listenerID, "--timeout", "10"], input: "first line\nsecond line\n", name: "send-stdin")
        XCTAssertEqual(piped.waitForExit(timeout: 15), 0, piped.stderr)
        XCTAssertEqual(piped.stdoutLines, ["delivered to \(listenerID)"])
        let line = try XCTUnwrap(listener.waitForStdoutLines(1, timeout: expectWithin).first.flatMap { JSON.object(Array($0.utf8)) })
        XCTAssertEqual(line["text"] as? String, "first line\nsecond line", "one trailing newline dropped, the rest kept")
        // The empty stdin sent nothing: the piped message is the only one.
        XCTAssertEqual(listener.stdoutLines.count, 1, listener.stdout)
    }

    func testPtpchatListenPrintsOneReadableLinePerMessageSafeForATerminal() throws {
        let relay = try startRelay()
        let listenerID = Ids.make()
        let senderID = Ids.make()
        let listener = try startPtpchat(["listen", "--relay", relay.endpoint, "--node-id", listenerID], name: "listen")
        XCTAssertNotNil(listener.waitForStderrLine(containing: "ready", timeout: 10), "listen did not report ready: \(listener.stderr)")

        let text = "hi \u{1b}[31mred\u{7}\nnext \u{202e}gnp.exe \u{e9}\u{1F44B}"
        let sender = try startPtpchat(
            ["send", "--relay", relay.endpoint, "--node-id", senderID, "--name", "alice", "--to", listenerID, "--timeout", "10", text],
            name: "send")
        XCTAssertEqual(sender.waitForExit(timeout: 15), 0, sender.stderr)
        // The stock client's channel: shown as #name (ptpchat's own direct-message channel `cli` is not).
        let plain = try startPtpchat(
            ["send", "--relay", relay.endpoint, "--node-id", senderID, "--name", "alice", "--plain", "--to", listenerID, "--timeout", "10",
             "on a channel"], name: "send-plain")
        XCTAssertEqual(plain.waitForExit(timeout: 15), 0, plain.stderr)

        let lines = listener.waitForStdoutLines(2, timeout: expectWithin)
        XCTAssertEqual(lines.count, 2, listener.stdout)
        let clock = try NSRegularExpression(pattern: "^[0-9]{2}:[0-9]{2}:[0-9]{2} ")
        for line in lines {
            XCTAssertNotNil(clock.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)), "no local time first: \(line)")
            XCTAssertFalse(line.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f || $0.value == 0x202e }, "unsafe: \(line)")
        }
        XCTAssertEqual(
            lines.first.map { String($0.dropFirst(9)) },
            "alice (\(senderID)): hi \\u{1b}[31mred\\u{7}\\nnext \\u{202e}gnp.exe \u{e9}\u{1F44B}")
        XCTAssertEqual(lines.last.map { String($0.dropFirst(9)) }, "alice (\(senderID)) #Test Channel: on a channel")
    }

    func testPtpchatListenShowsFloodsOnlyWithAll() throws {
        let relay = try startRelay()
        let everything = try startPtpchat(["listen", "--relay", relay.endpoint, "--all"], name: "listen-all")
        let everythingJSON = try startPtpchat(["listen", "--relay", relay.endpoint, "--all", "--json"], name: "listen-all-json")
        let messagesOnly = try startPtpchat(["listen", "--relay", relay.endpoint], name: "listen-messages")
        for listener in [everything, everythingJSON, messagesOnly] {
            XCTAssertNotNil(listener.waitForStderrLine(containing: "ready", timeout: 10), "\(listener.name): not ready: \(listener.stderr)")
        }
        let joinerID = Ids.make()
        let channelID = Ids.make()
        let joiner = try startPtpchat(
            ["listen", "--relay", relay.endpoint, "--node-id", joinerID, "--name", "bob", "--join", channelID, "--channel-name", "lobby"],
            name: "joiner")
        XCTAssertNotNil(joiner.waitForStderrLine(containing: "ready", timeout: 10), joiner.stderr)

        let line = try XCTUnwrap(everything.waitForStdoutLines(1, timeout: expectWithin).first, "no JOIN line: \(everything.stderr)")
        XCTAssertTrue(line.hasSuffix(" bob (\(joinerID)) joined #lobby"), line)
        let json = try XCTUnwrap(everythingJSON.waitForStdoutLines(1, timeout: expectWithin).first.flatMap { JSON.object(Array($0.utf8)) })
        XCTAssertEqual(json.verb, "JOIN")
        XCTAssertEqual(json.data["channel_id"] as? String, channelID)

        // A message after the JOIN: once it is printed, the JOIN (sent before it) would have been too.
        let listenerID = Ids.make()
        let control = try startPtpchat(["listen", "--relay", relay.endpoint, "--node-id", listenerID], name: "control")
        XCTAssertNotNil(control.waitForStderrLine(containing: "ready", timeout: 10), control.stderr)
        let sender = try startPtpchat(["send", "--relay", relay.endpoint, "--to", listenerID, "--timeout", "10", "after the join"], name: "send")
        XCTAssertEqual(sender.waitForExit(timeout: 15), 0, sender.stderr)
        XCTAssertEqual(control.waitForStdoutLines(1, timeout: expectWithin).count, 1)
        XCTAssertTrue(messagesOnly.stdout.isEmpty, "listen without --all printed a flood: \(messagesOnly.stdout)")
    }

    func testPtpchatRoutesPrintsTheRelaysViewAsATableAndSaysWhyItIsEmpty() throws {
        let relay = try startRelay(config: "routing:\n  to_clients: true\n")
        let zed = Ids.make()
        let amy = Ids.make()
        for (id, name) in [(zed, "zed"), (amy, "amy")] {
            let listener = try startPtpchat(["listen", "--relay", relay.endpoint, "--node-id", id, "--name", name], name: "listen-\(name)")
            XCTAssertNotNil(listener.waitForStderrLine(containing: "ready", timeout: 10), listener.stderr)
        }
        // Each shard learns a client bound on another shard a moment later: ask until both are seen.
        var attempt = 0
        var routes = try startPtpchat(["routes", "--relay", relay.endpoint], name: "routes-0")
        _ = Deadline.poll(timeout: expectWithin, interval: 0.1) {
            guard routes.waitForExit(timeout: 5) == 0, routes.stdoutLines.count < 4 else { return true }
            attempt += 1
            routes = (try? startPtpchat(["routes", "--relay", relay.endpoint], name: "routes-\(attempt)")) ?? routes
            return false
        }
        XCTAssertEqual(routes.waitForExit(timeout: 5), 0, routes.stderr)
        let lines = routes.stdoutLines
        XCTAssertEqual(lines.count, 4, routes.stdout)
        XCTAssertTrue(lines.first?.hasSuffix("at \(relay.endpoint): 2 nodes") == true, routes.stdout)
        XCTAssertEqual(lines.dropFirst().map { $0.split(separator: " ").map(String.init) }, [["NODE", "ID", "NAME", "HOPS"], [amy, "amy", "1"], [zed, "zed", "1"]])
        XCTAssertEqual(Set(lines.dropFirst().map { $0.count }).count, 1, "the columns are not aligned: \(routes.stdout)")

        let routesJSON = try startPtpchat(["routes", "--relay", relay.endpoint, "--json"], name: "routes-json")
        XCTAssertEqual(routesJSON.waitForExit(timeout: 15), 0, routesJSON.stderr)
        let object = try XCTUnwrap(JSON.object(Array(routesJSON.stdout.utf8)), routesJSON.stdout)
        let nodes = try XCTUnwrap(object["nodes"] as? [[String: Any]])
        XCTAssertEqual(nodes.map { $0["node_id"] as? String }, [amy, zed])
        XCTAssertEqual(nodes.map { $0["hops"] as? Int }, [1, 1])
        XCTAssertEqual(object["endpoint"] as? String, relay.endpoint)

        // The default view (`channels`): a fresh client shares nothing, and is told why it sees nothing.
        let scoped = try startRelay()
        let scopedListener = try startPtpchat(["listen", "--relay", scoped.endpoint, "--name", "amy"], name: "listen-scoped")
        XCTAssertNotNil(scopedListener.waitForStderrLine(containing: "ready", timeout: 10), scopedListener.stderr)
        let empty = try startPtpchat(["routes", "--relay", scoped.endpoint], name: "routes-empty")
        XCTAssertEqual(empty.waitForExit(timeout: 15), 0, empty.stderr)
        XCTAssertTrue(empty.stdout.contains("no routes in this client's view"), empty.stdout)
        XCTAssertTrue(empty.stdout.contains("routing.to_clients"), empty.stdout)
    }

    func testPtpchatRoutesReadsATableTheRelayChunkedIntoSeveralFrames() throws {
        let relay = try startRelay(config: "routing:\n  to_clients: true\nlimits:\n  per_ip_connections: 0\n  per_ip_new_per_second: 0\n")
        // About 55 bytes an entry: 200 entries need two ROUTING frames of at most 8 KiB.
        let count = 200
        var ids: Set<String> = []
        for index in 0..<count {
            ids.insert(try bind(relay, name: "n\(index)").id)
        }
        var attempt = 0
        var nodes: [[String: Any]] = []
        let complete = Deadline.poll(timeout: 3 * expectWithin, interval: 0.1) {
            attempt += 1
            guard let routes = try? startPtpchat(["routes", "--relay", relay.endpoint, "--json"], name: "routes-\(attempt)"),
                routes.waitForExit(timeout: 10) == 0,
                let object = JSON.object(Array(routes.stdout.utf8))
            else { return false }
            nodes = object["nodes"] as? [[String: Any]] ?? []
            return nodes.count >= count
        }
        XCTAssertTrue(complete, "routes saw \(nodes.count) of \(count) nodes after \(attempt) attempts")
        XCTAssertEqual(Set(nodes.compactMap { $0["node_id"] as? String }), ids)
    }

    func testBothProgramsSayTheirVersion() throws {
        let client = try startPtpchat(["--version"], name: "ptpchat-version")
        let relay = try runRelayBinary(["--version"], name: "relay-version")
        for child in [client, relay] {
            XCTAssertEqual(child.waitForExit(timeout: 10), 0, child.stderr)
            XCTAssertEqual(child.stdoutLines, [ProjectVersion.number], "\(child.name) --version")
        }
    }

    func testPtpchatListenExitsNonZeroWhenTheRelayGoes() throws {
        let relay = try startRelay()
        let listener = try startPtpchat(["listen", "--relay", relay.endpoint], name: "listen")
        XCTAssertNotNil(listener.waitForStderrLine(containing: "ready", timeout: 10), "listen did not report ready: \(listener.stderr)")
        relay.stop()
        let status = try XCTUnwrap(listener.waitForExit(timeout: 10), "listen still runs after the relay stopped")
        XCTAssertNotEqual(status, 0)
        XCTAssertFalse(listener.stderr.isEmpty)
    }

    func testRelayExitsNonZeroWithAReasonWhenThePortIsInUse() throws {
        let port = try Sockets.freePort()
        let occupant = try Sockets.listening(port: port)
        defer { Sockets.closeSocket(occupant) }
        let relay = try runRelayBinary(
            ["--listen", "127.0.0.1:\(port)", "--data-dir", try directory.appendingPathComponent("data").path, "--node-id", Ids.make()],
            name: "relay-port-in-use")
        let status = try XCTUnwrap(relay.waitForExit(timeout: 15), "the relay did not exit with its port in use")
        XCTAssertNotEqual(status, 0)
        let reason = relay.stderrLines.last { !$0.isEmpty }
        XCTAssertNotNil(reason, "nothing on stderr")
        XCTAssertTrue(
            relay.stderrLines.contains { $0.lowercased().contains("in use") && $0.contains(String(port)) },
            "no line naming the port and the reason: \(relay.stderr)")
    }

    func testRelayExitsNonZeroWithAReasonOnABadOption() throws {
        let cases: [(arguments: [String], mentions: String)] = [
            (["--no-such-option"], "--no-such-option"),
            (["--listen", "127.0.0.1:99999"], "99999"),
            (["--threads", "many"], "many"),
            (["--node-id", "not-a-guid"], "not-a-guid"),
        ]
        for (index, testCase) in cases.enumerated() {
            let dataDir = try directory.appendingPathComponent("data\(index)").path
            let relay = try runRelayBinary(["--data-dir", dataDir] + testCase.arguments, name: "relay-bad-option-\(index)")
            guard let status = relay.waitForExit(timeout: 10) else {
                XCTFail("\(testCase.arguments): the relay did not exit")
                continue
            }
            XCTAssertNotEqual(status, 0, "\(testCase.arguments): exit status")
            XCTAssertTrue(
                relay.stderrLines.contains { $0.contains(testCase.mentions) },
                "\(testCase.arguments): no stderr line names '\(testCase.mentions)': \(relay.stderr)")
        }
    }

    func testRelayExitsNonZeroNamingAnUnknownConfigurationKey() throws {
        let file = try directory.appendingPathComponent("bad.yaml")
        try "timeouts:\n  handshak: 1\n".write(to: file, atomically: true, encoding: .utf8)
        let relay = try runRelayBinary(
            ["--listen", "127.0.0.1:\(try Sockets.freePort())", "--data-dir", try directory.appendingPathComponent("data").path,
             "--config", file.path], name: "relay-bad-config")
        let status = try XCTUnwrap(relay.waitForExit(timeout: 10), "the relay did not exit")
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(relay.stderrLines.contains { $0.contains("timeouts.handshak") }, "the unknown key is not named: \(relay.stderr)")
    }

    func testPtpchatSendTimesOutWhenNoAckComes() throws {
        let relay = try startRelay()
        let mute = try bind(relay, name: "mute")
        let sender = try startPtpchat(["send", "--relay", relay.endpoint, "--to", mute.id, "--timeout", "1", "are you there?"], name: "send")
        XCTAssertNotNil(mute.client.receive(verb: "MESSAGE", timeout: expectWithin), "the message did not reach the recipient")
        let status = try XCTUnwrap(sender.waitForExit(timeout: expectWithin), "ptpchat send did not give up after --timeout 1")
        XCTAssertEqual(status, 3, "exit status for a timeout: \(sender.stderr)")
        XCTAssertTrue(sender.stderr.contains("timed out"), "no reason on stderr: \(sender.stderr)")
    }

    /// `--json` says "failed" on stdout when no answer came: a relay that is not there (exit 2) and
    /// one that never answers for the message (exit 3).
    func testPtpchatSendJSONSaysFailedWhenNoAnswerCame() throws {
        func outcome(_ child: ChildProcess) throws -> [String: Any] {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data(child.stdout.utf8)) as? [String: Any], "stdout: \(child.stdout) stderr: \(child.stderr)")
        }
        let nobody = try startPtpchat(
            ["send", "--relay", "127.0.0.1:\(try Sockets.freePort())", "--to", Ids.make(), "--json", "hello?"], name: "send-nobody")
        XCTAssertEqual(nobody.waitForExit(timeout: expectWithin), 2, nobody.stderr)
        let failed = try outcome(nobody)
        XCTAssertEqual(failed["outcome"] as? String, "failed")
        XCTAssertEqual(failed["error"] as? String, "connection")
        XCTAssertEqual(failed["exit_status"] as? Int, 2)
        XCTAssertTrue((failed["message"] as? String)?.contains("cannot connect") == true, "\(failed)")
        XCTAssertNotNil((failed["msg_id"] as? String).flatMap(GUID.init))

        let relay = try startRelay()
        let mute = try bind(relay, name: "mute")
        let waiting = try startPtpchat(["send", "--relay", relay.endpoint, "--to", mute.id, "--timeout", "1", "--json", "there?"], name: "send-mute")
        XCTAssertEqual(waiting.waitForExit(timeout: expectWithin), 3, waiting.stderr)
        let timedOut = try outcome(waiting)
        XCTAssertEqual(timedOut["outcome"] as? String, "failed")
        XCTAssertEqual(timedOut["error"] as? String, "timeout")
        XCTAssertEqual(timedOut["exit_status"] as? Int, 3)
    }

    /// A "relay" that accepts (the kernel's backlog) and never says a word: every command gives up
    /// after --handshake-timeout with the timeout's exit status, `listen` included.
    func testPtpchatGivesUpOnARelayThatNeverAnswersHello() throws {
        let port = try Sockets.freePort()
        let silent = try Sockets.listening(port: port)
        defer { Sockets.closeSocket(silent) }
        for command in [["listen"], ["routes"], ["send", "--to", Ids.make(), "hello"]] {
            let child = try startPtpchat(command + ["--relay", "127.0.0.1:\(port)", "--handshake-timeout", "0.5"], name: "silent-\(command[0])")
            XCTAssertEqual(child.waitForExit(timeout: expectWithin), 3, "\(command[0]): \(child.stderr)")
            XCTAssertTrue(child.stderr.contains("answer to HELLO (--handshake-timeout)"), "\(command[0]): \(child.stderr)")
        }
    }

    func testPtpchatListenKeepsAQuietConnectionAliveWithKeepalives() throws {
        let relay = try startRelay(config: "timeouts:\n  idle: 1\n")
        let listenerID = Ids.make()
        let listener = try startPtpchat(["listen", "--relay", relay.endpoint, "--node-id", listenerID, "--keepalive", "0.3"], name: "listen")
        // Control: with its default 20 s keepalive a listener is closed by the 1 s idle timeout.
        let sleepy = try startPtpchat(["listen", "--relay", relay.endpoint], name: "listen-default")
        XCTAssertNotNil(listener.waitForStderrLine(containing: "ready", timeout: 10), "listen did not report ready: \(listener.stderr)")
        XCTAssertNotNil(sleepy.waitForStderrLine(containing: "ready", timeout: 10), "listen did not report ready: \(sleepy.stderr)")

        let status = try XCTUnwrap(sleepy.waitForExit(timeout: 4), "a listener sending no keepalive survived the 1 s idle timeout")
        XCTAssertNotEqual(status, 0)
        // One more idle period: the listener must still be connected.
        let stopped = Deadline.poll(timeout: 1.2, interval: 0.05) { !listener.isRunning }
        XCTAssertFalse(stopped, "the listener sending keepalives every 0.3 s was closed: \(listener.stderr)")

        let sender = try startPtpchat(["send", "--relay", relay.endpoint, "--to", listenerID, "--timeout", "5", "still there"], name: "send")
        XCTAssertEqual(sender.waitForExit(timeout: 10), 0, "send failed: \(sender.stderr)")
        XCTAssertEqual(listener.waitForStdoutLines(1, timeout: 5).count, 1, "the listener did not print the message")
    }
}
