#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import PTPProtocol
import XCTest

/// Issue 12: the live dashboard at `GET /` of the stats endpoint, loaded in headless Chromium
/// (Debian's `chromium`, installed by scripts/install-deps.sh) by Dashboard/dashboard-probe.py,
/// which speaks the DevTools protocol and reports console errors, failed requests and what the
/// page shows.
final class DashboardTests: OpsTestCase {
    static let meshKey = "dashboard-test-mesh-key-0123456789"

    static func onPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static var probeScript: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Dashboard/dashboard-probe.py")
    }

    /// One element's reading: its text and, for numbers, the raw value the page keeps in data-value.
    private struct Reading {
        let fields: [String: Any]
        func text(_ id: String) -> String? { (fields[id] as? [String: Any])?["text"] as? String }
        func value(_ id: String) -> Double? { ((fields[id] as? [String: Any])?["value"] as? NSNumber)?.doubleValue }
        func rows(_ key: String) -> [[String]] { fields[key] as? [[String]] ?? [] }
    }

    /// A relay with its stats endpoint and a peer relay dialing it, two clients, a stored message
    /// and a drop; the page loads in Chromium while the clients exchange messages (bounded: until
    /// the probe has read the page twice, at most 60 s and 100,000 messages). The page must load
    /// with no console error and no failed or foreign request, show this relay, and show numbers
    /// that moved between the two readings; then, with the relay stopped, say "disconnected".
    func testDashboardInHeadlessChromiumShowsLiveNumbersThatMoveUnderLoad() throws {
        guard let chromium = Self.onPath("chromium") ?? Self.onPath("chromium-browser") else {
            throw XCTSkip("chromium is not installed (Debian: apt-get install chromium; scripts/install-deps.sh installs it, CI has it)")
        }
        guard let python = Self.onPath("python3") else { throw XCTSkip("python3 is not installed") }
        let relay = try launchRelay(config: "mesh:\n  key: \"\(Self.meshKey)\"\n", logLevel: "info", stats: true)
        try relay.waitUntilListening()
        let statsPort = try XCTUnwrap(relay.statsPort)
        _ = try HTTPProbe.waitForAnswer(port: statsPort, timeout: expectWithin)
        let peer = try launchRelay(config: "mesh:\n  key: \"\(Self.meshKey)\"\n  peers: [\"\(relay.endpoint)\"]\n", logLevel: "info")
        try peer.waitUntilListening()
        var peersUp = 0
        _ = Deadline.poll(timeout: 10, interval: 0.05) {
            peersUp = ((try? HTTPProbe.request(port: statsPort, path: "/stats"))?.json?["connections"] as? [String: Any])?["peers"] as? Int ?? 0
            return peersUp == 1
        }
        XCTAssertEqual(peersUp, 1, "the peer relay did not come up")

        let alice = try bind(port: relay.port, name: "alice")
        let bob = try bind(port: relay.port, name: "bob")
        let storedID = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [Ids.make()], id: storedID, text: "for later"))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: storedID) }?.verb, "NACK")
        let invalidID = Ids.make()
        alice.client.send(json: OperationsTests.invalidMessage(from: alice, to: bob, id: invalidID))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: invalidID) }?.verb, "NACK")

        let screenshot = try folder("probe").appendingPathComponent("dashboard.png")
        let probe = try launch(
            URL(fileURLWithPath: python),
            [Self.probeScript.path, "http://127.0.0.1:\(statsPort)/", "--chromium", chromium, "--gap", "3", "--timeout", "45",
             "--screenshot", screenshot.path, "--filter", "BOB", "--then-disconnected", "15"],
            environment: [:], name: "dashboard-probe")
        // Load while the page takes its readings.
        let deadline = Deadline(60)
        var sent = 0
        while probe.stdoutLines.isEmpty && probe.isRunning && !deadline.hasPassed && sent < 100_000 {
            exchange(alice, bob, text: "load \(sent)")
            sent += 1
        }
        let lines = probe.waitForStdoutLines(1, timeout: 5)
        let report = try XCTUnwrap(
            lines.first.flatMap { JSON.object(Array($0.utf8)) }, "no report from the probe after \(sent) messages:\n\(probe.outputTail())")
        print("dashboard: \(sent) messages sent while the page was read; screenshot \(screenshot.path)")

        XCTAssertEqual(report["errors"] as? [String], [], "console errors, exceptions or CSP violations on the page")
        XCTAssertEqual(report["failed"] as? [String], [], "failed requests")
        XCTAssertEqual(report["foreign"] as? [String], [], "requests to anywhere but the stats endpoint")
        let readings = (report["readings"] as? [[String: Any]] ?? []).map(Reading.init)
        XCTAssertEqual(readings.count, 2)
        guard readings.count == 2 else { return }
        let (first, second) = (readings[0], readings[1])

        XCTAssertEqual(second.text("relay-name"), "relay")
        XCTAssertEqual(second.text("node-id")?.lowercased(), relay.nodeID)
        XCTAssertEqual(second.text("version"), ProjectVersion.number)
        XCTAssertEqual(second.text("state"), "serving")
        XCTAssertEqual(second.fields["link"] as? String, "live")
        XCTAssertGreaterThan(second.value("uptime") ?? 0, first.value("uptime") ?? .infinity, "uptime did not move")
        XCTAssertGreaterThan(first.value("kpi-relayed") ?? 0, 0, "no message counted at the first reading")
        XCTAssertGreaterThan(
            second.value("kpi-relayed") ?? 0, first.value("kpi-relayed") ?? .infinity, "messages relayed did not move under load")
        XCTAssertGreaterThan(second.value("kpi-rate") ?? 0, 0, "messages relayed per second is 0 under load")
        XCTAssertEqual(second.value("kpi-clients"), 2, "alice and bob")
        XCTAssertEqual(second.value("kpi-peers"), 1, "the peer relay")
        XCTAssertEqual(second.value("kpi-store"), 1, "the message to an offline node")
        XCTAssertGreaterThanOrEqual(second.value("kpi-drops-total") ?? 0, 1, "the invalid MESSAGE")
        let peerRows = second.rows("peerRows")
        XCTAssertEqual(peerRows.count, 1, "\(peerRows)")
        XCTAssertEqual(peerRows.first?.count ?? 0 > 3 ? peerRows.first?[3] : nil, "up", "\(peerRows)")
        let routeNames = Set(second.rows("routeRows").compactMap(\.first))
        XCTAssertTrue(routeNames.isSuperset(of: ["alice", "bob"]), "route table: \(second.rows("routeRows"))")
        XCTAssertTrue(FileManager.default.fileExists(atPath: screenshot.path), "no screenshot")
        // The filter asks the relay (routes?limit=&match=): only bob's row, named as a match.
        let filtered = try XCTUnwrap((report["filtered"] as? [String: Any]).map(Reading.init), "no filtered reading")
        XCTAssertEqual(filtered.rows("routeRows").compactMap(\.first), ["bob"], "\(filtered.rows("routeRows"))")
        XCTAssertTrue(filtered.text("routes-count")?.hasPrefix("1 of ") ?? false, filtered.text("routes-count") ?? "none")

        // The endpoint goes away: the page says so and keeps trying.
        relay.child.stop()
        let after = probe.waitForStdoutLines(2, timeout: 20)
        let gone = try XCTUnwrap(after.count == 2 ? JSON.object(Array(after[1].utf8)) : nil, "no second report:\n\(probe.outputTail())")
        XCTAssertEqual(gone["disconnected"] as? Bool, true, "the page did not show that the endpoint went away: \(gone)")
        XCTAssertTrue((gone["link_text"] as? String)?.contains("retrying") ?? false, "\(gone)")
        XCTAssertEqual(probe.waitForExit(timeout: 15), 0, probe.outputTail())
    }

    /// With `prefers-color-scheme: dark` the page loads as cleanly and turns dark: a dark
    /// background under light text (the light scheme is the one above).
    func testDashboardFollowsTheDarkColourScheme() throws {
        guard let chromium = Self.onPath("chromium") ?? Self.onPath("chromium-browser") else {
            throw XCTSkip("chromium is not installed (Debian: apt-get install chromium; scripts/install-deps.sh installs it, CI has it)")
        }
        guard let python = Self.onPath("python3") else { throw XCTSkip("python3 is not installed") }
        let relay = try launchRelay(logLevel: "info", stats: true)
        try relay.waitUntilListening()
        let statsPort = try XCTUnwrap(relay.statsPort)
        _ = try HTTPProbe.waitForAnswer(port: statsPort, timeout: expectWithin)
        let probe = try launch(
            URL(fileURLWithPath: python),
            [Self.probeScript.path, "http://127.0.0.1:\(statsPort)/index.html", "--chromium", chromium, "--dark", "--polls", "2", "--gap", "1"],
            environment: [:], name: "dashboard-probe-dark")
        XCTAssertEqual(probe.waitForExit(timeout: 60), 0, probe.outputTail())
        let report = try XCTUnwrap(probe.stdoutLines.first.flatMap { JSON.object(Array($0.utf8)) }, probe.outputTail())
        XCTAssertEqual(report["errors"] as? [String], [], "console errors, exceptions or CSP violations on the page")
        XCTAssertEqual(report["failed"] as? [String], [], "failed requests")
        let reading = try XCTUnwrap((report["readings"] as? [[String: Any]])?.last)
        XCTAssertEqual(reading["scheme"] as? String, "dark")
        /// The mean of an `rgb(r, g, b)` colour's channels.
        func brightness(_ key: String) -> Double? {
            let channels = (reading[key] as? String)?.split { !"0123456789".contains($0) }.prefix(3).compactMap { Double($0) } ?? []
            return channels.count == 3 ? channels.reduce(0, +) / 3 : nil
        }
        let background = try XCTUnwrap(brightness("background"), "\(reading["background"] ?? "no background")")
        let text = try XCTUnwrap(brightness("color"), "\(reading["color"] ?? "no colour")")
        XCTAssertLessThan(background, 64, "a dark background: \(reading["background"] ?? "")")
        XCTAssertGreaterThan(text, 160, "light text: \(reading["color"] ?? "")")
    }
}
