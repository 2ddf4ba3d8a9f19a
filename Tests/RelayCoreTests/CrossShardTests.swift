import NIOCore
import PTPProtocol
import XCTest

@testable import RelayCore

/// The paths where a message crosses from one shard (event loop) to another, driven step by step:
/// each shard has its own embedded loop, and a batch for another shard arrives only when the test
/// runs that shard's loop.
final class CrossShardTests: XCTestCase {
    private var relay: TestRelay!

    override func setUp() {
        relay = TestRelay(shards: 2)
    }

    override func tearDown() {
        relay.shutdown()
    }

    /// Clients bound on the given shards, every shard's replica up to date, greetings read.
    private func bound(_ clients: [(id: String, shard: Int)], ip: String = "192.0.2.10") -> [Peer] {
        let peers = clients.map { relay.client($0.id, ip: ip, shard: $0.shard) }
        relay.runLoops()
        for peer in peers { _ = peer.receive() }
        return peers
    }

    func testMessageToAnotherShardIsDeliveredAndTheAckComesBack() {
        let peers = bound([(Node.a, 0), (Node.b, 1)])
        let (a, b) = (peers[0], peers[1])

        let handedOver = { self.relay.shards.map(\.counters.commandsFromOtherLoops) }
        let before = handedOver()
        let id = Node.newID()
        a.send(Frames.message(from: Node.a, to: [Node.b], id: id))
        XCTAssertNil(try b.channel.readOutbound(as: ByteBuffer.self), "nothing reaches shard 1 before its loop runs")
        relay.runLoops()
        let delivered = b.receive()
        XCTAssertEqual(delivered.map(\.type), ["MESSAGE"])
        XCTAssertEqual(delivered.first?.dataMsgID, id)
        XCTAssertEqual(delivered.first?.ttl, 31)
        a.expectNothing()
        XCTAssertEqual(zip(handedOver(), before).map { $0 - $1 }, [0, 1], "the delivery handed to shard 1, counted there")

        b.send(Frames.ack(id))
        XCTAssertNil(try a.channel.readOutbound(as: ByteBuffer.self), "the ACK goes back through shard 0's loop")
        relay.runLoops()
        a.expectAck(id)
        XCTAssertEqual(relay.shards[1].counters.acksReceived, 1)
        XCTAssertEqual(relay.shards[0].counters.acksSent, 1)
        XCTAssertEqual(zip(handedOver(), before).map { $0 - $1 }, [1, 1], "the ACK handed back to shard 0, counted there")
    }

    /// A message with one recipient travels in the batch's compact commands, one split over
    /// several next hops with the other commands: the recipient still gets them in the order they
    /// were sent.
    func testMessagesToAnotherShardArriveInOrderWhateverFormTheirCommandsTake() {
        let peers = bound([(Node.a, 0), (Node.b, 1)])
        let (a, b) = (peers[0], peers[1])

        let ids = (0..<4).map { _ in Node.newID() }
        // One read, so that all four go in one batch.
        a.send(
            bytes: [
                Frames.message(from: Node.a, to: [Node.b], id: ids[0]),
                Frames.message(from: Node.a, to: [Node.b, Node.x], id: ids[1]),
                Frames.message(from: Node.a, to: [Node.b], id: ids[2]),
                Frames.message(from: Node.a, to: [Node.b, Node.x], id: ids[3]),
            ].flatMap(frameBytes))
        relay.runLoops()
        XCTAssertEqual(b.receive().filter { $0.type == "MESSAGE" }.map(\.dataMsgID), ids)
    }

    /// The batches go round: a shard sends each batch it ran back with its own next batch, and the
    /// batch's maker fills it again instead of making a new one every tick.
    func testABatchRunByAnotherShardComesBackAndIsFilledAgain() {
        let peers = bound([(Node.a, 0), (Node.b, 1)])
        let (a, b) = (peers[0], peers[1])
        let madeBefore = relay.shards.map(\.outbox.batchesMade)

        for _ in 0..<5 {
            let id = Node.newID()
            a.send(Frames.message(from: Node.a, to: [Node.b], id: id))
            relay.runLoops()
            XCTAssertEqual(b.receiveOne()?.dataMsgID, id)
            b.send(Frames.ack(id))
            relay.runLoops()
            a.expectAck(id)
        }
        // Five batches each way; at most one new on each side (the first of a direction that
        // had none coming back yet).
        XCTAssertLessThanOrEqual(relay.shards[0].outbox.batchesMade - madeBefore[0], 1)
        XCTAssertLessThanOrEqual(relay.shards[1].outbox.batchesMade - madeBefore[1], 1)
    }

    func testSplitOverShardsAcksOnceAfterEveryNextHopAndNacksTheStoredOne() {
        let peers = bound([(Node.a, 0), (Node.b, 1), (Node.c, 0)])
        let (a, b, c) = (peers[0], peers[1], peers[2])

        let id = Node.newID()
        a.send(Frames.message(from: Node.a, to: [Node.b, Node.c, Node.x], id: id))
        relay.runLoops()
        XCTAssertEqual(b.receiveOne()?.recipients, [Node.b])
        XCTAssertEqual(c.receiveOne()?.recipients, [Node.c])
        // X is not connected: stored, and A hears so for X alone.
        let nack = a.receiveOne()
        XCTAssertEqual(nack?.type, "NACK")
        XCTAssertEqual(nack?.data["stored"] as? Bool, true)
        XCTAssertEqual(nack?.recipients, [Node.x])
        XCTAssertEqual(relay.offline.messages.map(\.recipient), [Node.guid(Node.x)])

        c.send(Frames.ack(id))
        relay.runLoops()
        a.expectNothing()
        XCTAssertFalse(relay.shard.pending.isEmpty, "one next hop has not answered")
        b.send(Frames.ack(id))
        relay.runLoops()
        a.expectAck(id)
        XCTAssertTrue(relay.shard.pending.isEmpty)
    }

    func testNextHopGoneBeforeTheBatchArrivesStoresTheMessage() {
        let a = relay.client(Node.a, shard: 0)
        let b = relay.client(Node.b, shard: 1)
        relay.runLoops()
        _ = a.receive()

        let id = Node.newID()
        a.send(Frames.message(from: Node.a, to: [Node.b], id: id))
        // B leaves while the batch for shard 1 is still queued on its loop.
        b.close()
        relay.runLoops()
        let nack = a.receiveOne()
        XCTAssertEqual(nack?.type, "NACK")
        XCTAssertEqual(nack?.data["stored"] as? Bool, true)
        XCTAssertEqual(relay.offline.messages.map(\.messageID), [Node.guid(id)])
        XCTAssertEqual(relay.offline.messages.first?.sender, Node.guid(Node.a))
    }

    func testRecipientNackOnAnotherShardReachesTheSender() {
        let peers = bound([(Node.a, 0), (Node.b, 1)])
        let (a, b) = (peers[0], peers[1])

        let id = Node.newID()
        a.send(Frames.message(from: Node.a, to: [Node.b], id: id))
        relay.runLoops()
        XCTAssertEqual(b.receiveOne()?.type, "MESSAGE")
        b.send(Frames.nack(from: Node.b, refusing: id, reason: "not_a_member"))
        relay.runLoops()
        let nack = a.receiveOne()
        XCTAssertEqual(nack?.type, "NACK")
        XCTAssertEqual(nack?.dataMsgID, id)
        XCTAssertEqual(nack?.reason, "not_a_member")
        // PROFILE.md section 5: the origin learns who refused.
        XCTAssertEqual(nack?.data["node_id"] as? String, Node.b)
        XCTAssertEqual(nack?.sender, "node@\(Node.b)")
        XCTAssertEqual(nack?.data["stored"] as? Bool, false)
        XCTAssertEqual(relay.shards[0].counters.nacksPassedOn, 1)
    }

    func testRelaysOwnRefusalNamesTheRelay() {
        let a = relay.client(Node.a, shard: 0)
        _ = a.receive()
        let id = Node.newID()
        a.send(Frames.message(from: Node.a, to: [Node.b], id: id, ttl: 1))
        let nack = a.receiveOne()
        XCTAssertEqual(nack?.reason, "ttl_expired")
        XCTAssertEqual(nack?.data["node_id"] as? String, Node.relay)
        XCTAssertEqual(nack?.sender, "relay@\(Node.relay)")
    }

    func testFloodReachesEveryShardOnceAndNotItsSender() {
        let a = relay.client(Node.a, shard: 0)
        let b = relay.client(Node.b, shard: 1)
        let c = relay.client(Node.c, shard: 0)
        let x = relay.client(Node.x, shard: 1)
        relay.runLoops()
        for peer in [a, b, c, x] { _ = peer.receive() }

        let floodID = Node.newID()
        a.send(Frames.join(from: Node.a, dataID: floodID))
        relay.runLoops()
        for peer in [b, c, x] {
            let frames = peer.receive()
            XCTAssertEqual(frames.map(\.type), ["JOIN"], peer.label)
            XCTAssertEqual(frames.first?.dataMsgID, floodID, peer.label)
            XCTAssertEqual(frames.first?.ttl, 31, peer.label)
        }
        a.expectNothing()
        // The same flood again (from another node) is a repeat on every shard.
        b.send(Frames.join(from: Node.b, dataID: floodID))
        relay.runLoops()
        for peer in [a, c, x] { peer.expectNothing() }
    }

    func testConnectToAnotherShardCarriesTheObservedAddress() {
        let a = relay.client(Node.a, ip: "198.51.100.7", shard: 0)
        let b = relay.client(Node.b, ip: "203.0.113.9", shard: 1)
        relay.runLoops()
        _ = a.receive()
        _ = b.receive()

        a.send(Frames.connect(src: "40000", dst: nil, srcNode: Node.a, dstNode: Node.b, msgID: Node.newID()))
        relay.runLoops()
        let step1 = b.receiveOne()
        XCTAssertEqual(step1?.type, "CONNECT")
        XCTAssertEqual(step1?.data["src"] as? String, "198.51.100.7:40000")
        XCTAssertTrue(step1?.data["dst"] is NSNull)

        b.send(Frames.connect(src: "198.51.100.7:40000", dst: "41000", srcNode: Node.a, dstNode: Node.b, msgID: Node.newID()))
        relay.runLoops()
        let step3 = a.receiveOne()
        XCTAssertEqual(step3?.data["dst"] as? String, "203.0.113.9:41000")
        XCTAssertEqual(relay.shards[0].counters.relayed(.connect) + relay.shards[1].counters.relayed(.connect), 2)
    }

    func testNodeBoundOnOneShardIsInTheOtherShardsReplicaAfterItsLoopRuns() {
        let b = relay.client(Node.b, shard: 1)
        XCTAssertNil(relay.shards[0].directory[Node.guid(Node.b)], "shard 0 has not run its loop yet")
        // Until then the registry answers for it.
        XCTAssertEqual(relay.shards[0].nextHop(for: Node.guid(Node.b))?.location.shard, 1)
        relay.runLoops()
        XCTAssertEqual(relay.shards[0].directory[Node.guid(Node.b)]?.shard, 1)
        b.close()
        relay.runLoops()
        XCTAssertNil(relay.shards[0].directory[Node.guid(Node.b)])
        XCTAssertNil(relay.shards[0].nextHop(for: Node.guid(Node.b)))
    }
}
