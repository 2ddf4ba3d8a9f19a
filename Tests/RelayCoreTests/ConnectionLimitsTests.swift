import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import RelayMesh
import XCTest

@testable import RelayCore

/// The per-connection limits the shard applies: the HELLO frame cap, `limits.max_frame_bytes`
/// after a reload, CONNECT per node.
final class ConnectionLimitsTests: XCTestCase {
    private static let meshKey = "unit-test-mesh-key-0123456789"
    private static let peerID = "66666666-6666-4666-8666-666666666666"

    private func bigMessage(to recipient: String, bytes: Int) -> String {
        Frames.message(from: Node.a, to: [recipient], id: Node.newID(), text: String(repeating: "A", count: bytes))
    }

    func testAFrameOverTheHelloCapBeforeHelloCloses() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let stranger = relay.connect(label: "stranger")
        XCTAssertEqual(stranger.receive().map(\.type), ["HELLO"])
        // Only the 4 length bytes: the relay refuses before any of the frame is buffered.
        let length = UInt32(FrameCaps.beforeHello + 1)
        stranger.send(bytes: [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)])
        relay.loop.run()
        XCTAssertFalse(stranger.isActive)
        XCTAssertEqual(relay.counters.count(.frameTooLarge), 1)
    }

    func testAHelloUpToTheCapBindsAndLargerFramesPassAfterIt() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let peer = relay.connect(label: "alice")
        _ = peer.receive()
        // A HELLO padded with a long version string to just under the HELLO cap.
        var hello = Frames.hello(Node.a, name: "alice")
        let padding = FrameCaps.beforeHello - hello.utf8.count
        hello = hello.replacingOccurrences(of: "test 1.0", with: "test 1.0" + String(repeating: "x", count: padding))
        XCTAssertEqual(hello.utf8.count, FrameCaps.beforeHello)
        peer.send(hello)
        XCTAssertEqual(peer.receive().first?.type, "ROUTING")
        let bob = relay.client(Node.b, name: "bob")
        peer.send(bigMessage(to: Node.b, bytes: 100_000))
        XCTAssertEqual(bob.receive().map(\.type), ["MESSAGE"])
        XCTAssertTrue(peer.isActive)
        XCTAssertEqual(relay.counters.count(.frameTooLarge), 0)
    }

    func testAReloadLoweringMaxFrameBytesAppliesToAnOpenConnection() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        alice.send(bigMessage(to: Node.b, bytes: 20_000))
        XCTAssertEqual(bob.receive().map(\.type), ["MESSAGE"])
        var lowered = relay.configuration
        lowered.limits.maxFrameBytes = 8192
        relay.context.apply(lowered)
        relay.shard.apply(lowered)
        alice.send(bigMessage(to: Node.b, bytes: 9000))
        relay.loop.run()
        XCTAssertFalse(alice.isActive, "the next frame over the new cap closes the open connection")
        XCTAssertEqual(relay.counters.count(.frameTooLarge), 1)
        bob.expectNothing()
    }

    func testAReloadRaisingMaxFrameBytesKeepsTheHelloCapBeforeHello() {
        let relay = TestRelay { $0.limits.maxFrameBytes = 4096 }
        defer { relay.shutdown() }
        let early = relay.connect(label: "early")
        _ = early.receive()
        var raised = relay.configuration
        raised.limits.maxFrameBytes = 0
        relay.context.apply(raised)
        relay.shard.apply(raised)
        let length = UInt32(FrameCaps.beforeHello + 1)
        early.send(bytes: [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)])
        relay.loop.run()
        XCTAssertFalse(early.isActive, "unlimited after the HELLO, still the HELLO cap before it")
    }

    func testConnectOverThePerMinuteBudgetIsNackedAndNeverForwarded() {
        let relay = TestRelay { $0.limits.connectPerMinute = 3 }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        var refusedIDs: [String] = []
        for index in 0..<5 {
            let id = Node.newID()
            if index >= 3 { refusedIDs.append(id) }
            alice.send(Frames.connect(src: ":4000\(index)", dst: nil, srcNode: Node.a, dstNode: Node.b, msgID: id))
        }
        XCTAssertEqual(bob.receive().map(\.type), ["CONNECT", "CONNECT", "CONNECT"])
        let nacks = alice.receive()
        XCTAssertEqual(nacks.map(\.type), ["NACK", "NACK"])
        XCTAssertEqual(nacks.map(\.reason), ["rate_limited", "rate_limited"])
        XCTAssertEqual(nacks.map(\.dataMsgID), refusedIDs)
        XCTAssertEqual(relay.counters.count(.connectRate), 2)
        XCTAssertEqual(relay.counters.relayed(.connect), 3)
        // Bob's budget is his own.
        bob.send(Frames.connect(src: "1.2.3.4:1", dst: "5.6.7.8:2", srcNode: Node.a, dstNode: Node.b))
        XCTAssertEqual(alice.receive().map(\.type), ["CONNECT"])
    }

    func testAReloadChangesTheConnectBudgetOfAnOpenConnection() {
        // The per-node budget alone: the pair's own limit (limits.connect_pair_per_minute) off.
        let relay = TestRelay {
            $0.limits.connectPerMinute = 1
            $0.limits.connectPairPerMinute = 0
        }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        alice.send(Frames.connect(src: ":40000", dst: nil, srcNode: Node.a, dstNode: Node.b))
        alice.send(Frames.connect(src: ":40001", dst: nil, srcNode: Node.a, dstNode: Node.b))
        XCTAssertEqual(bob.receive().count, 1)
        var unlimited = relay.configuration
        unlimited.limits.connectPerMinute = 0
        relay.context.apply(unlimited)
        relay.shard.apply(unlimited)
        for port in 0..<20 {
            alice.send(Frames.connect(src: ":\(41000 + port)", dst: nil, srcNode: Node.a, dstNode: Node.b))
        }
        XCTAssertEqual(bob.receive().count, 20)
        XCTAssertEqual(relay.counters.count(.connectRate), 1)
    }

    func testAProvenPeerRelayIsExemptFromTheNodeRateLimitsAClientIsNot() throws {
        let (meshKey, peerID) = (Self.meshKey, Self.peerID)
        let relay = TestRelay {
            $0.mesh.key = meshKey
            $0.limits.nodeMessagesPerSecond = 1
            $0.limits.nodeMessagesBurst = 2
        }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        for _ in 0..<5 { alice.send(Frames.message(from: Node.a, to: [Node.b], id: Node.newID())) }
        alice.channel.read()
        XCTAssertEqual(relay.counters.count(.throttled), 1, "a client over its budget is throttled")

        let peer = try relay.provenPeer(key: meshKey, id: peerID)
        XCTAssertTrue(relay.context.mesh.isConnected(Node.guid(peerID)), "the peer proved itself")
        // ACKs for nothing: harmless from a peer (counted `unknown_ack`), and frames all the same.
        for _ in 0..<40 {
            peer.send(
                #"{"msg_type":"ACK","ttl":1,"flood":false,"msg_id":"\#(Node.newID())","sender_id":"peer@\#(peerID)","msg_data":{"node_id":"\#(peerID)","msg_id":"\#(Node.newID())"}}"#)
        }
        peer.channel.read()
        XCTAssertEqual(relay.counters.count(.throttled), 1, "the proven peer was not throttled")
        XCTAssertTrue(peer.isActive)
    }

    func testAnswersAreNotChargedToTheMessageBudget() {
        let relay = TestRelay {
            $0.limits.nodeMessagesPerSecond = 1
            $0.limits.nodeMessagesBurst = 2
        }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        // ACKs (here for nothing: counted `unknown_ack`) answer what the relay sends, at its pace.
        for _ in 0..<20 { alice.send(Frames.ack(Node.newID())) }
        alice.channel.read()
        XCTAssertEqual(relay.counters.count(.unknownAck), 20)
        XCTAssertEqual(relay.counters.count(.throttled), 0, "answers were charged to the message budget")
        // Messages are.
        for _ in 0..<5 { alice.send(Frames.message(from: Node.a, to: [Node.b], id: Node.newID())) }
        alice.channel.read()
        XCTAssertEqual(relay.counters.count(.throttled), 1)
    }

    func testAReloadAppliesTheNodeRateLimitsToAnOpenConnection() throws {
        let relay = TestRelay {
            $0.limits.nodeMessagesPerSecond = 0
            $0.limits.nodeBytesPerSecond = 0
        }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        XCTAssertFalse(hasRateLimiter(alice), "a budget that is off is not in the pipeline")
        for _ in 0..<50 { alice.send(Frames.message(from: Node.a, to: [Node.b], id: Node.newID())) }
        alice.channel.read()
        XCTAssertEqual(relay.counters.count(.throttled), 0, "unlimited")
        var limited = relay.configuration
        limited.limits.nodeMessagesPerSecond = 1
        limited.limits.nodeMessagesBurst = 2
        relay.context.apply(limited)
        relay.shard.apply(limited)
        XCTAssertTrue(hasRateLimiter(alice), "the reload put a budget on the open connection")
        for _ in 0..<5 { alice.send(Frames.message(from: Node.a, to: [Node.b], id: Node.newID())) }
        alice.channel.read()
        XCTAssertEqual(relay.counters.count(.throttled), 1, "the reloaded budget applies to the open connection")
        XCTAssertEqual(relay.logs.count(.debug, "reading paused"), 1)
        // Another reload of the limits adds no second one; one that turns the budget off leaves it,
        // holding no read.
        limited.limits.nodeMessagesBurst = 3
        relay.context.apply(limited)
        relay.shard.apply(limited)
        var unlimited = limited
        unlimited.limits.nodeMessagesPerSecond = 0
        unlimited.limits.nodeBytesPerSecond = 0
        relay.context.apply(unlimited)
        relay.shard.apply(unlimited)
        relay.loop.advanceTime(by: .seconds(5))
        for _ in 0..<50 { alice.send(Frames.message(from: Node.a, to: [Node.b], id: Node.newID())) }
        alice.channel.read()
        XCTAssertEqual(relay.counters.count(.throttled), 1, "a budget turned off holds no read")
        // A second one would sit after the first, and the connection handler would count to it.
        let first = try alice.channel.pipeline.syncOperations.handler(type: NodeRateLimiter.self)
        let handler = try alice.channel.pipeline.syncOperations.handler(type: ConnectionHandler.self)
        XCTAssertTrue(handler.rateLimiter === first, "one budget, not two")
    }

    /// A pipeline made while the budget was off, activated after a reload turned it on (a dialed
    /// connection's TCP connect can take that long): it gets the budget at open.
    func testAConnectionActivatedAfterAReloadTurnedTheBudgetOnGetsIt() throws {
        let relay = TestRelay {
            $0.limits.nodeMessagesPerSecond = 0
            $0.limits.nodeBytesPerSecond = 0
        }
        defer { relay.shutdown() }
        let channel = EmbeddedChannel(
            handlers: [ConnectionHandler(shard: relay.shard, maxFrameBytes: 0)], loop: relay.loop)
        defer { _ = try? channel.finish() }
        XCTAssertNil(try? channel.pipeline.syncOperations.handler(type: NodeRateLimiter.self))
        var limited = relay.configuration
        limited.limits.nodeMessagesPerSecond = 1
        limited.limits.nodeMessagesBurst = 2
        relay.context.apply(limited)
        relay.shard.apply(limited)
        let address = try SocketAddress(ipAddress: "192.0.2.10", port: 50999)
        channel.remoteAddress = address
        try channel.connect(to: address).wait()
        let limiter = try channel.pipeline.syncOperations.handler(type: NodeRateLimiter.self)
        let handler = try channel.pipeline.syncOperations.handler(type: ConnectionHandler.self)
        XCTAssertTrue(handler.rateLimiter === limiter, "the connection handler counts its frames to it")
    }

    func testAReloadTurningTheNodeRateLimitsOnLeavesAProvenPeerWithout() throws {
        let meshKey = Self.meshKey
        let relay = TestRelay {
            $0.mesh.key = meshKey
            $0.limits.nodeMessagesPerSecond = 0
            $0.limits.nodeBytesPerSecond = 0
        }
        defer { relay.shutdown() }
        let peer = try relay.provenPeer(key: meshKey, id: Self.peerID)
        let alice = relay.client(Node.a, name: "alice")
        var limited = relay.configuration
        limited.limits.nodeMessagesPerSecond = 1
        limited.limits.nodeMessagesBurst = 2
        relay.context.apply(limited)
        relay.shard.apply(limited)
        XCTAssertTrue(hasRateLimiter(alice))
        XCTAssertFalse(hasRateLimiter(peer), "a proven peer relay is exempt")
        // A connection opened after the reload has one from the start.
        let bob = relay.client(Node.b, name: "bob")
        XCTAssertTrue(hasRateLimiter(bob))
    }

    private func hasRateLimiter(_ peer: Peer) -> Bool {
        (try? peer.channel.pipeline.syncOperations.handler(type: NodeRateLimiter.self)) != nil
    }
}
