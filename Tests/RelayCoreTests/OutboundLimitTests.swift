import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import RelayMesh
import XCTest

@testable import RelayCore

/// PROFILE.md section 10: the outbound buffer limits, and the idle and keepalive timeouts, applied
/// to open connections (on reload too). An `EmbeddedChannel` writes at once: a test makes a
/// connection "slow" as NIO would, by clearing `isWritable` and firing the writability event.
final class OutboundLimitTests: XCTestCase {
    /// Two idle sweeps `timeouts.keepalive` apart: every connection gets a keepalive, a flush.
    private func sendKeepalives(_ relay: TestRelay) {
        let start = NIODeadline.now()
        relay.shard.sweepIdle(now: start)
        relay.shard.sweepIdle(now: start + .seconds(26))
        relay.shard.flushAll()
    }

    private func setWritable(_ peer: Peer, _ writable: Bool) {
        peer.channel.isWritable = writable
        peer.channel.pipeline.fireChannelWritabilityChanged()
    }

    func testOverSoftLimitUnicastIsStoredWithSlowConsumerNackAndDeliveredAfterTheDrain() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        setWritable(bob, false)

        let ids = alice.sendMessages(3, from: Node.a, to: Node.b)
        bob.expectNothing()
        let nacks = alice.receive()
        XCTAssertEqual(nacks.map(\.type), ["NACK", "NACK", "NACK"], "\(nacks.map(\.text))")
        for (nack, id) in zip(nacks, ids) {
            XCTAssertEqual(nack.reason, "slow_consumer")
            XCTAssertEqual(nack.data["stored"] as? Bool, true)
            XCTAssertEqual(nack.dataMsgID, id)
            XCTAssertEqual(nack.recipients, [Node.b])
        }
        XCTAssertEqual(relay.offline.messages.map(\.messageID), ids.map(Node.guid))
        XCTAssertEqual(relay.counters.count(DropReason.slowConsumer), 3)
        XCTAssertEqual(relay.counters.count(NackReason.slowConsumer), 3)

        // Drained: the store's backlog goes out in arrival order, as for a reconnecting recipient.
        setWritable(bob, true)
        relay.loop.run()
        let delivered = bob.receive()
        XCTAssertEqual(delivered.map(\.dataMsgID), ids, "\(delivered.map(\.text))")
        for id in ids { bob.send(Frames.ack(id)) }
        relay.loop.run()
        XCTAssertTrue(relay.offline.messages.isEmpty, "ACKed stored messages are deleted")
        // Live messages flow again.
        let next = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: next))
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, next)
    }

    func testFloodsToAConnectionOverItsSoftLimitAreDroppedAndCounted() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        setWritable(bob, false)
        alice.send(Frames.join(from: Node.a, dataID: Node.newID(), headID: Node.newID()))
        XCTAssertEqual(carol.receive().filter { $0.type == "JOIN" }.count, 1, "a well-behaved neighbour still gets the flood")
        bob.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.slowConsumer), 1)
    }

    /// What one tick gathers for a connection counts too: past the soft limit within a tick, the
    /// rest is stored before NIO's water mark sees it.
    func testOutputGatheredInOneTickCountsAgainstTheSoftLimit() {
        let relay = TestRelay { $0.limits.outboundBufferBytes = 1000 }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let ids = (0..<10).map { _ in Node.newID() }
        var burst: [UInt8] = []
        for id in ids { burst += frameBytes(Frames.message(from: Node.a, to: [Node.b], id: id)) }
        alice.send(bytes: burst)
        let delivered = bob.receive().compactMap(\.dataMsgID)
        let nacked = alice.receive().filter { $0.reason == "slow_consumer" }.compactMap(\.dataMsgID)
        XCTAssertFalse(delivered.isEmpty)
        XCTAssertFalse(nacked.isEmpty)
        XCTAssertEqual(Set(delivered + nacked), Set(ids), "each message delivered or stored, none lost")
        XCTAssertTrue(Set(delivered).isDisjoint(with: nacked))
        XCTAssertEqual(relay.offline.messages.map(\.messageID), nacked.map(Node.guid))
    }

    /// A stored backlog larger than the soft limit goes out a soft limit's worth per tick, all of it.
    func testStoredBacklogIsWrittenAsTheOutboundBufferAllows() {
        let relay = TestRelay { $0.limits.outboundBufferBytes = 1000 }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let ids = alice.sendMessages(12, from: Node.a, to: Node.b)
        XCTAssertEqual(relay.offline.messages.count, 12)
        _ = alice.receive()

        let bob = relay.connect(label: "bob")
        _ = bob.receive()
        bob.send(Frames.hello(Node.b, name: "bob"))
        bob.channel.embeddedEventLoop.run()
        var writes: [Int] = []
        var all = ByteBuffer()
        while var buffer = try? bob.channel.readOutbound(as: ByteBuffer.self) {
            writes.append(buffer.readableBytes)
            all.writeBuffer(&buffer)
        }
        XCTAssertGreaterThan(writes.count, 3, "the backlog went out in one write: \(writes)")
        XCTAssertTrue(writes.allSatisfy { $0 < 1000 + 600 }, "a write well past the soft limit: \(writes)")
        // Every stored message arrived, in order, once.
        var delivered: [String] = []
        while let length = all.readInteger(as: UInt32.self), let body = all.readBytes(length: Int(length)) {
            let frame = jsonObject(String(decoding: body, as: UTF8.self))
            if frame["msg_type"] as? String == "MESSAGE", let id = (frame["msg_data"] as? [String: Any])?["msg_id"] as? String {
                delivered.append(id)
            }
        }
        XCTAssertEqual(delivered, ids)
        XCTAssertEqual(relay.counters.storedSent, 12)
        for id in ids { bob.send(Frames.ack(id)) }
        relay.loop.run()
        XCTAssertTrue(relay.offline.messages.isEmpty)
    }

    func testOverHardLimitClosesAndStoresWhatAwaitedItsAck() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let awaited = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: awaited))
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, awaited)

        relay.shard.bufferedBytes = { _ in 5 << 20 }
        setWritable(bob, false)
        // Bob's next flush (here a keepalive) finds 5 MiB unwritten, over the 4 MiB default.
        sendKeepalives(relay)
        relay.loop.run()
        XCTAssertFalse(bob.isActive, "over the hard limit the connection is closed")
        XCTAssertTrue(alice.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.slowConsumer), 1)
        guard let nack = alice.receive().first(where: { $0.type == "NACK" }) else { return XCTFail("no NACK for the awaited message") }
        XCTAssertEqual(nack.dataMsgID, awaited)
        XCTAssertEqual(nack.data["stored"] as? Bool, true)
        XCTAssertEqual(relay.offline.messages.map(\.messageID), [Node.guid(awaited)])
    }

    func testUnderTheHardLimitTheConnectionStays() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        _ = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        relay.shard.bufferedBytes = { _ in 3 << 20 }
        setWritable(bob, false)
        sendKeepalives(relay)
        XCTAssertTrue(bob.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.slowConsumer), 0)
    }

    /// A reload sets the water marks of open connections and the hard limit they are checked
    /// against; the connection is closed at its next flush, not by the reload itself.
    func testReloadAppliesBothLimitsToOpenConnections() throws {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let bob = relay.client(Node.b, name: "bob")
        let initial = try bob.channel.getOption(ChannelOptions.writeBufferWaterMark).wait()
        XCTAssertEqual(initial.high, 1_048_576)
        XCTAssertEqual(initial.low, 524_288)

        var lowered = relay.configuration
        lowered.limits.outboundBufferBytes = 64 * 1024
        lowered.limits.outboundBufferMaxBytes = 256 * 1024
        relay.shard.apply(lowered)
        let mark = try bob.channel.getOption(ChannelOptions.writeBufferWaterMark).wait()
        XCTAssertEqual(mark.high, 64 * 1024)
        XCTAssertEqual(mark.low, 32 * 1024)

        relay.shard.bufferedBytes = { _ in 300 * 1024 }
        setWritable(bob, false)
        XCTAssertTrue(bob.isActive, "lowering a limit never closes a connection by itself")
        sendKeepalives(relay)
        XCTAssertFalse(bob.isActive, "over the reloaded hard limit at its next flush")
    }

    /// A peer relay's link, per next hop: unicast for the nodes behind it is stored (NACK
    /// `slow_consumer`, `stored: true`), floods to it are dropped, and the link stays open; the
    /// stored messages go through it once it drains.
    func testSoftLimitAppliesToAPeerRelayLinkPerNextHop() throws {
        let relay = TestRelay { $0.mesh.key = MeshPeerDefenceTests.key }
        defer { relay.shutdown() }
        let peer = try provenPeer(relay)
        peer.send(
            #"{"msg_type":"ROUTING","ttl":1,"flood":false,"msg_id":"\#(Node.newID())","sender_id":"peer@\#(MeshPeerDefenceTests.peerID)","msg_data":{"node_id":"\#(MeshPeerDefenceTests.peerID)","nodes":[{"node_id":"x@\#(Node.x)","ttl":1,"seq":2}]}}"#)
        XCTAssertNotNil(relay.context.mesh.nextHop(for: Node.guid(Node.x)))
        let alice = relay.client(Node.a, name: "alice")
        _ = peer.receive()
        setWritable(peer, false)

        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: id))
        alice.send(Frames.join(from: Node.a, dataID: Node.newID(), headID: Node.newID()))
        guard let nack = alice.receive().first(where: { $0.type == "NACK" }) else { return XCTFail("no NACK") }
        XCTAssertEqual(nack.reason, "slow_consumer")
        XCTAssertEqual(nack.data["stored"] as? Bool, true)
        XCTAssertEqual(nack.recipients, [Node.x])
        XCTAssertTrue(peer.receive().isEmpty, "nothing for a peer over its soft limit")
        XCTAssertEqual(relay.counters.count(DropReason.slowConsumer), 2, "the stored message and the dropped flood")
        XCTAssertEqual(relay.offline.messages.map(\.recipient), [Node.guid(Node.x)])
        XCTAssertTrue(peer.isActive)

        setWritable(peer, true)
        relay.loop.run()
        XCTAssertEqual(peer.receive().filter { $0.type == "MESSAGE" }.map(\.dataMsgID), [id], "the stored message goes through the drained link")
    }

    private func provenPeer(_ relay: TestRelay) throws -> Peer {
        let peer = try relay.provenPeer(key: MeshPeerDefenceTests.key, id: MeshPeerDefenceTests.peerID)
        XCTAssertTrue(peer.receive().contains { $0.type == "ROUTING" })
        return peer
    }

    func testWaterMarks() {
        func marks(_ limits: RelayConfiguration.Limits) -> [Int] {
            let mark = RelayShard.waterMark(for: limits)
            return [mark.low, mark.high]
        }
        var limits = RelayConfiguration.Limits()
        XCTAssertEqual(marks(limits), [524_288, 1_048_576])
        limits.outboundBufferBytes = 0
        XCTAssertEqual(marks(limits), [2_097_152, 4_194_304], "no soft limit: the hard one")
        limits.outboundBufferMaxBytes = 0
        XCTAssertEqual(marks(limits)[1], Int.max)
        limits.outboundBufferBytes = 1
        XCTAssertEqual(marks(limits), [1, 2])
    }

    // MARK: Idle and keepalive, from the settings in force

    func testIdleSweepSendsKeepalivesAndClosesIdleConnections() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let start = NIODeadline.now()
        relay.shard.sweepIdle(now: start)
        relay.shard.sweepIdle(now: start + .seconds(20))
        relay.shard.flushAll()
        alice.expectNothing()
        XCTAssertEqual(alice.keepalives, 0)
        relay.shard.sweepIdle(now: start + .seconds(26))
        relay.shard.flushAll()
        _ = alice.receive()
        XCTAssertEqual(alice.keepalives, 1, "nothing written for timeouts.keepalive: a keepalive")
        relay.shard.sweepIdle(now: start + .seconds(40))
        relay.shard.flushAll()
        _ = alice.receive()
        XCTAssertEqual(alice.keepalives, 1, "the keepalive counts as written")
        XCTAssertTrue(alice.isActive)
        relay.shard.sweepIdle(now: start + .seconds(91))
        relay.loop.run()
        XCTAssertFalse(alice.isActive, "nothing received for timeouts.idle: closed")
        XCTAssertEqual(relay.counters.count(DropReason.idleTimeout), 1)
        XCTAssertNil(relay.context.registry.lookup(Node.guid(Node.a)), "its binding went with it")
    }

    func testReloadedIdleTimeoutAppliesToOpenConnections() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let start = NIODeadline.now()
        relay.shard.sweepIdle(now: start)
        relay.shard.sweepIdle(now: start + .seconds(5))
        XCTAssertTrue(alice.isActive)
        var lowered = relay.configuration
        lowered.timeouts.idle = 6
        relay.shard.apply(lowered)
        relay.shard.sweepIdle(now: start + .milliseconds(5900))
        XCTAssertTrue(alice.isActive)
        relay.shard.sweepIdle(now: start + .seconds(6))
        relay.loop.run()
        XCTAssertFalse(alice.isActive, "idle for the reloaded timeouts.idle: closed")
        XCTAssertEqual(relay.counters.count(DropReason.idleTimeout), 1)
    }

    /// Any bytes read (here a keepalive from the client) keep a connection from idling.
    func testBytesReceivedKeepAConnectionAlive() {
        let relay = TestRelay { $0.timeouts.idle = 0.5 }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let start = NIODeadline.now()
        relay.shard.sweepIdle(now: start)
        relay.shard.sweepIdle(now: start + .milliseconds(400))
        alice.send(bytes: [0, 0, 0, 0])
        relay.shard.sweepIdle(now: start + .milliseconds(600))
        relay.loop.run()
        XCTAssertTrue(alice.isActive, "it sent a keepalive")
        XCTAssertFalse(bob.isActive, "it sent nothing for 0.6 s")
        relay.shard.sweepIdle(now: start + .milliseconds(1100))
        relay.loop.run()
        XCTAssertFalse(alice.isActive)
    }
}

/// `StoredBacklog` is a plain value: its read bookkeeping without a channel.
final class StoredBacklogTests: XCTestCase {
    /// A message committed while a read of the store was under way (the read missed it): the
    /// recipient stays due, so the next round delivers it.
    func testAMarkDuringAReadIsNotLostWhenTheReadFindsNothingMore() {
        let recipient = Node.guid(Node.b)
        var backlog = StoredBacklog()
        backlog.mark(recipient)
        XCTAssertTrue(backlog.beginRead(recipient))
        XCTAssertEqual(backlog.due, [])
        backlog.mark(recipient)
        backlog.endRead(recipient, more: false)
        XCTAssertEqual(backlog.due, [recipient])
        XCTAssertTrue(backlog.beginRead(recipient))
        backlog.endRead(recipient, more: false)
        XCTAssertEqual(backlog.due, [], "read to the end with no mark meanwhile: nothing waits")
    }
}
