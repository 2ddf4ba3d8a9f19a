#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import XCTest

/// PROFILE.md section 10 over real sockets: the accept limits (per IP from 127.0.0.2, 127.0.0.3,
/// … as source addresses), the fail2ban warning line, the per-node read budget, CONNECT per
/// node, the HELLO frame cap, and a reload lowering `limits.max_frame_bytes` for an open connection.
final class LimitsTests: RelayTestCase {
    /// A relay with its stats endpoint on a free port and `limits` (YAML lines under `limits:`).
    private func startLimitedRelay(_ limits: [String], threads: Int? = nil, arguments: [String] = []) throws -> (RelayProcess, statsPort: UInt16) {
        let statsPort = try Sockets.freePort()
        var config = "stats:\n  listen: 127.0.0.1:\(statsPort)\nlimits:\n" + limits.map { "  \($0)\n" }.joined()
        if let threads { config += "relay:\n  threads: \(threads)\n" }
        let relay = try startRelay(config: config, arguments: arguments)
        _ = try HTTPProbe.waitForAnswer(port: statsPort, timeout: expectWithin)
        return (relay, statsPort)
    }

    /// Edits the relay's configuration file and reloads it (SIGHUP), waiting for the reload's line.
    private func reload(_ relay: RelayProcess, replacing old: String, with new: String, file: StaticString = #filePath, line: UInt = #line)
        throws
    {
        let path = relay.directory.appendingPathComponent("relay.yaml")
        let config = try String(contentsOf: path, encoding: .utf8)
        XCTAssertTrue(config.contains(old), "the configuration has no \(old)", file: file, line: line)
        try config.replacingOccurrences(of: old, with: new).write(to: path, atomically: true, encoding: .utf8)
        let linesBefore = relay.child.stderrLines.count
        relay.child.signal(SIGHUP)
        XCTAssertNotNil(
            relay.child.waitForStderrLine(containing: "configuration reloaded", after: linesBefore, timeout: expectWithin), "no reload",
            file: file, line: line)
    }

    private func drops(_ statsPort: UInt16, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Int] {
        let response = try HTTPProbe.request(port: statsPort, path: "/stats")
        let json = try XCTUnwrap(response.json, "/stats: \(response)", file: file, line: line)
        return (json["drops"] as? [String: Any] ?? [:]).compactMapValues { $0 as? Int }
    }

    /// Waits until `/stats` counts `reason` at least `count` times; returns the last count.
    @discardableResult
    private func waitForDrop(_ statsPort: UInt16, _ reason: String, atLeast count: Int, file: StaticString = #filePath, line: UInt = #line)
        -> Int
    {
        var seen = 0
        let reached = Deadline.poll(timeout: expectWithin) {
            seen = (try? drops(statsPort))?[reason] ?? 0
            return seen >= count
        }
        XCTAssertTrue(reached, "drops.\(reason) is \(seen), expected at least \(count)", file: file, line: line)
        return seen
    }

    /// The relay's HELLO arrives: the connection was admitted.
    private func expectAdmitted(_ client: TestClient, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(client.receive(timeout: expectWithin)?.verb, "HELLO", "\(client.label) not admitted", file: file, line: line)
    }

    /// Closed with nothing sent: refused at accept, before the relay's HELLO.
    private func expectRefused(_ client: TestClient, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNil(client.receive(timeout: expectWithin), "\(client.label) got a frame", file: file, line: line)
        XCTAssertTrue(client.isClosed, "\(client.label) not closed", file: file, line: line)
    }

    // MARK: Accept limits

    func testPerIPConnectionLimitRefusesThatAddressOnly() throws {
        let (relay, statsPort) = try startLimitedRelay(["per_ip_connections: 3"])
        let first = try (0..<3).map { try connect(relay, label: "a\($0)", source: "127.0.0.2") }
        first.forEach { expectAdmitted($0) }
        let fourth = try connect(relay, label: "a3", source: "127.0.0.2")
        expectRefused(fourth)
        let other = try connect(relay, label: "b0", source: "127.0.0.3")
        expectAdmitted(other)
        XCTAssertEqual(try drops(statsPort)["per_ip_limit"], 1)
        // A closed connection makes room again.
        first[0].close()
        var admitted = false
        _ = Deadline.poll(timeout: expectWithin, interval: 0.05) {
            guard let again = try? self.connect(relay, label: "a-again", source: "127.0.0.2") else { return false }
            admitted = again.receive(timeout: 1)?.verb == "HELLO"
            return admitted
        }
        XCTAssertTrue(admitted, "no room after a connection of 127.0.0.2 closed")
        let metrics = try HTTPProbe.request(port: statsPort, path: "/metrics")
        XCTAssertTrue(
            metrics.text.contains(#"ptpchat_drops_total{reason="per_ip_limit"}"#), "/metrics has no per_ip_limit count:\n\(metrics.text)")
    }

    func testTotalConnectionLimit() throws {
        let (relay, statsPort) = try startLimitedRelay(["max_connections: 2"])
        expectAdmitted(try connect(relay, label: "a", source: "127.0.0.2"))
        expectAdmitted(try connect(relay, label: "b", source: "127.0.0.3"))
        expectRefused(try connect(relay, label: "c", source: "127.0.0.4"))
        XCTAssertEqual(try drops(statsPort)["connection_limit"], 1)
    }

    /// Also the fail2ban filter: its regex, `<HOST>` replaced as fail2ban does, matches the warning
    /// line this relay printed and finds the hammering address in it.
    func testPerIPRateWarnsOnceAMinuteInTheFail2banFormat() throws {
        let (relay, statsPort) = try startLimitedRelay(["per_ip_new_per_second: 1", "per_ip_new_burst: 3"])
        for index in 0..<3 { expectAdmitted(try connect(relay, label: "burst\(index)", source: "127.0.0.5")) }
        // Hammering: 30 more at once, all refused, one warning line.
        var hammer: [TestClient] = []
        for index in 0..<30 { hammer.append(try connect(relay, label: "hammer\(index)", source: "127.0.0.5")) }
        for client in hammer { XCTAssertTrue(client.expectClosed(timeout: expectWithin), "\(client.label) not refused") }
        let refused = waitForDrop(statsPort, "per_ip_rate", atLeast: 28)
        XCTAssertLessThanOrEqual(refused, 30)
        expectAdmitted(try connect(relay, label: "elsewhere", source: "127.0.0.6"))

        let warnings = relay.child.stderrLines.filter { $0.contains("level=warning") && $0.contains("connections refused at accept") }
        XCTAssertEqual(warnings.count, 1, "one warning a minute per address:\n\(warnings.joined(separator: "\n"))")
        let line = try XCTUnwrap(warnings.first)
        XCTAssertTrue(line.contains("ip=127.0.0.5"), line)
        XCTAssertTrue(line.contains("reason=per_ip_rate"), line)
        let debugLines = relay.child.stderrLines.filter { $0.contains("level=debug") && $0.contains("connection refused at accept") }
        XCTAssertEqual(debugLines.count, refused, "a debug line per refusal")

        let host = try Fail2banFilter.load().host(in: line)
        XCTAssertEqual(host, "127.0.0.5", "the fail2ban filter does not find the address in: \(line)")
        XCTAssertNil(
            try Fail2banFilter.load().host(in: debugLines.first ?? ""), "the filter must not match the per-refusal debug line")
        // fail2ban's own tool, where it is installed, on the relay's whole output.
        if let matched = try Fail2banFilter.runFail2banRegex(on: relay.child.stderrURL) {
            XCTAssertEqual(matched, 1, "fail2ban-regex matched \(matched) lines of the relay's output")
        }
    }

    /// Refusals over `limits.accept_refusals_*` pause accepting: a connection that meets every
    /// limit waits in the kernel's backlog until the pause ends, while open connections keep
    /// exchanging messages. One warning line for the pauses.
    func testRefusalsOverTheirBudgetPauseAcceptingButNotOpenConnections() throws {
        // 4 connections per address, none more during the test; refusals: a burst of 1, then one
        // every 2 s (a pause lasts until one is back). One listener (each event loop has its own,
        // and each pauses when it refuses over the shared budget).
        let (relay, statsPort) = try startLimitedRelay(
            ["per_ip_new_per_second: 0.01", "per_ip_new_burst: 4", "accept_refusals_per_second: 0.5", "accept_refusals_burst: 1"],
            threads: 1)
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        var hammer: [TestClient] = []
        for index in 0..<8 { hammer.append(try connect(relay, label: "hammer\(index)", source: "127.0.0.7")) }
        waitForDrop(statsPort, "accept_paused", atLeast: 1)

        let waiting = try connect(relay, label: "waiting", source: "127.0.0.8")
        XCTAssertNil(waiting.receive(timeout: 0.5), "a connection was accepted during a 2 s pause")
        // Open connections are untouched meanwhile.
        let id = Ids.make()
        XCTAssertTrue(alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id)))
        XCTAssertNotNil(bob.client.receive(timeout: expectWithin) { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id })
        XCTAssertTrue(bob.client.send(json: Frames.ack(from: bob, acknowledging: id)))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { $0.verb == "ACK" }?.verb, "ACK")

        expectAdmitted(waiting)
        let admitted = hammer.filter { $0.receive(timeout: expectWithin)?.verb == "HELLO" }
        XCTAssertEqual(admitted.count, 4, "the per-IP burst")
        XCTAssertEqual(hammer.filter { $0.isClosed }.count, 4, "the rest refused")
        XCTAssertEqual(try drops(statsPort)["per_ip_rate"], 4)
        let warnings = relay.child.stderrLines.filter { $0.contains("level=warning") && $0.contains("accepting paused") }
        XCTAssertEqual(warnings.count, 1, warnings.joined(separator: "\n"))
        XCTAssertTrue(warnings.first?.contains("reason=accept_paused") ?? false, warnings.first ?? "")
        XCTAssertNil(try Fail2banFilter.load().host(in: warnings.first ?? ""), "the pause names no address to ban")
    }

    /// An address refused `limits.ban_after_refusals` times within a minute is banned in the
    /// kernel: every listening socket (one per event loop here) drops its SYNs, so its handshakes
    /// no longer even reach the accept queue, while other addresses and its connection already
    /// open are untouched. One warning line, `address_banned` counted, the gauge in `/stats`; the
    /// ban ends after `limits.ban_seconds` and the filter goes.
    func testAnAddressThatKeepsHammeringIsBannedInTheKernel() throws {
        let (relay, statsPort) = try startLimitedRelay([
            "per_ip_new_per_second: 0.01", "per_ip_new_burst: 1", "ban_after_refusals: 3", "ban_seconds: 3",
        ])
        let port = relay.port
        let open = try connect(relay, label: "open", source: "127.0.0.11")
        expectAdmitted(open)
        for index in 0..<3 { expectRefused(try connect(relay, label: "hammer\(index)", source: "127.0.0.11")) }
        waitForDrop(statsPort, "address_banned", atLeast: 1)
        XCTAssertEqual(try bannedAddresses(statsPort), 1)

        // Several tries: the kernel hands each to one of the listeners (SO_REUSEPORT); each has the list.
        for attempt in 0..<4 {
            XCTAssertFalse(try Sockets.handshakeCompletes(port: port, source: "127.0.0.11", within: 0.3), "SYN \(attempt) answered")
        }
        let other = try connect(relay, label: "other", source: "127.0.0.12")
        expectAdmitted(other)
        XCTAssertTrue(open.send(json: ["msg_type": "HELLO", "ttl": 1, "flood": false, "msg_data": ["node_id": Ids.make(), "name": "open"]]))
        XCTAssertFalse(open.isClosed, "the connection open before the ban was cut")

        let warnings = relay.child.stderrLines.filter { $0.contains("level=warning") && $0.contains("address banned") }
        XCTAssertEqual(warnings.count, 1, warnings.joined(separator: "\n"))
        XCTAssertTrue(warnings.first?.contains("ip=127.0.0.11") ?? false, warnings.first ?? "")

        // The ban ends: the kernel answers again (the relay still refuses it at accept: the
        // address's new-connection budget is spent), and the filter is gone.
        let lifted = Deadline.poll(timeout: expectWithin) {
            (try? Sockets.handshakeCompletes(port: port, source: "127.0.0.11", within: 0.3)) ?? false
        }
        XCTAssertTrue(lifted, "the ban did not end")
        XCTAssertEqual(try bannedAddresses(statsPort), 0)
        XCTAssertEqual(try drops(statsPort)["address_banned"], 1)
    }

    /// Over IPv6 the ban is the address's /64, and the filter reads the IPv6 header: ::1 hammering
    /// the relay's [::1] listener is banned there, while IPv4 clients still get in.
    func testAnIPv6AddressIsBannedByItsSlashSixtyFour() throws {
        let port6 = try Sockets.freePort()
        let (relay, statsPort) = try startLimitedRelay(
            ["per_ip_new_per_second: 0.01", "per_ip_new_burst: 1", "ban_after_refusals: 3", "ban_seconds: 3600"],
            arguments: ["--listen", "[::1]:\(port6)"])
        var connected = 0
        let listening = Deadline.poll(timeout: expectWithin) {
            guard let done = try? Sockets.handshakeCompletesIPv6(port: port6, within: 1) else { return true }
            if done { connected += 1 }
            return done
        }
        guard listening, connected > 0 else { throw XCTSkip("no IPv6 loopback here") }
        // The first connection took the burst; three more refusals ban ::/64.
        for _ in 0..<3 { XCTAssertEqual(try Sockets.handshakeCompletesIPv6(port: port6, within: expectWithin), true) }
        waitForDrop(statsPort, "address_banned", atLeast: 1)
        for attempt in 0..<4 {
            XCTAssertEqual(try Sockets.handshakeCompletesIPv6(port: port6, within: 0.3), false, "SYN \(attempt) over IPv6 answered")
        }
        expectAdmitted(try connect(relay, label: "v4", source: "127.0.0.14"))
        let warnings = relay.child.stderrLines.filter { $0.contains("address banned") }
        XCTAssertEqual(warnings.count, 1, warnings.joined(separator: "\n"))
        XCTAssertTrue(warnings.first?.contains("prefix=0:0:0:0::/64") ?? false, warnings.first ?? "")
    }

    /// A reload turning bans off (`ban_after_refusals: 0`) lifts the bans in force: the filter
    /// leaves the listening sockets at once, long before the ban would have ended.
    func testAReloadTurningBansOffLiftsThem() throws {
        let (relay, statsPort) = try startLimitedRelay([
            "per_ip_new_per_second: 0.01", "per_ip_new_burst: 1", "ban_after_refusals: 2", "ban_seconds: 3600",
        ])
        let port = relay.port
        for index in 0..<3 { _ = try connect(relay, label: "hammer\(index)", source: "127.0.0.13") }
        waitForDrop(statsPort, "address_banned", atLeast: 1)
        XCTAssertFalse(try Sockets.handshakeCompletes(port: port, source: "127.0.0.13", within: 0.3), "not banned")

        try reload(relay, replacing: "ban_after_refusals: 2", with: "ban_after_refusals: 0")
        let lifted = Deadline.poll(timeout: expectWithin) {
            (try? Sockets.handshakeCompletes(port: port, source: "127.0.0.13", within: 0.3)) ?? false
        }
        XCTAssertTrue(lifted, "the ban outlived the reload that turned bans off")
        XCTAssertEqual(try bannedAddresses(statsPort), 0)
    }

    private func bannedAddresses(_ statsPort: UInt16) throws -> Int? {
        let json = try XCTUnwrap(HTTPProbe.request(port: statsPort, path: "/stats").json)
        return (json["connections"] as? [String: Any])?["banned_addresses"] as? Int
    }

    // MARK: Per-node read budget

    func testANodeOverItsMessageBudgetIsSlowedAndLosesNothing() throws {
        let rate = 400.0, burst = 100, count = 2000
        let (relay, statsPort) = try startLimitedRelay(["node_messages_per_second: \(Int(rate))", "node_messages_burst: \(burst)"])
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let (sent, received, elapsed) = sendAsFastAsTaken(count, inBatchesOf: 50, from: alice, to: bob)
        XCTAssertEqual(received, sent, "every message arrives")
        let floor = Double(count - burst) / rate
        XCTAssertGreaterThan(elapsed, floor * 0.8, "\(count) messages in \(elapsed) s: not capped near \(rate)/s")
        XCTAssertLessThan(elapsed, floor * 2 + 2, "\(count) messages in \(elapsed) s: far slower than \(rate)/s")
        print("throttling: \(count) messages in \(String(format: "%.2f", elapsed)) s (\(String(format: "%.0f", Double(count) / elapsed))/s at a budget of \(rate)/s)")
        waitForDrop(statsPort, "throttled", atLeast: 1)
        XCTAssertEqual(sent.count, count)
        XCTAssertFalse(alice.client.isClosed)
        XCTAssertNil(alice.client.receive(verb: "NACK", timeout: 0), "a message was refused")
    }

    /// With the budget off a connection has none in its pipeline; a reload that turns it on puts
    /// one on the connections already open (RelayShard.applyLimitsToOpenConnections).
    func testAReloadTurningTheNodeBudgetOnSlowsAnOpenConnectionAndLosesNothing() throws {
        let rate = 100.0, burst = 20, count = 400
        let (relay, statsPort) = try startLimitedRelay(["node_messages_per_second: 0", "node_bytes_per_second: 0"])
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        try reload(relay, replacing: "node_messages_per_second: 0", with: "node_messages_per_second: \(Int(rate))\n  node_messages_burst: \(burst)")
        let (sent, received, elapsed) = sendAsFastAsTaken(count, inBatchesOf: 20, from: alice, to: bob)
        XCTAssertEqual(received, sent, "every message arrives")
        // What one throttled read takes in (16 KiB, these frames are over 300 bytes) is delivered
        // whatever the budget: the last one is never paid back.
        let overshoot = 16 * 1024 / 300
        let floor = Double(count - burst - overshoot) / rate
        XCTAssertGreaterThan(elapsed, floor * 0.8, "\(count) messages in \(elapsed) s: the reloaded budget of \(rate)/s did not apply")
        waitForDrop(statsPort, "throttled", atLeast: 1)
        XCTAssertFalse(alice.client.isClosed)
    }

    /// Alice sends `count` messages to Bob as fast as her socket takes the frames (it blocks when
    /// the relay stops reading); Bob's are read between her batches and after. The ids sent, the
    /// ids Bob got, and the seconds to the last one: the relay cannot deliver faster than it reads.
    private func sendAsFastAsTaken(_ count: Int, inBatchesOf batch: Int, from alice: Node, to bob: Node) -> (
        sent: Set<String>, received: Set<String>, elapsed: TimeInterval
    ) {
        var sent: Set<String> = []
        var received: Set<String> = []
        func take(_ frame: [String: Any]?) {
            if let id = (frame?["msg_data"] as? [String: Any])?["msg_id"] as? String { received.insert(id) }
        }
        let start = Date()
        for _ in 0..<(count / batch) {
            for _ in 0..<batch {
                let id = Ids.make()
                sent.insert(id)
                XCTAssertTrue(alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id)))
            }
            while let frame = bob.client.receive(verb: "MESSAGE", timeout: 0) { take(frame) }
        }
        while received.count < count, let frame = bob.client.receive(verb: "MESSAGE", timeout: 5) { take(frame) }
        return (sent, received, Date().timeIntervalSince(start))
    }

    // MARK: CONNECT per node

    func testConnectOverThePerMinuteBudgetIsNackedRateLimited() throws {
        let (relay, statsPort) = try startLimitedRelay(["connect_per_minute: 2"])
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        var ids: [String] = []
        for index in 0..<3 {
            let id = Ids.make()
            ids.append(id)
            alice.client.send(json: Frames.head(
                "CONNECT", id: id, ttl: 32, flood: false, sender: alice.address,
                data: ["src": ":4000\(index)", "dst": NSNull(), "src_node_id": alice.id, "dst_node_id": bob.id]))
        }
        XCTAssertNotNil(bob.client.receive(verb: "CONNECT", timeout: expectWithin))
        XCTAssertNotNil(bob.client.receive(verb: "CONNECT", timeout: expectWithin))
        let nack = try XCTUnwrap(alice.client.receive(verb: "NACK", timeout: expectWithin))
        let data = nack["msg_data"] as? [String: Any] ?? [:]
        XCTAssertEqual(data["reason"] as? String, "rate_limited")
        XCTAssertEqual(data["msg_id"] as? String, ids[2])
        XCTAssertNil(bob.client.receive(verb: "CONNECT", timeout: quietPeriod), "the third CONNECT was forwarded")
        XCTAssertEqual(try drops(statsPort)["connect_rate"], 1)
    }

    // MARK: Frame caps

    func testAFrameOverTheHelloCapBeforeHelloCloses() throws {
        let (relay, statsPort) = try startLimitedRelay([])
        let (client, _) = try connectAndReadHello(relay, label: "stranger")
        // Only the length header of a 20,000-byte frame: refused before it is buffered.
        client.sendRaw(TestClient.lengthPrefix(20_000))
        XCTAssertTrue(client.expectClosed(timeout: expectWithin), "not closed for a frame over the HELLO cap")
        XCTAssertEqual(try drops(statsPort)["frame_too_large"], 1)
        // The same size after the HELLO is fine (the cap is then limits.max_frame_bytes).
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id, text: String(repeating: "x", count: 20_000)))
        XCTAssertNotNil(bob.client.receive(verb: "MESSAGE", timeout: expectWithin))
        XCTAssertFalse(alice.client.isClosed)
    }

    func testAReloadLoweringMaxFrameBytesReachesAnOpenConnection() throws {
        let (relay, statsPort) = try startLimitedRelay(["max_frame_bytes: 1048576"])
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], text: String(repeating: "x", count: 20_000)))
        XCTAssertNotNil(bob.client.receive(verb: "MESSAGE", timeout: expectWithin))

        try reload(relay, replacing: "max_frame_bytes: 1048576", with: "max_frame_bytes: 8192")
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], text: String(repeating: "x", count: 10_000)))
        XCTAssertTrue(alice.client.expectClosed(timeout: expectWithin), "the open connection passed a frame over the new cap")
        XCTAssertEqual(try drops(statsPort)["frame_too_large"], 1)
        XCTAssertNil(bob.client.receive(verb: "MESSAGE", timeout: quietPeriod))
        XCTAssertFalse(bob.client.isClosed, "a reload closed a connection")
    }
}

/// `deploy/fail2ban/ptpchat-relay.conf`'s `failregex`, with `<HOST>` replaced as fail2ban does.
struct Fail2banFilter {
    let regex: NSRegularExpression

    static func load() throws -> Fail2banFilter {
        let text = try String(contentsOf: path, encoding: .utf8)
        let line = try XCTUnwrap(
            text.split(separator: "\n").first { $0.hasPrefix("failregex") }, "no failregex line in the filter")
        var pattern = String(line.drop { $0 != "=" }.dropFirst()).trimmingCharacters(in: .whitespaces)
        // fail2ban's <HOST> (its `(?P<host>…)` spelled for ICU), and `%%` is a `%` in its files.
        pattern = pattern.replacingOccurrences(of: "<HOST>", with: #"(?:::f{4,6}:)?(?<host>[\w\-.^_]*\w)"#)
        pattern = pattern.replacingOccurrences(of: "%%", with: "%")
        return Fail2banFilter(regex: try NSRegularExpression(pattern: pattern))
    }

    static var path: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/fail2ban/ptpchat-relay.conf")
    }

    /// Lines of `log` that `fail2ban-regex` matches with the filter; nil when fail2ban is not installed.
    static func runFail2banRegex(on log: URL) throws -> Int? {
        let tool = URL(fileURLWithPath: "/usr/bin/fail2ban-regex")
        guard FileManager.default.isExecutableFile(atPath: tool.path) else { return nil }
        let process = Process()
        process.executableURL = tool
        process.arguments = [log.path, path.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let regex = try NSRegularExpression(pattern: #"Lines: \d+ lines, \d+ ignored, (\d+) matched"#)
        guard let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
            let range = Range(match.range(at: 1), in: text)
        else {
            XCTFail("fail2ban-regex said:\n\(text)")
            return nil
        }
        return Int(text[range])
    }

    /// The address the filter finds in `line`, nil when it does not match.
    func host(in line: String) -> String? {
        let range = NSRange(line.startIndex..., in: line)
        guard let match = regex.firstMatch(in: line, range: range), let host = Range(match.range(withName: "host"), in: line) else {
            return nil
        }
        return String(line[host])
    }
}

/// The accept limits on a listening socket passed by systemd (`start(inheritedListeners:)`).
final class SocketActivatedLimitsTests: OpsTestCase {
    func testTheAcceptGateServesASocketPassedBySystemd() throws {
        let activator = try OperationsTests.socketActivate()
        let relayPort = try Sockets.freePort()
        let configuredPort = try Sockets.freePort()
        let folder = try folder("activated")
        let config = folder.appendingPathComponent("relay.yaml")
        try "limits:\n  per_ip_connections: 2\n".write(to: config, atomically: true, encoding: .utf8)
        let child = try launch(
            activator,
            [
                "-l", "127.0.0.1:\(relayPort)", "--fdname=relay", try Binaries.path("ptpchat-relay").path,
                "--listen", "127.0.0.1:\(configuredPort)", "--data-dir", folder.appendingPathComponent("data").path,
                "--node-id", Ids.make(), "--stats", "off", "--log-level", "debug", "--config", config.path,
            ],
            name: "activated")
        var first: TestClient?
        _ = Deadline.poll(timeout: 5) {
            first = try? TestClient(port: relayPort, label: "a0", source: "127.0.0.7")
            return first != nil || !child.isRunning
        }
        let a0 = try XCTUnwrap(first, "systemd-socket-activate did not listen:\n\(child.outputTail())")
        XCTAssertEqual(a0.receive(timeout: RelayProcess.startTimeout)?.verb, "HELLO")
        let a1 = try TestClient(port: relayPort, label: "a1", source: "127.0.0.7")
        XCTAssertEqual(a1.receive(timeout: expectWithin)?.verb, "HELLO")
        let a2 = try TestClient(port: relayPort, label: "a2", source: "127.0.0.7")
        XCTAssertNil(a2.receive(timeout: expectWithin), "a third connection from 127.0.0.7 got a frame")
        XCTAssertTrue(a2.isClosed, "a third connection from 127.0.0.7 was not refused on the socket from systemd")
        let b0 = try TestClient(port: relayPort, label: "b0", source: "127.0.0.8")
        XCTAssertEqual(b0.receive(timeout: expectWithin)?.verb, "HELLO")
        XCTAssertNotNil(child.waitForStderrLine(containing: ["connections refused at accept", "ip=127.0.0.7"], timeout: expectWithin))
        [a0, a1, a2, b0].forEach { $0.close() }
        child.signal(SIGTERM)
        XCTAssertEqual(child.waitForEnding(timeout: 5), "exit 0")
    }
}
