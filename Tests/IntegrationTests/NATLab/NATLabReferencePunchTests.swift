import Foundation
import XCTest

/// Hole punching through the lab with the reference client (lab/refpunch.py): proof that the lab
/// and the relay allow it, independent of `ptpchat punch` (NATLabPunchTests tests the product).
final class NATLabReferencePunchTests: NATLabTestCase {
    func testReferencePunchGoesDirectBetweenEndpointIndependentNATsBehindRSTRouters() throws {
        try assertEndpointIndependentPairsGoDirect(behaviour: .rst)
    }

    func testReferencePunchGoesDirectBetweenEndpointIndependentNATsBehindDroppingRouters() throws {
        try assertEndpointIndependentPairsGoDirect(behaviour: .drop)
    }

    /// Every pair of endpoint-independent kinds (cone and port-restricted, each way) punches
    /// through to a direct connection on which the two reference clients exchange HELLOs.
    private func assertEndpointIndependentPairsGoDirect(behaviour: NATLab.Behaviour, file: StaticString = #filePath, line: UInt = #line) throws {
        let lab = try makeLab([
            ("cone1", .cone, behaviour), ("cone2", .cone, behaviour), ("restricted1", .portRestricted, behaviour),
            ("restricted2", .portRestricted, behaviour),
        ])
        try startRelay(in: lab)
        // Responders behind cone2 and restricted2 serve two punches each.
        var responders: [String: (node: String, child: ChildProcess)] = [:]
        for name in ["cone2", "restricted2"] {
            let node = Ids.make()
            let child = try startReference(
                "respond", ["--relay", lab.relayAddress, "--node-id", node, "--count", "2"], in: try lab.site(name).hostNamespace, lab,
                name: "respond-\(name)")
            XCTAssertNotNil(waitForJSON(child, timeout: 10, file: file, line: line) { $0["ready"] as? Bool == true }, file: file, line: line)
            responders[name] = (node, child)
        }
        for from in ["cone1", "restricted1"] {
            for to in ["cone2", "restricted2"] {
                let responder = try XCTUnwrap(responders[to])
                let outcome = try runReference(
                    "punch",
                    ["--relay", lab.relayAddress, "--probe", lab.relaySecondAddress, "--to", responder.node, "--node-id", Ids.make()],
                    in: try lab.site(from).hostNamespace, lab, name: "punch-\(from)-\(to)", timeout: punchTimeout, file: file, line: line
                ).first
                XCTAssertEqual(outcome?["result"] as? String, "direct", "\(from) to \(to), \(behaviour): \(String(describing: outcome))", file: file, line: line)
                XCTAssertEqual(outcome?["nat"] as? String, "endpoint-independent", file: file, line: line)
                let peer = outcome?["peer"] as? String ?? ""
                XCTAssertTrue(peer.hasPrefix(try lab.site(to).publicIP + ":"), "dialed \(peer): the peer's NAT address", file: file, line: line)
            }
        }
    }

    /// Behind a symmetric router the two relay ports see two different ports: the reference
    /// client says so and stays on the relay within 5 s (it never dials).
    func testReferencePunchDetectsSymmetricNATAndStaysOnTheRelay() throws {
        let lab = try makeLab([("symmetric", .symmetric, .rst), ("restricted", .portRestricted, .drop)])
        try startRelay(in: lab)
        let node = Ids.make()
        let responder = try startReference(
            "respond", ["--relay", lab.relayAddress, "--node-id", node], in: try lab.site("restricted").hostNamespace, lab, name: "respond")
        XCTAssertNotNil(waitForJSON(responder, timeout: 10) { $0["ready"] as? Bool == true })
        let started = Date()
        let outcome = try runReference(
            "punch", ["--relay", lab.relayAddress, "--probe", lab.relaySecondAddress, "--to", node, "--node-id", Ids.make()],
            in: try lab.site("symmetric").hostNamespace, lab, name: "punch", timeout: punchTimeout
        ).first
        XCTAssertEqual(outcome?["result"] as? String, "relay", "\(String(describing: outcome))")
        XCTAssertEqual(outcome?["nat"] as? String, "symmetric")
        XCTAssertEqual(outcome?["attempts"] as? Int, 0, "no dial from behind a symmetric NAT")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
    }
}
