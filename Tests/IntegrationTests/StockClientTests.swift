import Foundation
import XCTest

/// PROFILE.md section 4a end to end: emulated existing clients (`StockClient`, written from
/// CLIENT-FRAMES.md) and the `ptpchat` client through a real relay.
final class StockClientTests: RelayTestCase {
    /// A relay with its stats endpoint on a free port; returns it and the port.
    private func startRelayWithStats(config: String? = nil) throws -> (RelayProcess, UInt16) {
        let port = try Sockets.freePort()
        let relay = try startRelay(config: config, arguments: ["--stats", "127.0.0.1:\(port)"])
        XCTAssertEqual(try HTTPProbe.waitForAnswer(port: port, timeout: expectWithin).status, 200)
        return (relay, port)
    }

    private func metrics(_ port: UInt16) throws -> PrometheusText {
        try PrometheusText(parsing: try HTTPProbe.request(port: port, path: "/metrics").text)
    }

    private func storedMessages(_ port: UInt16) throws -> Int? {
        let stats = try HTTPProbe.request(port: port, path: "/stats").json
        return (stats?["store"] as? [String: Any])?["messages"] as? Int
    }

    func testTwoStockClientsChatBothWays() throws {
        let (relay, statsPort) = try startRelayWithStats()
        let alice = try startStockClient(relay, label: "alice")
        let bob = try startStockClient(relay, label: "bob")
        XCTAssertTrue(alice.pump(timeout: expectWithin) { $0.canReach(bob.id) }, "alice never got bob as a member with an address")
        XCTAssertTrue(bob.pump(timeout: expectWithin) { $0.canReach(alice.id) }, "bob never got alice as a member with an address")

        let toBob = try alice.chat("hello bob")
        XCTAssertTrue(bob.pump(timeout: expectWithin) { $0.chats.contains { $0.id == toBob } }, "alice's chat did not reach bob")
        let toAlice = try bob.chat("hello alice")
        XCTAssertTrue(alice.pump(timeout: expectWithin) { $0.chats.contains { $0.id == toAlice } }, "bob's chat did not reach alice")

        // Past the ACK timeout: neither client ever ACKs, and nothing comes twice.
        alice.pump(for: 1)
        bob.pump(for: 1)
        XCTAssertEqual(bob.chats, [StockClient.Chat(id: toBob, sender: alice.id, text: "hello bob")])
        XCTAssertEqual(alice.chats, [StockClient.Chat(id: toAlice, sender: bob.id, text: "hello alice")])
        XCTAssertEqual(alice.connectsSent, 1, "one CONNECT for the one new member")

        let metrics = try metrics(statsPort)
        XCTAssertEqual(metrics.value("ptpchat_legacy_clients"), 2)
        XCTAssertEqual(metrics.value("ptpchat_introductions_total"), 2, "each introduced to the other once")
        XCTAssertEqual(metrics.value("ptpchat_legacy_delivered_on_write_total"), 2)
        XCTAssertEqual(try storedMessages(statsPort), 0)
    }

    func testSpecClientAndStockClientExchangeMessagesBothWays() throws {
        let relay = try startRelay()
        let stock = try startStockClient(relay, label: "stock")
        let listenerID = Ids.make()
        let listener = try startPtpchat(
            ["listen", "--relay", relay.endpoint, "--node-id", listenerID, "--name", "listener", "--json", "--join", StockClient.builtInChannel],
            name: "listen")
        XCTAssertNotNil(listener.waitForStderrLine(containing: "ready", timeout: 10), "listen did not report ready: \(listener.stderr)")
        XCTAssertTrue(stock.pump(timeout: expectWithin) { $0.canReach(listenerID) }, "the JOIN of ptpchat listen did not make it a member")

        // Stock client to ptpchat: plain text, shown as it is.
        let toListener = try stock.chat("from the stock client")
        let lines = listener.waitForStdoutLines(1, timeout: expectWithin)
        let line = try XCTUnwrap(lines.first.flatMap { JSON.object(Array($0.utf8)) }, "listen printed no message: \(listener.stdout)")
        XCTAssertEqual(line.dataMessageID, toListener)
        XCTAssertEqual(line["text"] as? String, "from the stock client")
        XCTAssertEqual(line["text_encoding"] as? String, "plain")

        // ptpchat to the stock client: --plain, delivered when written, exit 0.
        let sender = try startPtpchat(
            ["send", "--relay", relay.endpoint, "--name", "cli", "--plain", "--to", stock.id, "--timeout", "10", "from ptpchat"],
            name: "send")
        XCTAssertEqual(sender.waitForExit(timeout: 15), 0, "ptpchat send --plain: \(sender.stderr)")
        XCTAssertTrue(sender.stdout.hasPrefix("delivered"), "\(sender.stdout) \(sender.stderr)")
        XCTAssertTrue(stock.pump(timeout: expectWithin) { $0.chats.contains { $0.text == "from ptpchat" } }, "the stock client got no chat")
        XCTAssertEqual(stock.chats.first?.text, "from ptpchat")

        // A SPEC client's base64 text is shown decoded.
        let spec = try startPtpchat(["send", "--relay", relay.endpoint, "--to", listenerID, "--timeout", "10", "base64 \u{e9}t\u{e9}"], name: "send-b64")
        XCTAssertEqual(spec.waitForExit(timeout: 15), 0, "ptpchat send: \(spec.stderr)")
        let second = listener.waitForStdoutLines(2, timeout: expectWithin).dropFirst().first.flatMap { JSON.object(Array($0.utf8)) }
        XCTAssertEqual(second?["text"] as? String, "base64 \u{e9}t\u{e9}")
        XCTAssertEqual(second?["text_encoding"] as? String, "base64")

        stock.pump(for: 1)
        XCTAssertEqual(stock.chats.count, 1, "delivered once: \(stock.chats)")
        XCTAssertEqual(listener.stdoutLines.count, 2, "each message printed once: \(listener.stdout)")
    }

    func testStockClientThatReconnectsGetsWhatWasStoredForItOnce() throws {
        let (relay, statsPort) = try startRelayWithStats(config: "timeouts:\n  ack: 1\n")
        let stockID = Ids.make()
        let first = try startStockClient(relay, id: stockID, label: "stock-first")
        first.connection.close()
        let bob = try bind(relay, name: "bob")
        var ids: [String] = []
        for index in 0..<3 {
            let id = Ids.make()
            ids.append(id)
            bob.client.send(json: Frames.message(from: bob, to: [stockID], id: id, text: "stored \(index)"))
            let answer = bob.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
            assertNack(answer, for: id, reason: "unreachable", relay: relay)
            XCTAssertEqual(answer?.data["stored"] as? Bool, true)
        }

        let again = try startStockClient(relay, id: stockID, label: "stock-again")
        XCTAssertTrue(again.pump(timeout: expectWithin) { $0.chats.count == 3 }, "stored messages not delivered: \(again.chats)")
        XCTAssertTrue(Deadline.poll(timeout: expectWithin) { (try? self.storedMessages(statsPort)) == 0 }, "written counts as delivered: rows deleted")
        // Past the retry delay and the ACK timeout: nothing comes again.
        again.pump(for: 2.5)
        XCTAssertEqual(again.chats.map(\.id), ids, "each stored message once, in arrival order")
        XCTAssertEqual(again.chats.map(\.sender), [bob.id, bob.id, bob.id])
        XCTAssertNil(bob.client.receive(timeout: quietPeriod) { $0.verb == "NACK" }, "no NACK after the delivery")

        // A third connection gets nothing: it was all delivered.
        again.connection.close()
        let third = try startStockClient(relay, id: stockID, label: "stock-third")
        third.pump(for: 1.5)
        XCTAssertEqual(third.chats, [])
    }

    func testNoMessageToAStockClientIsDeliveredTwiceAndNoSenderGetsAFalseNack() throws {
        let (relay, statsPort) = try startRelayWithStats(config: "timeouts:\n  ack: 1\n")
        let stock = try startStockClient(relay, label: "stock")
        let bob = try bind(relay, name: "bob")
        let ids = (0..<20).map { _ in Ids.make() }
        for id in ids {
            bob.client.send(json: Frames.message(from: bob, to: [stock.id], id: id))
        }
        // A re-sent copy of the first: answered, not delivered again.
        bob.client.send(json: Frames.message(from: bob, to: [stock.id], id: ids[0]))
        var acked: [String] = []
        var nacks: [[String: Any]] = []
        let deadline = Deadline(expectWithin)
        while acked.count < ids.count + 1, !deadline.hasPassed, let frame = bob.client.receive(timeout: deadline.remaining) {
            if frame.verb == "ACK", let id = frame.dataMessageID { acked.append(id.lowercased()) }
            if frame.verb == "NACK" { nacks.append(frame) }
        }
        XCTAssertEqual(Set(acked), Set(ids), "every message ACKed to bob")
        XCTAssertEqual(acked.count, ids.count + 1, "the re-sent copy ACKed too")
        XCTAssertTrue(nacks.isEmpty, "false NACKs: \(nacks)")

        XCTAssertTrue(stock.pump(timeout: expectWithin) { $0.chats.count >= ids.count }, "only \(stock.chats.count) arrived")
        // Twice the ACK timeout: no redelivery, no NACK.
        stock.pump(for: 2.5)
        XCTAssertEqual(stock.chats.map(\.id), ids, "each once, in order")
        XCTAssertNil(bob.client.receive(timeout: quietPeriod) { $0.verb == "NACK" })
        XCTAssertEqual(try storedMessages(statsPort), 0)
        XCTAssertEqual(try metrics(statsPort).value("ptpchat_introductions_total"), 1, "bob introduced once")
    }

    func testCompatOffTurnsItAllOff() throws {
        let (relay, statsPort) = try startRelayWithStats(config: "timeouts:\n  ack: 1\ncompat:\n  legacy_clients: false\n")
        let alice = try startStockClient(relay, label: "alice")
        let bob = try startStockClient(relay, label: "bob")
        alice.pump(for: 1)
        XCTAssertFalse(alice.canReach(bob.id), "introduced although compat.legacy_clients is false")
        XCTAssertEqual(alice.members, [alice.id])
        try alice.chat("nobody hears this")
        bob.pump(for: 0.5)
        XCTAssertEqual(bob.chats, [], "chat went out with no member to send it to")

        // Delivery waits for an ACK that never comes: the sender hears stored: true.
        let carol = try bind(relay, name: "carol")
        let id = Ids.make()
        carol.client.send(json: Frames.message(from: carol, to: [alice.id], id: id))
        XCTAssertTrue(alice.pump(timeout: expectWithin) { $0.chats.count == 1 })
        XCTAssertEqual(alice.accepted["HELLO"], 1, "only the relay's own HELLO, no introduction")
        let answer = carol.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        assertNack(answer, for: id, reason: "unreachable", relay: relay)
        XCTAssertEqual(answer?.data["stored"] as? Bool, true)

        let metrics = try metrics(statsPort)
        XCTAssertEqual(metrics.value("ptpchat_legacy_clients"), 0)
        XCTAssertEqual(metrics.value("ptpchat_introductions_total"), 0)
    }
}
