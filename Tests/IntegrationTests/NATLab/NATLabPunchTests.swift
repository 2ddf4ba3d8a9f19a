import Foundation
import XCTest

/// `ptpchat punch` (initiator) and `ptpchat listen --accept-punch` (responder), the product,
/// across every NAT kind the lab builds, behind RST routers and behind dropping routers:
/// endpoint-independent pairs go direct, a symmetric NAT is detected and the exchange stays on
/// the relay, and the initiator's message reaches the responder whichever way it went.
final class NATLabPunchTests: NATLabTestCase {
    func testPunchGoesDirectBetweenEndpointIndependentNATsBehindRSTRouters() throws {
        try assertEndpointIndependentPairsGoDirect(behaviour: .rst)
    }

    func testPunchGoesDirectBetweenEndpointIndependentNATsBehindDroppingRouters() throws {
        try assertEndpointIndependentPairsGoDirect(behaviour: .drop)
    }

    func testSymmetricNATIsDetectedAndTheMessageStaysOnTheRelayBehindRSTRouters() throws {
        try assertSymmetricStaysOnRelay(behaviour: .rst)
    }

    func testSymmetricNATIsDetectedAndTheMessageStaysOnTheRelayBehindDroppingRouters() throws {
        try assertSymmetricStaysOnRelay(behaviour: .drop)
    }

    // MARK: Helpers

    /// A responder (`ptpchat listen --accept-punch --json`) on `site`, ready once it said so.
    private func startResponder(on site: NATLab.Site, _ lab: NATLab, file: StaticString = #filePath, line: UInt = #line) throws -> (
        node: String, child: ChildProcess
    ) {
        let node = Ids.make()
        let child = try start(
            in: site.hostNamespace, lab, executable: try Binaries.path("ptpchat").path,
            arguments: [
                "listen", "--relay", lab.relayAddress, "--probe", lab.relaySecondAddress, "--node-id", node, "--accept-punch", "--json",
            ],
            name: "listen-\(site.name)")
        XCTAssertNotNil(child.waitForStderrLine(containing: "ready", timeout: 10), "listen did not start:\n\(child.outputTail())", file: file, line: line)
        return (node, child)
    }

    /// Runs `ptpchat punch --json` from `site` to `peer` with `text`; returns its JSON object and
    /// how long the process ran. A process still running after `punchTimeout` is a hung client.
    private func punch(
        from site: NATLab.Site, to peer: String, text: String, _ lab: NATLab, file: StaticString = #filePath, line: UInt = #line
    ) throws -> (report: [String: Any]?, seconds: Double) {
        let started = Date()
        let child = try start(
            in: site.hostNamespace, lab, executable: try Binaries.path("ptpchat").path,
            arguments: [
                "punch", "--relay", lab.relayAddress, "--probe", lab.relaySecondAddress, "--to", peer, "--node-id", Ids.make(), "--json", text,
            ],
            name: "punch-\(site.name)-\(text.filter { $0.isLetter || $0.isNumber })")
        guard let status = child.waitForExit(timeout: punchTimeout) else {
            XCTFail("ptpchat punch from \(site.name) still runs after \(punchTimeout) s: hung", file: file, line: line)
            return (nil, punchTimeout)
        }
        let seconds = Date().timeIntervalSince(started)
        XCTAssertEqual(status, 0, "ptpchat punch from \(site.name) failed:\n\(child.outputTail())", file: file, line: line)
        return (jsonLines(child).last, seconds)
    }

    /// The message line the responder printed for `text`, once it has.
    private func delivered(_ text: String, at responder: ChildProcess, file: StaticString = #filePath, line: UInt = #line) -> [String: Any]? {
        waitForJSON(responder, timeout: 10, file: file, line: line) { $0["text"] as? String == text }
    }

    private func assertEndpointIndependentPairsGoDirect(behaviour: NATLab.Behaviour, file: StaticString = #filePath, line: UInt = #line) throws {
        let lab = try makeLab([
            ("cone1", .cone, behaviour), ("cone2", .cone, behaviour), ("restricted1", .portRestricted, behaviour),
            ("restricted2", .portRestricted, behaviour),
        ])
        try startRelay(in: lab)
        var responders: [String: (node: String, child: ChildProcess)] = [:]
        for name in ["cone2", "restricted2"] {
            responders[name] = try startResponder(on: try lab.site(name), lab, file: file, line: line)
        }
        for from in ["cone1", "restricted1"] {
            for to in ["cone2", "restricted2"] {
                let source = try lab.site(from), target = try lab.site(to)
                let responder = try XCTUnwrap(responders[to], file: file, line: line)
                let text = "hello from \(from) to \(to)"
                let (report, _) = try punch(from: source, to: responder.node, text: text, lab, file: file, line: line)
                let pair = "\(from) to \(to) behind \(behaviour) routers"
                XCTAssertEqual(report?["result"] as? String, "direct", "\(pair): \(String(describing: report))", file: file, line: line)
                XCTAssertEqual(report?["nat"] as? String, "endpoint-independent", pair, file: file, line: line)
                let observed = report?["observed"] as? String ?? ""
                XCTAssertTrue(observed.hasPrefix(source.publicIP + ":"), "\(pair): observed \(observed), not the NAT's address", file: file, line: line)
                let dialed = report?["peer"] as? String ?? ""
                XCTAssertTrue(dialed.hasPrefix(target.publicIP + ":"), "\(pair): dialed \(dialed), not the peer NAT's address", file: file, line: line)
                XCTAssertGreaterThanOrEqual(report?["attempts"] as? Int ?? 0, 1, pair, file: file, line: line)
                XCTAssertNotNil(report?["time_to_direct_ms"] as? Int, pair, file: file, line: line)
                // The relay's hint is its kernel's smoothed RTT to each node: 40 ms through the
                // 20 ms each-way router, plus a little (the kernel's srtt never goes below it).
                let hint = report?["rtt_hint_ms"] as? Int ?? 0
                XCTAssertTrue((40...100).contains(hint), "\(pair): RTT hint \(hint) ms, not the lab's 40 ms round trip", file: file, line: line)
                let message = delivered(text, at: responder.child, file: file, line: line)
                XCTAssertEqual(message?["path"] as? String, "direct", "\(pair): the message went \(String(describing: message))", file: file, line: line)
            }
        }
    }

    /// Behind a symmetric NAT on the initiator's side the punch is not tried (the two relay ports
    /// saw two ports); behind one on the responder's side the responder found out at start (its
    /// own `--probe`) and says so in step 3, and the initiator does not dial either. Both end on the
    /// relay within 5 s, the message reaches the responder through the relay, and nothing hangs.
    private func assertSymmetricStaysOnRelay(behaviour: NATLab.Behaviour, file: StaticString = #filePath, line: UInt = #line) throws {
        let lab = try makeLab([
            ("symmetric1", .symmetric, behaviour), ("restricted2", .portRestricted, behaviour), ("restricted1", .portRestricted, behaviour),
            ("symmetric2", .symmetric, behaviour),
        ])
        try startRelay(in: lab)
        let behindRestricted = try startResponder(on: try lab.site("restricted2"), lab, file: file, line: line)
        let behindSymmetric = try startResponder(on: try lab.site("symmetric2"), lab, file: file, line: line)

        let fromSymmetric = "from behind a symmetric NAT (\(behaviour))"
        let (report, seconds) = try punch(from: try lab.site("symmetric1"), to: behindRestricted.node, text: "s1", lab, file: file, line: line)
        XCTAssertEqual(report?["result"] as? String, "relay", "\(fromSymmetric): \(String(describing: report))", file: file, line: line)
        XCTAssertEqual(report?["nat"] as? String, "symmetric", fromSymmetric, file: file, line: line)
        XCTAssertLessThan(seconds, 5, "\(fromSymmetric): on the relay within 5 s", file: file, line: line)
        XCTAssertEqual(delivered("s1", at: behindRestricted.child, file: file, line: line)?["path"] as? String, "relay", fromSymmetric, file: file, line: line)

        let toSymmetric = "to a node behind a symmetric NAT (\(behaviour))"
        let (second, secondSeconds) = try punch(from: try lab.site("restricted1"), to: behindSymmetric.node, text: "s2", lab, file: file, line: line)
        XCTAssertEqual(second?["result"] as? String, "relay", "\(toSymmetric): \(String(describing: second))", file: file, line: line)
        XCTAssertEqual(second?["peer_nat"] as? String, "symmetric", "\(toSymmetric): the responder probed and said so", file: file, line: line)
        XCTAssertEqual(second?["attempts"] as? Int, 0, "\(toSymmetric): no dial toward a symmetric NAT", file: file, line: line)
        XCTAssertLessThan(secondSeconds, 5, "\(toSymmetric): on the relay within 5 s", file: file, line: line)
        XCTAssertEqual(delivered("s2", at: behindSymmetric.child, file: file, line: line)?["path"] as? String, "relay", toSymmetric, file: file, line: line)
    }
}
