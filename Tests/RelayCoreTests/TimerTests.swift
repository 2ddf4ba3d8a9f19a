import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import XCTest

@testable import RelayCore

final class TimerTests: XCTestCase {
    /// The ACK sweep runs on the event loop's timer. Deadlines are taken from `NIODeadline.now()`
    /// (the wall clock), so the timeout is set to 1 ns: it has passed by the time the sweep runs,
    /// without sleeping.
    func testAckTimeoutGivesSenderNackUnreachable() {
        let relay = TestRelay { $0.timeouts.ack = 1e-9 }
        defer { relay.shutdown() }
        relay.shard.startTimers()
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: id))
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, id)
        alice.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.ackTimeout), 0)

        relay.loop.advanceTime(by: .milliseconds(100))
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "unreachable")
        XCTAssertEqual(nack.dataMsgID, id)
        XCTAssertEqual(nack.recipients, [Node.b])
        // Not reached in time: stored for a later try (PROFILE.md section 5).
        XCTAssertEqual(nack.data["stored"] as? Bool, true)
        XCTAssertEqual(relay.offline.messages.map(\.messageID), [Node.guid(id)])
        XCTAssertEqual(relay.counters.count(DropReason.ackTimeout), 1)
        XCTAssertTrue(relay.shard.pending.isEmpty)

        // Bob's late ACK: nothing awaits it any more.
        bob.send(Frames.ack(id))
        alice.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.unknownAck), 1)
        XCTAssertEqual(relay.counters.acksSent, 0)
    }

    /// The same with the default 10 s timeout, driving the expiry directly.
    func testAckDeadlineExpiry() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b, Node.c], id: id))
        _ = bob.receive()
        _ = carol.receive()
        carol.send(Frames.ack(id))
        relay.shard.expireAcks(now: .now())
        alice.expectNothing()
        relay.shard.expireAcks(now: .now() + .seconds(9))
        alice.expectNothing()
        relay.shard.expireAcks(now: .now() + .seconds(11))
        relay.shard.flushAll()
        // Bob never ACKed: NACK naming him, then the ACK for Carol's part.
        let frames = alice.receive()
        XCTAssertEqual(frames.map(\.type), ["NACK", "ACK"], "\(frames.map(\.text))")
        guard frames.count == 2 else { return }
        XCTAssertEqual(frames[0].reason, "unreachable")
        XCTAssertEqual(frames[0].recipients, [Node.b])
        XCTAssertEqual(frames[0].data["stored"] as? Bool, true)
        XCTAssertEqual(frames[1].dataMsgID, id)
        XCTAssertEqual(relay.counters.count(DropReason.ackTimeout), 1)
    }

    /// Deliveries on one connection whose ACK is late are stored, and their senders told, in the
    /// order they were delivered; one ACKed in time is not among them, and nothing is left to expire.
    func testLateAcksExpireInDeliveryOrder() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let ids = alice.sendMessages(12, from: Node.a, to: Node.b)
        XCTAssertEqual(bob.receive().compactMap(\.dataMsgID), ids)
        bob.send(Frames.ack(ids[5]))
        relay.shard.flushAll()
        XCTAssertEqual(alice.receive().map(\.type), ["ACK"])
        relay.shard.expireAcks(now: .now() + .seconds(11))
        relay.shard.flushAll()
        let late = ids.enumerated().filter { $0.offset != 5 }.map(\.element)
        XCTAssertEqual(relay.offline.messages.map(\.messageID), late.map(Node.guid))
        XCTAssertEqual(alice.receive().compactMap(\.dataMsgID), late)
        XCTAssertEqual(relay.counters.count(DropReason.ackTimeout), 11)
        let bobs = relay.shard.connections.values.first { $0.nodeID == Node.guid(Node.b) }
        XCTAssertEqual(bobs?.awaiting.isEmpty, true)
        XCTAssertNil(bobs?.awaiting.nextDeadline)
    }

    func testRoutingDeltasOnTheRoutingTimer() {
        let relay = TestRelay { $0.routing.interval = 0.25 }
        defer { relay.shutdown() }
        relay.shard.startTimers()
        let alice = relay.client(Node.a, name: "alice")
        relay.loop.advanceTime(by: .milliseconds(300))
        _ = alice.receive()  // Alice's own binding as a delta
        let bob = relay.client(Node.b, name: "bob")
        alice.expectNothing()
        relay.loop.advanceTime(by: .milliseconds(300))
        guard let delta = alice.receive().first(where: { $0.type == "ROUTING" }) else {
            return XCTFail("no ROUTING delta after Bob bound")
        }
        XCTAssertTrue(delta.routingNodes.contains { $0.0 == "bob@\(Node.b)" && $0.1 == 1 }, "\(delta.routingNodes)")
        _ = bob.receive()
        bob.close()
        relay.loop.advanceTime(by: .milliseconds(300))
        guard let withdrawal = alice.receive().first(where: { $0.type == "ROUTING" }) else {
            return XCTFail("no ROUTING delta after Bob left")
        }
        XCTAssertTrue(withdrawal.routingNodes.contains { $0.0 == "bob@\(Node.b)" && $0.1 == 32 }, "\(withdrawal.routingNodes)")
        // Nothing changes: nothing sent.
        relay.loop.advanceTime(by: .milliseconds(300))
        XCTAssertTrue(alice.receive().filter { $0.type == "ROUTING" }.isEmpty)
    }

    func testHelloRefresh() {
        let relay = TestRelay { $0.timeouts.helloRefresh = 60 }
        defer { relay.shutdown() }
        relay.shard.startTimers()
        let alice = relay.client(Node.a, name: "alice")
        relay.loop.advanceTime(by: .seconds(59))
        XCTAssertFalse(alice.receive().contains { $0.type == "HELLO" })
        relay.loop.advanceTime(by: .seconds(2))
        let hellos = alice.receive().filter { $0.type == "HELLO" }
        XCTAssertEqual(hellos.count, 1)
        XCTAssertEqual(hellos.first?.sender, "relay@\(Node.relay)")
        XCTAssertEqual((hellos.first?.data["attributes"] as? [String: Any])?["node_type"] as? String, "server")
    }

    func testHelloRefreshZeroDisables() {
        let relay = TestRelay { $0.timeouts.helloRefresh = 0 }
        defer { relay.shutdown() }
        relay.shard.startTimers()
        let alice = relay.client(Node.a, name: "alice")
        relay.loop.advanceTime(by: .seconds(300))
        XCTAssertFalse(alice.receive().contains { $0.type == "HELLO" })
    }

    func testAHugeTimeoutMeansNeverAndNeitherTrapsNorOverflowsADeadline() {
        XCTAssertEqual(TimeAmount.fromSeconds(1e12), .seconds(1_000_000_000))
        XCTAssertEqual(TimeAmount.fromSeconds(-3), .zero)
        XCTAssertEqual(TimeAmount.fromSeconds(0.25), .milliseconds(250))
        XCTAssertGreaterThan(NIODeadline.now() + .fromSeconds(.infinity), NIODeadline.now())
    }
}
