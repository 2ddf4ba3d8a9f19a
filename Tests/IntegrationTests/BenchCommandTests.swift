import Foundation
import XCTest

/// `ptpchat bench` against a real relay process: a bounded run, Ctrl-C in the middle of one, and a
/// relay that is not there.
final class BenchCommandTests: RelayTestCase {
    /// The per-node message budget (200/s) would make the load test measure the limit, not the relay.
    private let unthrottled = RelayTestCase.manyConnectionsFromOneAddress + "  node_messages_per_second: 0\n  node_bytes_per_second: 0\n"

    private func summary(_ child: ChildProcess) throws -> [String: Any] {
        let text = child.stdout
        return try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "stdout is not one JSON object: \(text)\n\(child.stderr)")
    }

    private func assertOrderedLatency(_ summary: [String: Any], _ key: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let latency = try XCTUnwrap(summary[key] as? [String: Any], file: file, line: line)
        let values = try ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"].map { try XCTUnwrap(latency[$0] as? Double, file: file, line: line) }
        XCTAssertGreaterThan(values[0], 0, "\(key): \(latency)", file: file, line: line)
        XCTAssertEqual(values, values.sorted(), "\(key) percentiles out of order: \(latency)", file: file, line: line)
        XCTAssertGreaterThan(latency["count"] as? Int ?? 0, 0, file: file, line: line)
    }

    /// `ptpchat bench --json` with `options` against `relay`, which must exit 0: its summary.
    private func boundedRun(_ relay: RelayProcess, _ options: [String], name: String) throws -> [String: Any] {
        let bench = try startPtpchat(["bench", "--relay", relay.endpoint, "--duration", "30", "--json"] + options, name: name)
        XCTAssertEqual(bench.waitForExit(timeout: 40), 0, "bench did not exit 0: \(bench.stderr)\n\(bench.stdout)")
        return try summary(bench)
    }

    func testBoundedRunDeliversAndAcksEveryMessage() throws {
        let relay = try startRelay(config: unthrottled)
        let result = try boundedRun(
            relay, ["--conns", "6", "--window", "8", "--payload", "64", "--messages", "3000", "--threads", "2"], name: "bench-json")
        XCTAssertEqual(result["sent"] as? Int, 3000, "--messages bounds the run: \(result)")
        XCTAssertEqual(result["delivered"] as? Int, 3000)
        XCTAssertEqual(result["acked"] as? Int, 3000)
        XCTAssertEqual(result["lost"] as? Int, 0)
        XCTAssertEqual(result["unacked"] as? Int, 0)
        XCTAssertEqual(result["errors"] as? Int, 0)
        XCTAssertEqual(result["interrupted"] as? Bool, false)
        XCTAssertEqual(result["head"] as? String, "spec")
        XCTAssertGreaterThan(result["msgs_per_s"] as? Double ?? 0, 0)
        XCTAssertGreaterThan(result["acks_per_s"] as? Double ?? 0, 0)
        XCTAssertLessThan(result["send_s"] as? Double ?? 99, 30, "the message count, not the duration, ended the run")
        try assertOrderedLatency(result, "latency")
        try assertOrderedLatency(result, "ack_latency")

        // The table, with the duration as the bound, the ring pattern and the client's head keys.
        let table = try startPtpchat(
            ["bench", "--relay", relay.endpoint, "--conns", "3", "--pattern", "ring", "--duration", "0.5", "--messages", "100000000",
             "--head", "client"],
            name: "bench-table")
        XCTAssertEqual(table.waitForExit(timeout: 20), 0, "\(table.stderr)\n\(table.stdout)")
        let lines = table.stdoutLines
        XCTAssertTrue(lines.first?.contains("pattern ring, 3 connections") == true, "\(lines)")
        XCTAssertTrue(lines.first?.hasSuffix("client head") == true, "\(lines)")
        XCTAssertFalse(table.stdout.contains("\u{1B}"), "a progress bar on a pipe: \(table.stdout)")
        let row = { (name: String) in lines.first { $0.hasPrefix(name) }?.split(separator: " ").last.map(String.init) }
        XCTAssertEqual(row("lost"), "0")
        XCTAssertEqual(row("errors"), "0")
        XCTAssertEqual(row("sent"), row("acked"))
        XCTAssertNotEqual(row("msgs/s"), "0")
        let ran = try XCTUnwrap(lines.first { $0.hasPrefix("ran ") }, "\(lines)")
        let seconds = try XCTUnwrap(Double(ran.split(separator: " ")[1]))
        XCTAssertEqual(seconds, 0.5, accuracy: 0.3, "--duration bounds the run: \(ran)")
    }

    /// MESSAGEs of 200 KB come in many reads each: every frame is put together from pieces.
    func testFramesLargerThanOneReadArriveWhole() throws {
        let relay = try startRelay(config: unthrottled)
        let result = try boundedRun(relay, ["--conns", "2", "--window", "4", "--payload", "200000", "--messages", "60"], name: "bench-large")
        XCTAssertEqual(result["delivered"] as? Int, 60, "\(result)")
        XCTAssertEqual(result["acked"] as? Int, 60)
        XCTAssertEqual(result["unexpected_frames"] as? Int, 0)
        XCTAssertEqual(result["errors"] as? Int, 0)
    }

    func testCtrlCStopsSendingAndPrintsTheSummarySoFar() throws {
        let statsPort = try Sockets.freePort()
        let relay = try startRelay(config: unthrottled, arguments: ["--stats", "127.0.0.1:\(statsPort)"])
        let bench = try startPtpchat(
            ["bench", "--relay", relay.endpoint, "--conns", "4", "--duration", "60", "--messages", "1000000000", "--json"], name: "bench-sigint")
        XCTAssertNotNil(bench.waitForStderrLine(containing: "sending for up to", timeout: 15), "bench did not start: \(bench.stderr)")
        // Interrupted once the relay has relayed messages, so there is a summary so far to print.
        let deadline = Date().addingTimeInterval(expectWithin)
        while relayedMessages(statsPort: statsPort) == 0, Date() < deadline, bench.isRunning {
            usleep(20_000)  // a poll of the relay's /stats, bounded by the deadline
        }
        XCTAssertGreaterThan(relayedMessages(statsPort: statsPort), 0, "the relay relayed nothing: \(bench.stderr)")
        bench.signal(SIGINT)
        XCTAssertEqual(bench.waitForExit(timeout: 15), 130, "an interrupted run exits 130 after its summary: \(bench.stderr)")
        let result = try summary(bench)
        XCTAssertEqual(result["interrupted"] as? Bool, true)
        XCTAssertLessThan(result["send_s"] as? Double ?? 99, 30)
        let sent = try XCTUnwrap(result["sent"] as? Int)
        XCTAssertGreaterThan(sent, 0)
        XCTAssertEqual(result["acked"] as? Int, sent, "the drain waits for the outstanding ACKs: \(result)")
        XCTAssertEqual(result["lost"] as? Int, 0)
    }

    private func relayedMessages(statsPort: UInt16) -> Int {
        let stats = (try? HTTPProbe.request(port: statsPort, path: "/stats"))?.json
        return ((stats?["relayed"] as? [String: Any])?["MESSAGE"] as? [String: Any])?["messages"] as? Int ?? 0
    }

    func testBenchOverTLS() throws {
        let pki = try TestCertificates(in: try directory.appendingPathComponent("pki"))
        let pair = try pki.relay()
        let tlsPort = try Sockets.freePort()
        let relay = try startRelay(
            config: unthrottled + "tls:\n  listen: [\"127.0.0.1:\(tlsPort)\"]\n  cert: \"\(pair.cert)\"\n  key: \"\(pair.key)\"\n")
        XCTAssertTrue(Deadline.poll(timeout: expectWithin) { relay.log.contains("tls=true") }, "no TLS listener:\n\(relay.logTail())")
        let bench = try startPtpchat(
            ["bench", "--relay", "127.0.0.1:\(tlsPort)", "--tls", "--ca", pki.ca, "--conns", "2", "--messages", "500", "--json"], name: "bench-tls")
        XCTAssertEqual(bench.waitForExit(timeout: 30), 0, "bench over TLS failed: \(bench.stderr)")
        let result = try summary(bench)
        XCTAssertEqual(result["acked"] as? Int, 500)
        XCTAssertEqual(result["lost"] as? Int, 0)

        // Plaintext to the TLS port: no handshake, a clear error.
        let plain = try startPtpchat(["bench", "--relay", "127.0.0.1:\(tlsPort)", "--conns", "2", "--messages", "10"], name: "bench-plain")
        let status = try XCTUnwrap(plain.waitForExit(timeout: 30), "bench without --tls against a TLS port does not end")
        XCTAssertNotEqual(status, 0)
        XCTAssertFalse(plain.stderr.isEmpty)
    }

    func testUnreachableRelayIsAClearErrorAndANonZeroExit() throws {
        let port = try Sockets.freePort()
        let bench = try startPtpchat(["bench", "--relay", "127.0.0.1:\(port)", "--conns", "2", "--duration", "5"], name: "bench-unreachable")
        let status = try XCTUnwrap(bench.waitForExit(timeout: 20), "bench still runs against nothing")
        XCTAssertEqual(status, 2)
        XCTAssertTrue(bench.stderr.contains("cannot connect to 127.0.0.1:\(port)"), "\(bench.stderr)")
        XCTAssertTrue(bench.stdout.isEmpty, "a summary for a run that never started: \(bench.stdout)")
    }
}
