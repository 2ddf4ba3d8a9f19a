import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import XCTest

@testable import RelayCore

final class ConnectTests: XCTestCase {
    func testRendezvousFillsObservedAddresses() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice", ip: "192.0.2.10", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob", ip: "2001:db8::7", existingClientStyle: true)

        // Step 1 as the existing client sends it: dst null, src ":port", sender null, zero id.
        alice.send(Frames.connect(src: ":34567", dst: nil, srcNode: Node.a, dstNode: Node.b))
        guard let step2 = bob.receiveOne() else { return }
        XCTAssertEqual(step2.type, "CONNECT")
        XCTAssertEqual(step2.data["src"] as? String, "192.0.2.10:34567")
        XCTAssertTrue(step2.data["dst"] is NSNull || (step2.data["dst"] as? String) == "")
        XCTAssertEqual(step2.data["src_node_id"] as? String, Node.a)
        XCTAssertEqual(step2.data["dst_node_id"] as? String, Node.b)
        XCTAssertEqual(step2.ttl, 31)
        XCTAssertEqual(step2.sender, "alice@\(Node.a)")
        alice.expectNothing()

        // Step 3 from Bob: dst a port, src as received (an IP inside a port field is replaced).
        bob.send(Frames.connect(src: "192.0.2.10:34567", dst: "6.6.6.6:40000", srcNode: Node.a, dstNode: "bob@\(Node.b)"))
        guard let step4 = alice.receiveOne() else { return }
        XCTAssertEqual(step4.type, "CONNECT")
        XCTAssertEqual(step4.data["src"] as? String, "192.0.2.10:34567")
        XCTAssertEqual(step4.data["dst"] as? String, "[2001:db8::7]:40000")
        XCTAssertEqual(step4.data["dst_node_id"] as? String, Node.b, "node ids inside CONNECT are bare GUIDs")
        XCTAssertEqual(step4.data["src_node_id"] as? String, Node.a)
        bob.expectNothing()
        XCTAssertEqual(relay.counters.relayed(.connect), 2)
    }

    func testStepOneIPReplaced() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice", ip: "198.51.100.4")
        let bob = relay.client(Node.b, name: "bob")
        alice.send(Frames.connect(src: "10.0.0.1:40000", dst: "", srcNode: Node.a, dstNode: Node.b))
        XCTAssertEqual(bob.receiveOne()?.data["src"] as? String, "198.51.100.4:40000")
        alice.send(Frames.connect(src: "40001", dst: nil, srcNode: Node.a, dstNode: Node.b))
        XCTAssertEqual(bob.receiveOne()?.data["src"] as? String, "198.51.100.4:40001")
    }

    func testBadPortRefused() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        for port in [":0", ":65536", "abc", ":"] {
            let id = Node.newID()
            alice.send(Frames.connect(src: port, dst: nil, srcNode: Node.a, dstNode: Node.b, msgID: id))
            guard let nack = alice.receiveOne() else { continue }
            XCTAssertEqual(nack.reason, "invalid", port)
            XCTAssertEqual(nack.dataMsgID, id, port)
        }
        bob.expectNothing()
    }

    func testConnectToUnknownNodeNacked() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        alice.send(Frames.connect(src: ":40000", dst: nil, srcNode: Node.a, dstNode: Node.x, msgID: id))
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "unreachable")
        XCTAssertEqual(nack.dataMsgID, id)
        XCTAssertEqual(relay.counters.count(DropReason.unreachable), 1)
    }

    func testConnectSpoofed() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        // Step 1 from Alice claiming to be Carol.
        let id = Node.newID()
        alice.send(Frames.connect(src: ":40000", dst: nil, srcNode: Node.c, dstNode: Node.b, msgID: id))
        XCTAssertEqual(alice.receiveOne()?.reason, "spoofed_sender")
        bob.expectNothing()
        carol.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.spoofedSender), 1)
    }

    func testAddressDiscovery() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let peer = relay.connect(label: "alice", ip: "203.0.113.5", port: 61000)
        _ = peer.receive()
        peer.send(Frames.hello(Node.a, name: "alice"))
        _ = peer.receive()
        peer.send(Frames.connect(src: ":1", dst: nil, srcNode: Node.a, dstNode: Node.relay))
        guard let answer = peer.receiveOne() else { return }
        XCTAssertEqual(answer.type, "CONNECT")
        XCTAssertEqual(answer.data["src"] as? String, "203.0.113.5:61000")
        XCTAssertEqual(answer.sender, "relay@\(Node.relay)")
    }

    // MARK: Address discovery (issue 11)

    /// A CONNECT to the relay's own id from `node` with `srcMember` as the raw `src` member (nil:
    /// no `src` at all).
    private func discovery(from node: String, srcMember: String?, msgID: String = Node.newID()) -> String {
        let src = srcMember.map { #","src":\#($0)"# } ?? ""
        return #"{"msg_type":"CONNECT","msg_data":{"src_node_id":"\#(node)","dst_node_id":"\#(Node.relay)"\#(src),"dst":null},"flood":false,"msg_id":"\#(msgID)","ttl":32,"sender_id":null,"target_id":null}"#
    }

    /// PROFILE.md section 8 asks for no port in a discovery: `src` empty, null or missing (and a
    /// port, which is not used) all get the observed IP and TCP source port back.
    func testAddressDiscoveryWithSrcEmptyNullMissingOrAPort() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let forms: [String?] = [#""""#, "null", nil, #"":40000""#]
        for (index, form) in forms.enumerated() {
            let node = Node.newID()
            let peer = relay.client(node, name: "n\(index)", ip: "203.0.113.5")
            let port = peer.channel.remoteAddress?.port
            peer.send(discovery(from: node, srcMember: form))
            guard let answer = peer.receiveOne() else { continue }
            XCTAssertEqual(answer.type, "CONNECT", "\(form ?? "missing")")
            XCTAssertEqual(answer.data["src"] as? String, "203.0.113.5:\(port ?? -1)", "\(form ?? "missing")")
            XCTAssertTrue(answer.data["dst"] is NSNull, "\(form ?? "missing")")
            XCTAssertEqual(answer.data["src_node_id"] as? String, node)
            XCTAssertEqual(answer.data["dst_node_id"] as? String, Node.relay)
            XCTAssertEqual(answer.sender, "relay@\(Node.relay)")
        }
        XCTAssertEqual(relay.counters.connectDiscoveries, forms.count)
        XCTAssertEqual(relay.counters.connectsBrokered, 0)
        XCTAssertEqual(relay.counters.count(DropReason.invalid), 0)
    }

    func testAddressDiscoveryWritesAnIPv4ClientOnADualStackListenerAsPlainIPv4() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let peer = relay.client(Node.a, name: "alice", ip: "::ffff:198.18.1.2")
        let port = peer.channel.remoteAddress?.port ?? -1
        peer.send(discovery(from: Node.a, srcMember: nil))
        XCTAssertEqual(peer.receiveOne()?.data["src"] as? String, "198.18.1.2:\(port)")
    }

    func testAddressDiscoveryWithAGarbageSrcIsRefused() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let peer = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        peer.send(discovery(from: Node.a, srcMember: #""abc""#, msgID: id))
        guard let nack = peer.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "invalid")
        XCTAssertEqual(nack.dataMsgID, id)
        XCTAssertEqual(relay.counters.connectDiscoveries, 0)
        XCTAssertEqual(relay.counters.count(DropReason.invalid), 1)
    }

    func testRendezvousWritesIPv4ClientsOfADualStackListenerAsPlainIPv4() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice", ip: "::ffff:198.18.1.2")
        let bob = relay.client(Node.b, name: "bob", ip: "::FFFF:198.18.2.3")
        alice.send(Frames.connect(src: ":40000", dst: nil, srcNode: Node.a, dstNode: Node.b))
        XCTAssertEqual(bob.receiveOne()?.data["src"] as? String, "198.18.1.2:40000")
        bob.send(Frames.connect(src: "198.18.1.2:40000", dst: ":40001", srcNode: Node.a, dstNode: Node.b))
        XCTAssertEqual(alice.receiveOne()?.data["dst"] as? String, "198.18.2.3:40001")
        XCTAssertEqual(relay.counters.connectsBrokered, 2)
    }

    // MARK: Outcome reports

    private func report(from node: String, result: String, reason: String? = nil, msgID: String) -> String {
        let reasonMember = reason.map { #","reason":"\#($0)""# } ?? ""
        return #"{"msg_type":"CONNECT","msg_data":{"src_node_id":"\#(node)","dst_node_id":"\#(Node.relay)","src":null,"dst":null,"result":\#(result)\#(reasonMember)},"flood":false,"msg_id":"\#(msgID)","ttl":32,"sender_id":null,"target_id":null}"#
    }

    func testOutcomeReportsAreCountedAckedAndGoNowhere() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let direct = Node.newID()
        alice.send(report(from: Node.a, result: #""direct""#, msgID: direct))
        alice.expectAck(direct)
        let failed = Node.newID()
        alice.send(report(from: Node.a, result: #""failed""#, reason: "timeout", msgID: failed))
        alice.expectAck(failed)
        XCTAssertEqual(relay.counters.punchSucceeded, 1)
        XCTAssertEqual(relay.counters.punchFailed, 1)
        XCTAssertEqual(relay.counters.connectDiscoveries, 0, "a report is answered with no discovery")
        XCTAssertEqual(relay.counters.relayed(.connect), 0)
        bob.expectNothing()
        XCTAssertEqual(relay.logs.count(.debug, "punch outcome reported"), 2)

        for bad in [#""maybe""#, "1", "null"] {
            let id = Node.newID()
            alice.send(report(from: Node.a, result: bad, msgID: id))
            guard let nack = alice.receiveOne() else { continue }
            XCTAssertEqual(nack.type, "NACK", bad)
            XCTAssertEqual(nack.reason, "invalid", bad)
            XCTAssertEqual(nack.dataMsgID, id, bad)
        }
        XCTAssertEqual(relay.counters.punchSucceeded + relay.counters.punchFailed, 2)
        bob.expectNothing()
    }

    func testOutcomeReportInAnotherNodesNameIsSpoofed() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        _ = relay.client(Node.b, name: "bob")
        alice.send(report(from: Node.b, result: #""direct""#, msgID: Node.newID()))
        XCTAssertEqual(alice.receiveOne()?.reason, "spoofed_sender")
        XCTAssertEqual(relay.counters.punchSucceeded, 0)
    }

    // MARK: Per-pair limit

    /// A relay whose only CONNECT limit is `perPair` a minute for each pair of nodes.
    private func pairLimitedRelay(_ perPair: Double) -> TestRelay {
        TestRelay {
            $0.limits.connectPerMinute = 0
            $0.limits.connectPairPerMinute = perPair
        }
    }

    func testPairOverItsBudgetIsNackedRateLimitedInEitherDirection() {
        let relay = pairLimitedRelay(3)
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        alice.send(Frames.connect(src: ":40000", dst: nil, srcNode: Node.a, dstNode: Node.b, msgID: Node.newID()))
        XCTAssertEqual(bob.receiveOne()?.type, "CONNECT")
        bob.send(Frames.connect(src: "192.0.2.10:40000", dst: ":40001", srcNode: Node.a, dstNode: Node.b, msgID: Node.newID()))
        XCTAssertEqual(alice.receiveOne()?.type, "CONNECT")
        alice.send(Frames.connect(src: ":40000", dst: nil, srcNode: Node.a, dstNode: Node.b, msgID: Node.newID()))
        XCTAssertEqual(bob.receiveOne()?.type, "CONNECT")

        // The fourth CONNECT of the pair, from either side, is refused.
        let overA = Node.newID()
        alice.send(Frames.connect(src: ":40000", dst: nil, srcNode: Node.a, dstNode: Node.b, msgID: overA))
        guard let nackA = alice.receiveOne() else { return }
        XCTAssertEqual(nackA.type, "NACK")
        XCTAssertEqual(nackA.reason, "rate_limited")
        XCTAssertEqual(nackA.dataMsgID, overA)
        let overB = Node.newID()
        bob.send(Frames.connect(src: ":40002", dst: nil, srcNode: Node.b, dstNode: Node.a, msgID: overB))
        XCTAssertEqual(bob.receiveOne()?.reason, "rate_limited")
        alice.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.connectPairRate), 2)
        XCTAssertEqual(relay.counters.count(DropReason.connectRate), 0)

        // Another pair has its own budget.
        carol.send(Frames.connect(src: ":40003", dst: nil, srcNode: Node.c, dstNode: Node.b, msgID: Node.newID()))
        XCTAssertEqual(bob.receiveOne()?.data["src_node_id"] as? String, Node.c)
        XCTAssertEqual(relay.counters.connectsBrokered, 4)
    }

    func testAReloadChangesThePairLimitAtOnce() {
        let relay = pairLimitedRelay(1)
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        alice.send(Frames.connect(src: ":40000", dst: nil, srcNode: Node.a, dstNode: Node.b, msgID: Node.newID()))
        XCTAssertEqual(bob.receiveOne()?.type, "CONNECT")
        alice.send(Frames.connect(src: ":40000", dst: nil, srcNode: Node.a, dstNode: Node.b, msgID: Node.newID()))
        XCTAssertEqual(alice.receiveOne()?.reason, "rate_limited")
        var unlimited = relay.configuration
        unlimited.limits.connectPerMinute = 0
        unlimited.limits.connectPairPerMinute = 0
        relay.context.apply(unlimited)
        relay.shard.apply(unlimited)
        for port in 0..<5 {
            alice.send(Frames.connect(src: ":\(41000 + port)", dst: nil, srcNode: Node.a, dstNode: Node.b, msgID: Node.newID()))
        }
        XCTAssertEqual(bob.receive().count, 5)
        XCTAssertEqual(relay.counters.count(DropReason.connectPairRate), 1)
    }

    func testDiscoveryAndReportsDoNotSpendThePairBudget() {
        let relay = pairLimitedRelay(1)
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        for _ in 0..<3 {
            alice.send(discovery(from: Node.a, srcMember: nil))
            XCTAssertEqual(alice.receiveOne()?.type, "CONNECT")
        }
        alice.send(Frames.connect(src: ":40000", dst: nil, srcNode: Node.a, dstNode: Node.b, msgID: Node.newID()))
        XCTAssertEqual(bob.receiveOne()?.type, "CONNECT")
    }

    // MARK: Round-trip hints

    /// Round-trip times by the client's IP, in place of the kernel's (an `EmbeddedChannel` has no
    /// TCP socket).
    /// A target that leaves while the sender's round-trip time is read: the sender still gets
    /// NACK `unreachable`, as for a target that was never there.
    func testATargetThatLeavesDuringTheRoundTripReadIsNackedUnreachable() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let pending = relay.loop.makePromise(of: Int?.self)
        relay.shard.roundTripMillis = { _ in pending.futureResult }
        let id = Node.newID()
        alice.send(Frames.connect(src: ":40000", dst: nil, srcNode: Node.a, dstNode: Node.b, msgID: id))
        bob.close()
        relay.runLoops()
        _ = alice.receive()  // bob's ROUTING withdrawal, if any
        pending.succeed(12)
        relay.runLoops()
        let nack = alice.receive().first { $0.type == "NACK" }
        XCTAssertEqual(nack?.reason, "unreachable")
        XCTAssertEqual(nack?.dataMsgID, id)
        XCTAssertEqual(relay.counters.count(DropReason.unreachable), 1)
    }

    private func fakeRoundTrips(_ relay: TestRelay, _ millis: [String: Int]) {
        for shard in relay.shards {
            shard.roundTripMillis = { connection in
                connection.context.eventLoop.makeSucceededFuture(connection.observedIP.flatMap { millis[$0] })
            }
        }
    }

    private func connectWithHints(src: String?, dst: String?, msgID: String = Node.newID()) -> String {
        func value(_ text: String?) -> String { text.map { "\"\($0)\"" } ?? "null" }
        return #"{"msg_type":"CONNECT","msg_data":{"src_rtt_ms":999,"dst":\#(value(dst)),"dst_node_id":"\#(Node.b)","src":\#(value(src)),"src_node_id":"\#(Node.a)","dst_rtt_ms":-5,"note":{"k":[1,2]}},"flood":false,"msg_id":"\#(msgID)","ttl":32,"sender_id":null,"target_id":null}"#
    }

    private func checkRoundTripHints(shards: Int) throws {
        let relay = TestRelay(shards: shards)
        defer { relay.shutdown() }
        fakeRoundTrips(relay, ["192.0.2.10": 12, "192.0.2.20": 30])
        let alice = relay.client(Node.a, name: "alice", ip: "192.0.2.10", shard: 0)
        let bob = relay.client(Node.b, name: "bob", ip: "192.0.2.20", shard: shards - 1)
        relay.runLoops()
        _ = alice.receive()
        _ = bob.receive()

        // Step 1 carrying forged hints: the relay holds both nodes, so both are its own.
        alice.send(connectWithHints(src: ":40000", dst: nil))
        relay.runLoops()
        let step2 = try XCTUnwrap(bob.receiveOne())
        XCTAssertEqual(step2.data["src"] as? String, "192.0.2.10:40000")
        XCTAssertEqual((step2.data["src_rtt_ms"] as? NSNumber)?.intValue, 12)
        XCTAssertEqual((step2.data["dst_rtt_ms"] as? NSNumber)?.intValue, 30)
        XCTAssertEqual(canonical(step2.data["note"] as? [String: Any] ?? [:]), #"{"k":[1,2]}"#, "other members pass as they came")
        XCTAssertEqual(step2.text.components(separatedBy: "rtt_ms").count - 1, 2, "each hint once: \(step2.text)")

        // Step 3: the same on the way back.
        bob.send(connectWithHints(src: "192.0.2.10:40000", dst: ":40001"))
        relay.runLoops()
        let step4 = try XCTUnwrap(alice.receiveOne())
        XCTAssertEqual(step4.data["dst"] as? String, "192.0.2.20:40001")
        XCTAssertEqual((step4.data["src_rtt_ms"] as? NSNumber)?.intValue, 12)
        XCTAssertEqual((step4.data["dst_rtt_ms"] as? NSNumber)?.intValue, 30)
        XCTAssertEqual(relay.shards.map(\.counters.connectsBrokered).reduce(0, +), 2)
        XCTAssertEqual(relay.shards.map { $0.counters.relayed(.connect) }.reduce(0, +), 2)
    }

    func testRoundTripHintsOnOneShard() throws {
        try checkRoundTripHints(shards: 1)
    }

    /// Alice and Bob on two loops: Bob's hint is read on his own shard.
    func testRoundTripHintsAcrossShards() throws {
        try checkRoundTripHints(shards: 2)
    }

    /// Where no round-trip time can be read (no TCP socket here), forged hints are not passed on.
    func testNoRoundTripHintWithoutATCPSocketAndForgedOnesDropped() throws {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        alice.send(connectWithHints(src: ":40000", dst: nil))
        let step2 = try XCTUnwrap(bob.receiveOne())
        XCTAssertNil(step2.data["src_rtt_ms"], step2.text)
        XCTAssertNil(step2.data["dst_rtt_ms"], step2.text)
        XCTAssertNotNil(step2.data["note"])
    }

    /// A CONNECT from a peer relay: the addresses and the hint of the node behind the peer pass
    /// unchanged; this relay adds the hint of its own client.
    func testStepFromAPeerRelayKeepsItsHintAndGetsOursAdded() throws {
        let relay = TestRelay { $0.mesh.key = TestRelay.peerKey }
        defer { relay.shutdown() }
        fakeRoundTrips(relay, ["192.0.2.20": 30, "192.0.2.10": 77])
        let bob = relay.client(Node.b, name: "bob", ip: "192.0.2.20")
        let peer = try relay.provenPeer()
        _ = peer.receive()
        _ = bob.receive()
        peer.send(
            #"{"msg_type":"CONNECT","msg_data":{"src_node_id":"\#(Node.a)","dst_node_id":"\#(Node.b)","src":"198.51.100.9:40000","dst":null,"src_rtt_ms":41,"dst_rtt_ms":5},"flood":false,"msg_id":"\#(Node.newID())","ttl":31,"sender_id":"alice@\#(Node.a)","target_id":null}"#)
        let step2 = try XCTUnwrap(bob.receiveOne())
        XCTAssertEqual(step2.data["src"] as? String, "198.51.100.9:40000")
        XCTAssertEqual((step2.data["src_rtt_ms"] as? NSNumber)?.intValue, 41, "the hint of the node behind the peer, as carried")
        XCTAssertEqual((step2.data["dst_rtt_ms"] as? NSNumber)?.intValue, 30, "its own client's hint")
        XCTAssertEqual(relay.counters.connectsBrokered, 0, "this relay filled no address")
    }
}

// MARK: The per-pair budget, without a relay

final class ConnectPairBudgetsTests: XCTestCase {
    let a = Node.guid(Node.a), b = Node.guid(Node.b), c = Node.guid(Node.c)
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func testBudgetOfAnUnorderedPair() {
        var budgets = ConnectPairBudgets()
        for _ in 0..<2 { XCTAssertTrue(budgets.admit(a, b, perMinute: 4, now: start)) }
        for _ in 0..<2 { XCTAssertTrue(budgets.admit(b, a, perMinute: 4, now: start)) }
        XCTAssertFalse(budgets.admit(a, b, perMinute: 4, now: start))
        XCTAssertFalse(budgets.admit(b, a, perMinute: 4, now: start))
        XCTAssertTrue(budgets.admit(a, c, perMinute: 4, now: start), "another pair")
        XCTAssertEqual(budgets.count, 2)
        // 4 a minute: one more after 15 s.
        XCTAssertTrue(budgets.admit(a, b, perMinute: 4, now: start + .seconds(15)))
        XCTAssertFalse(budgets.admit(a, b, perMinute: 4, now: start + .seconds(15)))
    }

    func testZeroIsUnlimitedAndKeepsNothing() {
        var budgets = ConnectPairBudgets()
        XCTAssertTrue(budgets.admit(a, b, perMinute: 1, now: start))
        for _ in 0..<100 { XCTAssertTrue(budgets.admit(a, b, perMinute: 0, now: start)) }
        XCTAssertEqual(budgets.count, 0)
    }

    func testALowerLimitAppliesAtOnce() {
        var budgets = ConnectPairBudgets()
        XCTAssertTrue(budgets.admit(a, b, perMinute: 10, now: start))
        // 9 of 10 left; a limit of 1 holds at most 1.
        XCTAssertTrue(budgets.admit(a, b, perMinute: 1, now: start))
        XCTAssertFalse(budgets.admit(a, b, perMinute: 1, now: start))
    }

    /// A pair whose budget is full again is forgotten by the next sweep (a minute on), so the
    /// table holds the pairs of the last minute or two, not every pair ever seen.
    func testEntriesExpire() {
        var budgets = ConnectPairBudgets()
        for _ in 0..<1000 { XCTAssertTrue(budgets.admit(GUID.random(), GUID.random(), perMinute: 10, now: start)) }
        XCTAssertEqual(budgets.count, 1000)
        XCTAssertTrue(budgets.admit(a, b, perMinute: 10, now: start + .seconds(59)))
        XCTAssertEqual(budgets.count, 1001, "no sweep within the minute")
        XCTAssertTrue(budgets.admit(a, c, perMinute: 10, now: start + .seconds(61)))
        XCTAssertEqual(budgets.count, 2, "the 1000 are full again and gone; a-b (taken at 59 s) and a-c stay")
    }

    func testManyLivePairsAreSweptBeforeTheMinuteIsOver() {
        var budgets = ConnectPairBudgets()
        let threshold = ConnectPairBudgets.sweepThreshold
        XCTAssertTrue(budgets.admit(a, b, perMinute: 60, now: start))
        // Spread over 10 s, one CONNECT per pair: each is full again 1 s after it was taken.
        let pairs = threshold + 10
        for index in 0..<pairs {
            let now = start + .milliseconds(Int64(index * 10_000 / pairs))
            XCTAssertTrue(budgets.admit(GUID.random(), GUID.random(), perMinute: 60, now: now))
        }
        XCTAssertLessThan(budgets.count, threshold, "a sweep ran when the table passed the threshold")
    }
}
