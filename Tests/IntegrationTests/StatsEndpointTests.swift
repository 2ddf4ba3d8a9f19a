#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import XCTest

/// Issue "Operations": the stats endpoint (`--stats HOST:PORT`): `GET /stats` (JSON), `/metrics`
/// (Prometheus text), `/healthz`, `/readyz`, 404 for anything else, HEAD.
final class StatsEndpointTests: OpsTestCase {
    /// A relay with its stats endpoint up (polled until `/healthz` answers).
    private func startRelayWithStats() throws -> (LaunchedRelay, UInt16) {
        let relay = try launchRelay(stats: true)
        try relay.waitUntilListening()
        let port = try XCTUnwrap(relay.statsPort)
        let health = try HTTPProbe.waitForAnswer(port: port, path: "/healthz", timeout: expectWithin)
        XCTAssertEqual(health.status, 200, "/healthz: \(health)")
        return (relay, port)
    }

    private func stats(_ port: UInt16, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let response = try HTTPProbe.request(port: port, path: "/stats")
        XCTAssertEqual(response.status, 200, "/stats: \(response)", file: file, line: line)
        XCTAssertTrue(response.headers["content-type"]?.hasPrefix("application/json") ?? false, "/stats content type: \(response)", file: file, line: line)
        return try XCTUnwrap(response.json, "/stats is not a JSON object: \(response)", file: file, line: line)
    }

    private static func object(_ value: Any?, _ key: String) -> [String: Any] { (value as? [String: Any])?[key] as? [String: Any] ?? [:] }

    private static func number(_ value: Any?) -> Double? {
        switch value {
        case let int as Int: Double(int)
        case let double as Double: double
        default: nil
        }
    }

    // MARK: /stats

    func testStatsJSONCountsConnectionsRelayedMessagesAcksNacksDropsAndTheStore() throws {
        let (relay, port) = try startRelayWithStats()
        // The probe connection of waitUntilListening may still count as handshaking for a moment.
        var initial = try stats(port)
        _ = Deadline.poll(timeout: expectWithin, interval: 0.02) {
            initial = (try? stats(port)) ?? initial
            return (initial["connections"] as? [String: Any])?["handshaking"] as? Int == 0
        }
        XCTAssertEqual((initial["node_id"] as? String)?.lowercased(), relay.nodeID, "node_id: \(initial)")
        XCTAssertNotNil(Self.number(initial["uptime_s"]), "uptime_s must be a number: \(initial)")
        XCTAssertGreaterThanOrEqual(Self.number(initial["uptime_s"]) ?? -1, 0)
        let connections0 = initial["connections"] as? [String: Any] ?? [:]
        for kind in ["clients", "handshaking", "peers"] {
            XCTAssertEqual(connections0[kind] as? Int, 0, "connections.\(kind) before any node: \(initial)")
        }
        XCTAssertEqual(initial["nodes_known"] as? Int, 0, "nodes_known before any node: \(initial)")

        let alice = try bind(port: relay.port, name: "alice")
        let bob = try bind(port: relay.port, name: "bob")
        // A MESSAGE relayed and ACKed.
        let id = Ids.make()
        let message = Frames.message(from: alice, to: [bob.id], id: id, text: "counted")
        alice.client.send(json: message)
        XCTAssertNotNil(bob.client.receive(timeout: expectWithin) { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id })
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }?.verb, "ACK")

        let afterMessage = try stats(port)
        let connections = afterMessage["connections"] as? [String: Any] ?? [:]
        XCTAssertEqual(connections["clients"] as? Int, 2, "connections.clients with two bound nodes: \(afterMessage)")
        XCTAssertEqual(connections["handshaking"] as? Int, 0, "connections.handshaking: \(afterMessage)")
        XCTAssertEqual(afterMessage["nodes_known"] as? Int, 2, "nodes_known with two bound nodes: \(afterMessage)")
        let relayedMessage = Self.object(afterMessage["relayed"], "MESSAGE")
        XCTAssertEqual(relayedMessage["messages"] as? Int, 1, "relayed.MESSAGE.messages after one MESSAGE: \(afterMessage)")
        let bytes = relayedMessage["bytes"] as? Int ?? 0
        let frameSize = JSON.data(message).count
        XCTAssertTrue((frameSize / 2...frameSize * 2).contains(bytes), "relayed.MESSAGE.bytes \(bytes) for a frame of about \(frameSize) bytes")
        let acks = afterMessage["acks"] as? [String: Any] ?? [:]
        XCTAssertEqual(acks["sent"] as? Int, 1, "acks.sent after one ACKed MESSAGE: \(afterMessage)")
        XCTAssertEqual(acks["received"] as? Int, 1, "acks.received after one ACKed MESSAGE: \(afterMessage)")

        // An invalid MESSAGE: NACK invalid and a drop `invalid`.
        let invalidID = Ids.make()
        alice.client.send(json: OperationsTests.invalidMessage(from: alice, to: bob, id: invalidID))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: invalidID) }?.verb, "NACK")
        // A MESSAGE to a node that is not connected: stored, NACK unreachable with stored: true.
        let offlineID = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [Ids.make()], id: offlineID, text: "for later"))
        let nack = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: offlineID) }
        XCTAssertEqual(nack?.data["stored"] as? Bool, true, "a MESSAGE to an offline node was not stored: \(String(describing: nack))")

        let after = try stats(port)
        let nacks = after["nacks"] as? [String: Any] ?? [:]
        XCTAssertEqual(nacks["invalid"] as? Int, 1, "nacks.invalid: \(after)")
        XCTAssertEqual(nacks["unreachable"] as? Int, 1, "nacks.unreachable: \(after)")
        for reason in ["rate_limited", "queue_full", "spoofed_sender", "slow_consumer"] {
            XCTAssertEqual(nacks[reason] as? Int, 0, "nacks.\(reason) is missing or not 0: \(after)")
        }
        let drops = after["drops"] as? [String: Any] ?? [:]
        XCTAssertEqual(drops["invalid"] as? Int, 1, "drops.invalid after one invalid MESSAGE: \(after)")
        for reason in ["malformed", "slow_consumer", "queue_full", "flood_duplicate"] {
            XCTAssertEqual(drops[reason] as? Int, 0, "drops.\(reason) is missing or not 0: \(after)")
        }
        let store = after["store"] as? [String: Any] ?? [:]
        XCTAssertEqual(store["messages"] as? Int, 1, "store.messages after one stored MESSAGE: \(after)")
        XCTAssertGreaterThan(store["bytes"] as? Int ?? 0, 0, "store.bytes with one stored MESSAGE: \(after)")
        XCTAssertEqual(Self.object(after["relayed"], "MESSAGE")["messages"] as? Int, 1, "relayed.MESSAGE.messages: an invalid or stored MESSAGE is not relayed: \(after)")

        let rates = after["rates_10s"] as? [String: Any] ?? [:]
        XCTAssertEqual(
            Set(rates.keys), ["messages_relayed_per_s", "bytes_relayed_per_s", "frames_in_per_s", "acks_sent_per_s", "nacks_sent_per_s"],
            "rates_10s: \(after)")
        for (key, value) in rates {
            XCTAssertNotNil(Self.number(value), "rates_10s.\(key) is not a number: \(after)")
            XCTAssertGreaterThanOrEqual(Self.number(value) ?? -1, 0, "rates_10s.\(key) negative")
        }
        // A rate needs samples at least 100 ms apart (each /stats takes one, STATUS= one a second):
        // within a few seconds the MESSAGE sent above must show.
        var rate = Self.number(rates["messages_relayed_per_s"]) ?? 0
        var latest = after
        _ = Deadline.poll(timeout: 3, interval: 0.05) {
            latest = (try? stats(port)) ?? latest
            rate = Self.number((latest["rates_10s"] as? [String: Any])?["messages_relayed_per_s"]) ?? 0
            return rate > 0
        }
        XCTAssertGreaterThan(rate, 0, "one MESSAGE in the last 10 s, yet rates_10s.messages_relayed_per_s stays 0: \(latest)")
        XCTAssertGreaterThan(Self.number((latest["rates_10s"] as? [String: Any])?["bytes_relayed_per_s"]) ?? 0, 0, "bytes_relayed_per_s: \(latest)")
        XCTAssertGreaterThanOrEqual(Self.number(after["uptime_s"]) ?? -1, Self.number(initial["uptime_s"]) ?? 0, "uptime went back")
        XCTAssertEqual(after["state"] as? String, "serving")
    }

    // MARK: /metrics

    func testMetricsAreValidPrometheusTextNamedPtpchatWithoutNodeIDsAndMatchStats() throws {
        let (relay, port) = try startRelayWithStats()
        let alice = try bind(port: relay.port, name: "alice")
        let bob = try bind(port: relay.port, name: "bob")
        exchange(alice, bob)
        let invalidID = Ids.make()
        alice.client.send(json: OperationsTests.invalidMessage(from: alice, to: bob, id: invalidID))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: invalidID) }?.verb, "NACK")
        let offline = Ids.make()
        let storedID = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [offline], id: storedID))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: storedID) }?.verb, "NACK")

        let json = try stats(port)
        let response = try HTTPProbe.request(port: port, path: "/metrics")
        XCTAssertEqual(response.status, 200, "/metrics: \(response)")
        XCTAssertTrue(response.headers["content-type"]?.hasPrefix("text/plain") ?? false, "/metrics content type: \(response)")
        let text = response.text
        let metrics: PrometheusText
        do {
            metrics = try PrometheusText(parsing: text)
        } catch {
            XCTFail("/metrics is not valid Prometheus text: \(error)\n\(text)")
            return
        }
        XCTAssertFalse(metrics.samples.isEmpty, "/metrics has no samples")
        for sample in metrics.samples {
            XCTAssertTrue(sample.name.hasPrefix("ptpchat_"), "metric not named ptpchat_…: \(sample)")
            for (label, value) in sample.labels {
                XCTAssertFalse(Ids.isGUID(value), "label \(label) of \(sample.name) is a GUID (a node id?): \(sample)")
                XCTAssertFalse(value.contains("@"), "label \(label) of \(sample.name) looks like an address: \(sample)")
            }
        }
        for name in Array(metrics.types.keys) + Array(metrics.helps.keys) {
            XCTAssertTrue(name.hasPrefix("ptpchat_"), "TYPE/HELP for a metric not named ptpchat_…: \(name)")
        }
        for id in [relay.nodeID, alice.id, bob.id, offline] {
            XCTAssertFalse(text.lowercased().contains(id), "a node id appears in /metrics: \(id)")
        }
        for name in ["ptpchat_messages_relayed_total", "ptpchat_drops_total", "ptpchat_nacks_sent_total", "ptpchat_acks_sent_total"] {
            XCTAssertEqual(metrics.types[name], "counter", "\(name) should be declared a counter: \(String(describing: metrics.types[name]))")
        }
        for name in ["ptpchat_connections", "ptpchat_nodes_known", "ptpchat_store_messages", "ptpchat_store_bytes"] {
            XCTAssertEqual(metrics.types[name], "gauge", "\(name) should be declared a gauge: \(String(describing: metrics.types[name]))")
        }

        // The same counts as /stats (nothing happened in between).
        func expect(_ name: String, _ labels: [String: String] = [:], _ expected: Any?, _ what: String) {
            let value = metrics.value(name, labels)
            XCTAssertNotNil(value, "\(name)\(labels) missing from /metrics")
            XCTAssertEqual(value, Self.number(expected), "\(name)\(labels) = \(String(describing: value)), /stats \(what) = \(String(describing: expected))")
        }
        let connections = json["connections"] as? [String: Any] ?? [:]
        expect("ptpchat_connections", ["kind": "client"], connections["clients"], "connections.clients")
        expect("ptpchat_connections", ["kind": "handshaking"], connections["handshaking"], "connections.handshaking")
        expect("ptpchat_connections_accepted_total", [:], connections["accepted"], "connections.accepted")
        expect("ptpchat_nodes_known", [:], json["nodes_known"], "nodes_known")
        let relayed = json["relayed"] as? [String: Any] ?? [:]
        XCTAssertFalse(relayed.isEmpty, "/stats relayed is empty after a MESSAGE")
        for (verb, counts) in relayed {
            expect("ptpchat_messages_relayed_total", ["verb": verb], (counts as? [String: Any])?["messages"], "relayed.\(verb).messages")
            expect("ptpchat_bytes_relayed_total", ["verb": verb], (counts as? [String: Any])?["bytes"], "relayed.\(verb).bytes")
        }
        for (reason, count) in json["nacks"] as? [String: Any] ?? [:] {
            expect("ptpchat_nacks_sent_total", ["reason": reason], count, "nacks.\(reason)")
        }
        for (reason, count) in json["drops"] as? [String: Any] ?? [:] {
            expect("ptpchat_drops_total", ["reason": reason], count, "drops.\(reason)")
        }
        let acks = json["acks"] as? [String: Any] ?? [:]
        expect("ptpchat_acks_sent_total", [:], acks["sent"], "acks.sent")
        expect("ptpchat_acks_received_total", [:], acks["received"], "acks.received")
        let store = json["store"] as? [String: Any] ?? [:]
        expect("ptpchat_store_messages", [:], store["messages"], "store.messages")
        expect("ptpchat_store_bytes", [:], store["bytes"], "store.bytes")
        XCTAssertEqual(metrics.value("ptpchat_drops_total", ["reason": "invalid"]), 1)
        XCTAssertEqual(metrics.value("ptpchat_store_messages"), 1)
        XCTAssertEqual(metrics.value("ptpchat_messages_relayed_total", ["verb": "MESSAGE"]), 1)

        // Counters only go up, and a second scrape counts nothing twice.
        let again = try PrometheusText(parsing: try HTTPProbe.request(port: port, path: "/metrics").text)
        for sample in metrics.samples where metrics.types[metrics.family(of: sample.name)] == "counter" {
            XCTAssertEqual(again.value(sample.name, sample.labels), sample.value, "\(sample) changed between two scrapes without traffic")
        }
    }

    /// The checker used above rejects what Prometheus would reject.
    func testThePrometheusCheckerRejectsMalformedText() {
        let valid = "# HELP ptpchat_x_total X.\n# TYPE ptpchat_x_total counter\nptpchat_x_total{reason=\"a\\\"b\"} 3\nptpchat_x_total{reason=\"c\"} 1e3\n# TYPE ptpchat_g gauge\nptpchat_g -1.5\n"
        XCTAssertNoThrow(try PrometheusText(parsing: valid))
        XCTAssertEqual((try? PrometheusText(parsing: valid))?.value("ptpchat_x_total", ["reason": "a\"b"]), 3)
        let broken = [
            "ptpchat_x 1",  // no final newline
            "ptpchat-x 1\n",  // bad name
            "ptpchat_x{reason=a} 1\n",  // unquoted label value
            "ptpchat_x{reason=\"a\"} one\n",  // value not a number
            "ptpchat_x{reason=\"a\",reason=\"b\"} 1\n",  // label twice
            "ptpchat_x 1\nptpchat_x 2\n",  // series twice
            "# TYPE ptpchat_x counter\n# TYPE ptpchat_x gauge\nptpchat_x 1\n",  // TYPE twice
            "ptpchat_x 1\n# TYPE ptpchat_x counter\n",  // TYPE after samples
            "# TYPE ptpchat_x countr\nptpchat_x 1\n",  // unknown type
            "ptpchat_x 1\nptpchat_y 1\nptpchat_x{a=\"b\"} 1\n",  // family not together
            "# TYPE ptpchat_x counter\nptpchat_x -1\n",  // counter below zero
            "ptpchat_x{1a=\"b\"} 1\n",  // bad label name
            "ptpchat_x{a=\"b\\t\"} 1\n",  // bad escape
        ]
        for text in broken {
            XCTAssertThrowsError(try PrometheusText(parsing: text), "accepted: \(text.debugDescription)")
        }
    }

    // MARK: Probes, 404, HEAD

    func testHealthzReadyzUnknownPathsAndHead() throws {
        let (_, port) = try startRelayWithStats()
        let health = try HTTPProbe.request(port: port, path: "/healthz")
        XCTAssertEqual(health.status, 200, "/healthz: \(health)")
        let ready = try HTTPProbe.request(port: port, path: "/readyz")
        XCTAssertEqual(ready.status, 200, "/readyz while serving: \(ready)")
        for path in ["/nope", "/stats/extra", "/metricsx", "/STATS", "/healthz/../stats", "/index.htm"] {
            let response = try HTTPProbe.request(port: port, path: path)
            XCTAssertEqual(response.status, 404, "GET \(path): \(response)")
        }
        let query = try HTTPProbe.request(port: port, path: "/stats?pretty=1")
        XCTAssertEqual(query.status, 200, "/stats with a query string: \(query)")

        for path in ["/", "/stats", "/metrics", "/healthz", "/readyz"] {
            let get = try HTTPProbe.request(port: port, path: path)
            let head = try HTTPProbe.request("HEAD", port: port, path: path)
            XCTAssertEqual(head.status, 200, "HEAD \(path): \(head)")
            XCTAssertTrue(head.body.isEmpty, "HEAD \(path) sent a body of \(head.body.count) bytes")
            XCTAssertEqual(head.headers["content-type"], get.headers["content-type"], "HEAD \(path) content type differs from GET")
            let length = head.headers["content-length"].flatMap(Int.init)
            XCTAssertNotNil(length, "HEAD \(path) has no Content-Length: \(head)")
            if path == "/healthz" || path == "/readyz" || path == "/" {
                XCTAssertEqual(length, get.body.count, "HEAD \(path) Content-Length differs from the GET body")
            } else {
                XCTAssertGreaterThan(length ?? 0, 0, "HEAD \(path) Content-Length")
            }
        }
        let missing = try HTTPProbe.request("HEAD", port: port, path: "/nope")
        XCTAssertEqual(missing.status, 404, "HEAD /nope: \(missing)")
        XCTAssertTrue(missing.body.isEmpty)
    }

    func testReadyzAnswers503WhileStopping() throws {
        // Many connected nodes make the stop take some milliseconds (closing every connection,
        // flushing the store). While the relay still has connections to close it is stopping, and
        // /readyz must say 503: not 200, and not refuse the connection as if the relay were gone.
        let notify = try makeNotifySocket()
        let relay = try launchRelay(
            config: Self.manyConnectionsFromOneAddress, logLevel: "info", stats: true, environment: ["NOTIFY_SOCKET": notify.path])
        _ = try XCTUnwrap(notify.waitFor(timeout: RelayProcess.startTimeout) { $0.has("READY", "1") }, "no READY=1:\n\(notify.transcript)")
        let port = try XCTUnwrap(relay.statsPort)
        XCTAssertEqual(try HTTPProbe.request(port: port, path: "/readyz").status, 200, "/readyz while serving")

        // Raw connections, each a bound node, so that the test can tell cheaply which are still open.
        let count = 300
        var open: [Int32] = []
        defer { open.forEach(Sockets.closeSocket) }
        for index in 0..<count {
            let fd = try Sockets.connected(port: relay.port)
            open.append(fd)
            let id = Ids.make()
            let hello = JSON.data(Frames.hello(id: id, name: "n\(index)"))
            let frame = TestClient.lengthPrefix(hello.count) + hello
            _ = frame.withUnsafeBytes { Sockets.sendSome(fd, $0) }
        }
        var clients = 0
        _ = Deadline.poll(timeout: 10, interval: 0.05) {
            let json = (try? HTTPProbe.request(port: port, path: "/stats"))?.json
            clients = (json?["connections"] as? [String: Any])?["clients"] as? Int ?? 0
            return clients == count
        }
        XCTAssertEqual(clients, count, "not every node got bound")
        /// Whether any of the nodes' connections is still open (reads away what the relay sent).
        func anyStillOpen() -> Bool {
            var scratch = [UInt8](repeating: 0, count: 65536)
            open.removeAll { fd in
                while true {
                    let read = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                    if read > 0 { continue }
                    if read < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return false }
                    Sockets.closeSocket(fd)
                    return true
                }
            }
            return !open.isEmpty
        }
        XCTAssertTrue(anyStillOpen())

        relay.child.signal(SIGTERM)
        let stopping = try XCTUnwrap(
            notify.waitFor(timeout: expectWithin) { $0.has("STOPPING", "1") }, "no STOPPING=1 after SIGTERM:\n\(notify.transcript)")
        var answers: [String: Int] = [:]
        var refusedWhileDraining = 0
        var probes = 0
        let deadline = Deadline(10)
        while anyStillOpen() && !deadline.hasPassed {
            probes += 1
            let outcome: String
            do {
                outcome = "\(try HTTPProbe.request(port: port, path: "/readyz", timeout: 1).status)"
            } catch {
                outcome = "no answer"
                // The relay had not closed every connection yet after this attempt: it was stopping.
                if anyStillOpen() { refusedWhileDraining += 1 }
            }
            answers[outcome, default: 0] += 1
        }
        let drain = Date().timeIntervalSince(stopping.message.at)
        XCTAssertEqual(relay.child.waitForEnding(timeout: 10), "exit 0")
        let summary = "\(probes) probes of /readyz in the \(Int(drain * 1000)) ms from STOPPING=1 to the last connection closed: \(answers)"
        print(summary)
        XCTAssertNil(answers["200"], "/readyz said 200 after STOPPING=1: \(summary)")
        XCTAssertEqual(
            refusedWhileDraining, 0,
            "/readyz refused connections while the relay was still closing its connections (expected 503 while stopping): \(summary)")
    }
}
