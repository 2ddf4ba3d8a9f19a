import Foundation
import XCTest

/// The `ptpchat` client end to end through the relay, and the relay's own start-up failures.
final class CommandLineTests: RelayTestCase {
    func testPtpchatSendAndListenDeliverAMessageEndToEnd() throws {
        let relay = try startRelay()
        let listenerID = Ids.make()
        let listener = try startPtpchat(["listen", "--relay", relay.endpoint, "--node-id", listenerID, "--name", "listener"], name: "listen")
        let ready = listener.waitForStderrLine(containing: "ready", timeout: 10)
        XCTAssertEqual(ready, "ready \(listenerID)", "listen did not report ready: \(listener.stderr)")

        let text = "hello \u{fc}ber \u{1F44B} \"quoted\"\nsecond line"
        let sender = try startPtpchat(["send", "--relay", relay.endpoint, "--to", listenerID, "--timeout", "10", text], name: "send")
        let status = sender.waitForExit(timeout: 15)
        XCTAssertEqual(status, 0, "ptpchat send did not exit 0: \(sender.stderr)")

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

    func testPtpchatSendToAnOfflineNodeSaysStoredAndARefusalExitsNonZeroWithTheReason() throws {
        let relay = try startRelay(config: "store:\n  per_recipient_messages: 1\n")
        let offline = Ids.make()
        let stored = try startPtpchat(["send", "--relay", relay.endpoint, "--to", offline, "--timeout", "10", "anyone?"], name: "send-stored")
        XCTAssertEqual(stored.waitForExit(timeout: 15), 0, "a message the relay stored is not a failure: \(stored.stderr)")
        XCTAssertTrue(stored.stderr.contains("stored by the relay"), "the outcome is not on stderr: \(stored.stderr)")
        XCTAssertTrue(stored.stdout.isEmpty, "send printed on stdout: \(stored.stdout)")

        // The recipient's queue is full: refused, not stored.
        let refused = try startPtpchat(["send", "--relay", relay.endpoint, "--to", offline, "--timeout", "10", "again?"], name: "send-refused")
        let status = try XCTUnwrap(refused.waitForExit(timeout: 15), "ptpchat send did not end")
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(refused.stderr.contains("queue_full"), "the NACK reason is not on stderr: \(refused.stderr)")
        XCTAssertTrue(refused.stdout.isEmpty, "send printed on stdout: \(refused.stdout)")
    }

    func testPtpchatSendToAnOnlineAndAnOfflineRecipientSaysDeliveredToOneAndStoredForTheOther() throws {
        let relay = try startRelay()
        let listenerID = Ids.make()
        let listener = try startPtpchat(["listen", "--relay", relay.endpoint, "--node-id", listenerID], name: "listen")
        XCTAssertNotNil(listener.waitForStderrLine(containing: "ready", timeout: 10), "listen did not report ready: \(listener.stderr)")
        let sender = try startPtpchat(
            ["send", "--relay", relay.endpoint, "--to", listenerID, "--to", Ids.make(), "--timeout", "10", "two of us"], name: "send")
        XCTAssertEqual(sender.waitForExit(timeout: 15), 0, "\(sender.stderr)")
        XCTAssertTrue(
            sender.stderr.contains("delivered to 1 of 2 recipients and stored by the relay for the other 1"), "\(sender.stderr)")
        XCTAssertEqual(listener.waitForStdoutLines(1, timeout: expectWithin).count, 1)
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
