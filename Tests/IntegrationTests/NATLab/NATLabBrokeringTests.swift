import Foundation
import XCTest

/// The lab itself (delay, router behaviours, mappings) and the relay's CONNECT brokering across
/// real kernel NAT (PROFILE.md section 8), driven by the reference client lab/refpunch.py so that
/// every frame is exactly the one the test means to send.
final class NATLabBrokeringTests: NATLabTestCase {
    /// The lab is what it claims: 20 ms each way through the internet router (a TCP handshake to
    /// the relay takes one round trip, 40 ms and a little), an RST router refuses an unsolicited
    /// SYN at once, a dropping router never answers, and a full-cone router lets a SYN from
    /// anyone through to the host behind it once that host has used the port.
    func testTheLabDelaysTwentyMillisecondsEachWayAndItsRoutersTreatUnsolicitedSYNsAsBuilt() throws {
        let lab = try makeLab([("rst", .portRestricted, .rst), ("drop", .portRestricted, .drop), ("cone", .cone, .drop)])
        let relay = try startReference("tcp-listen", ["--port", "7000"], in: lab.relayNamespace, lab, name: "listener")
        XCTAssertNotNil(waitForJSON(relay, timeout: 10) { $0["ready"] as? Bool == true })
        let rst = try lab.site("rst"), drop = try lab.site("drop"), cone = try lab.site("cone")

        // Three handshakes (the first one also resolves neighbours): the best shows the delay.
        let handshakes = try (0..<3).compactMap { index in
            try runReference("tcp-probe", ["--to", "\(lab.relayIP):7000"], in: rst.hostNamespace, lab, name: "rtt\(index)").first
        }
        XCTAssertTrue(handshakes.allSatisfy { $0["outcome"] as? String == "connected" }, "\(handshakes)")
        let best = handshakes.compactMap { $0["ms"] as? Double }.min() ?? 0
        XCTAssertGreaterThanOrEqual(best, 40, "a handshake is one round trip through the 20 ms each-way router")
        XCTAssertLessThan(best, 100, "the delaying reader adds far more than 20 ms each way")

        let refused = try runReference("tcp-probe", ["--to", "\(rst.publicIP):4444"], in: lab.relayNamespace, lab, name: "to-rst").first
        XCTAssertEqual(refused?["outcome"] as? String, "refused", "a router with no firewall answers RST")
        let dropped = try runReference(
            "tcp-probe", ["--to", "\(drop.publicIP):4444", "--timeout", "0.5"], in: lab.relayNamespace, lab, name: "to-drop"
        ).first
        XCTAssertEqual(dropped?["outcome"] as? String, "timeout", "a dropping router never answers")

        // Full cone: once the host behind it has used port 5555 (to the relay), a SYN from any
        // other address reaches the host (which listens there).
        let coneListener = try startReference("tcp-listen", ["--port", "5555"], in: cone.hostNamespace, lab, name: "cone-listener")
        XCTAssertNotNil(waitForJSON(coneListener, timeout: 10) { $0["ready"] as? Bool == true })
        let beforeUse = try runReference(
            "tcp-probe", ["--to", "\(cone.publicIP):5555", "--timeout", "0.5"], in: lab.relayNamespace, lab, name: "cone-before"
        ).first
        XCTAssertEqual(beforeUse?["outcome"] as? String, "timeout", "no mapping yet: dropped")
        try startRelay(in: lab)
        let used = try runReference("discover", ["--relay", lab.relayAddress, "--local-port", "5555"], in: cone.hostNamespace, lab, name: "use")
        XCTAssertEqual(used.first?["observed"] as? String, "\(cone.publicIP):5555")
        let afterUse = try runReference("tcp-probe", ["--to", "\(cone.publicIP):5555"], in: lab.relayNamespace, lab, name: "cone-after").first
        XCTAssertEqual(afterUse?["outcome"] as? String, "connected", "a full-cone router admits anyone to a used port")
    }

    /// Address discovery (a CONNECT to the relay's own id) answers with the NAT's public address.
    /// Behind endpoint-independent routers the port is the host's own (masquerade keeps it) and
    /// the same to both relay ports; behind a symmetric router the two relay ports see two
    /// different ports of the same public address: how a client tells the kinds apart.
    func testDiscoveryAnswersWithTheNATsPublicAddressAndTellsSymmetricNATApart() throws {
        let lab = try makeLab([("cone", .cone, .rst), ("restricted", .portRestricted, .drop), ("symmetric", .symmetric, .rst)])
        try startRelay(in: lab)
        for name in ["cone", "restricted", "symmetric"] {
            let site = try lab.site(name)
            let found = try runReference(
                "discover", ["--relay", lab.relayAddress, "--also", lab.relaySecondAddress], in: site.hostNamespace, lab, name: "discover-\(name)"
            ).first
            let observed = try XCTUnwrap(found?["observed"] as? String, "\(name): \(String(describing: found))")
            let also = try XCTUnwrap(found?["observed_also"] as? String, "\(name): \(String(describing: found))")
            let localPort = try XCTUnwrap(found?["local_port"] as? Int)
            XCTAssertEqual(observed.split(separator: ":").first.map(String.init), site.publicIP, "\(name): the relay sees the NAT, not \(site.hostIP)")
            XCTAssertEqual(also.split(separator: ":").first.map(String.init), site.publicIP, name)
            if site.kind == .symmetric {
                XCTAssertNotEqual(observed, also, "\(name): a symmetric NAT maps each destination to its own port")
            } else {
                XCTAssertEqual(observed, "\(site.publicIP):\(localPort)", "\(name): masquerade keeps the host's port")
                XCTAssertEqual(observed, also, "\(name): one mapping whatever the destination")
            }
        }
    }

    /// Step 1 from behind one NAT reaches the node behind the other with `src` = the first NAT's
    /// public address and the port the node gave; step 3 comes back with `dst` = the second NAT's
    /// public address and its node's port. The relay writes only addresses it observed.
    func testCONNECTAcrossTwoNATsCarriesEachNATsPublicAddressWithThePortTheNodeGave() throws {
        try assertBrokering(step1Source: ":40000", step3Destination: ":50000")
    }

    /// The same with forged addresses: a public address that is not the sender's in step 1, and
    /// the responder's private address in step 3. Both are replaced by what the relay observed.
    func testForgedAddressesInCONNECTAreReplacedByTheObservedNATAddresses() throws {
        try assertBrokering(step1Source: "203.0.113.9:40000", step3Destination: "10.2.0.2:50000")
    }

    /// A step 1 whose port is out of range is refused (NACK, never forwarded) and the relay
    /// keeps brokering: the next good CONNECT from the same node goes through.
    func testCONNECTWithABadPortIsRefusedAndTheNextOneGoesThrough() throws {
        let lab = try makeLab([("a", .portRestricted, .rst), ("b", .portRestricted, .drop)])
        let relay = try startRelay(in: lab)
        let a = try lab.site("a"), b = try lab.site("b")
        let nodeB = Ids.make()
        let responder = try startReference(
            "await-connect", ["--relay", lab.relayAddress, "--node-id", nodeB, "--wait", "10"], in: b.hostNamespace, lab, name: "b")
        XCTAssertNotNil(waitForJSON(responder, timeout: 10) { $0["ready"] as? Bool == true })
        for badSource in [":70000", ":0", "not-an-address"] {
            let refused = try runReference(
                "connect-raw", ["--relay", lab.relayAddress, "--to", nodeB, "--src", badSource, "--wait", "3"], in: a.hostNamespace, lab,
                name: "bad\(badSource.filter { $0.isNumber })"
            ).first?["answer"] as? [String: Any]
            XCTAssertEqual(refused?["msg_type"] as? String, "NACK", "src \(badSource): \(String(describing: refused))")
        }
        XCTAssertTrue(relay.isRunning)
        let good = try runReference(
            "connect-raw", ["--relay", lab.relayAddress, "--to", nodeB, "--src", ":40000", "--wait", "1"], in: a.hostNamespace, lab, name: "good")
        XCTAssertNotNil(good.first)
        let step2 = waitForJSON(responder, timeout: 5) { $0["received"] != nil }?["received"] as? [String: Any]
        XCTAssertEqual((step2?["msg_data"] as? [String: Any])?["src"] as? String, "\(a.publicIP):40000", "only the good CONNECT arrives")
    }

    private func assertBrokering(step1Source: String, step3Destination: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let lab = try makeLab([("a", .portRestricted, .rst), ("b", .portRestricted, .drop)])
        try startRelay(in: lab)
        let a = try lab.site("a"), b = try lab.site("b")
        let nodeA = Ids.make(), nodeB = Ids.make()
        let responder = try startReference(
            "await-connect", ["--relay", lab.relayAddress, "--node-id", nodeB, "--reply-dst", step3Destination], in: b.hostNamespace, lab,
            name: "b")
        XCTAssertNotNil(waitForJSON(responder, timeout: 10, file: file, line: line) { $0["ready"] as? Bool == true }, file: file, line: line)
        let initiator = try runReference(
            "connect-raw", ["--relay", lab.relayAddress, "--node-id", nodeA, "--to", nodeB, "--src", step1Source, "--wait", "5"],
            in: a.hostNamespace, lab, name: "a", file: file, line: line)

        let step2 = waitForJSON(responder, timeout: 5, file: file, line: line) { $0["received"] != nil }?["received"] as? [String: Any]
        let step2Data = step2?["msg_data"] as? [String: Any]
        XCTAssertEqual(step2Data?["src"] as? String, "\(a.publicIP):40000", "step 2 src", file: file, line: line)
        XCTAssertEqual(step2Data?["src_node_id"] as? String, nodeA, file: file, line: line)
        XCTAssertEqual(step2Data?["dst_node_id"] as? String, nodeB, file: file, line: line)

        let step4 = initiator.first?["answer"] as? [String: Any]
        XCTAssertEqual(step4?["msg_type"] as? String, "CONNECT", "step 4: \(String(describing: step4))", file: file, line: line)
        let step4Data = step4?["msg_data"] as? [String: Any]
        XCTAssertEqual(step4Data?["dst"] as? String, "\(b.publicIP):50000", "step 4 dst", file: file, line: line)
        XCTAssertEqual(step4Data?["src"] as? String, "\(a.publicIP):40000", "step 4 src as step 2 carried it", file: file, line: line)
    }
}
