import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import XCTest

@testable import RelayCore

final class FloodTests: XCTestCase {
    func testFloodToAllButOriginOnce() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        let dataID = Node.newID()
        let headID = Node.newID()
        let join = Frames.join(from: Node.a, dataID: dataID, headID: headID)
        alice.send(join)
        for peer in [bob, carol] {
            guard let frame = peer.receiveOne() else { continue }
            XCTAssertEqual(frame.type, "JOIN")
            XCTAssertEqual(frame.ttl, 31)
            XCTAssertEqual(frame.flood, true)
            XCTAssertEqual(frame.dataMsgID, dataID)
            XCTAssertEqual(frame.msgID, dataID)
            XCTAssertEqual(frame.sender, "LocalNode@\(Node.a)")
            XCTAssertEqual(frame.data["channel"] as? String, "Test Channel")
            XCTAssertEqual(frame.data["channel_id"] as? String, Node.channel)
        }
        alice.expectNothing()
        XCTAssertEqual(relay.counters.relayed(.join), 1)

        // The same flood again, from its origin or from another node: dropped.
        alice.send(join)
        carol.send(Frames.join(from: Node.c, dataID: dataID))
        for peer in [alice, bob, carol] { peer.expectNothing() }
        XCTAssertEqual(relay.counters.count(DropReason.floodDuplicate), 2)
        XCTAssertEqual(relay.counters.relayed(.join), 1)

        // A different flood goes out again, LEAVE in lower case included.
        let leaveID = Node.newID()
        bob.send(#"{"msg_type":"leave","ttl":5,"flood":true,"msg_data":{"msg_id":"\#(leaveID)","node_id":"bob@\#(Node.b)","channel":"Test Channel","channel_id":"\#(Node.channel)"}}"#)
        for peer in [alice, carol] {
            guard let frame = peer.receiveOne() else { continue }
            XCTAssertEqual(frame.type, "LEAVE")
            XCTAssertEqual(frame.ttl, 4)
            XCTAssertEqual(frame.dataMsgID, leaveID)
            XCTAssertEqual(frame.sender, "bob@\(Node.b)")
        }
        bob.expectNothing()
    }

    func testRelayedJoinCarriesMsgIDFromHead() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        let headID = Node.newID()
        alice.send(Frames.join(from: Node.a, dataID: nil, headID: headID))
        guard let frame = bob.receiveOne() else { return }
        XCTAssertEqual(frame.type, "JOIN")
        XCTAssertEqual(frame.dataMsgID, headID)
        XCTAssertEqual(frame.msgID, headID)
        XCTAssertEqual(frame.data["channel"] as? String, "Test Channel")
        XCTAssertEqual(frame.data["channel_id"] as? String, Node.channel)
        XCTAssertEqual(frame.data.count, 3, frame.text)
        // msg_data.msg_id null: replaced by the head id, not repeated.
        let otherID = Node.newID()
        alice.send(#"{"msg_type":"JOIN","msg_id":"\#(otherID)","msg_data":{"msg_id":null,"channel":"c","channel_id":"x"},"sender_id":"LocalNode@\#(Node.a)"}"#)
        guard let second = bob.receiveOne() else { return }
        XCTAssertEqual(second.dataMsgID, otherID)
        XCTAssertEqual(second.text.components(separatedBy: "\"msg_id\"").count - 1, 2, second.text)
    }

    func testFloodWithoutIDDropped() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        alice.send(Frames.join(from: Node.a, dataID: nil, headID: Node.zero))
        bob.expectNothing()
        alice.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.floodNoID), 1)
    }

    func testFloodTTLExpiredDropped() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        alice.send(Frames.join(from: Node.a, dataID: Node.newID(), ttl: 1))
        bob.expectNothing()
        alice.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.floodTTLExpired), 1)
        // ttl above 32 is clamped.
        alice.send(Frames.join(from: Node.a, dataID: Node.newID(), ttl: 1000))
        XCTAssertEqual(bob.receiveOne()?.ttl, 31)
    }

    func testFloodBudget() {
        let relay = TestRelay {
            $0.limits.floodPerSecond = 0.001  // practically no refill during the test
            $0.limits.floodBurst = 2
        }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        var sent: [String] = []
        for _ in 0..<4 {
            let id = Node.newID()
            sent.append(id)
            alice.send(Frames.join(from: Node.a, dataID: id))
        }
        XCTAssertEqual(bob.receive().compactMap(\.dataMsgID), Array(sent.prefix(2)))
        XCTAssertEqual(carol.receive().count, 2)
        XCTAssertEqual(relay.counters.count(DropReason.floodOverBudget), 2)
        // The budget is per origin: Carol still floods.
        let carolID = Node.newID()
        carol.send(#"{"msg_type":"CHANNEL","msg_data":{"msg_id":"\#(carolID)","node_id":"\#(Node.c)","channel":"c","channel_id":"cc","members":[]}}"#)
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, carolID)
        XCTAssertEqual(relay.counters.count(DropReason.floodOverBudget), 2)
        // A flood dropped over budget is not remembered as seen: once allowed, it could pass.
        XCTAssertEqual(relay.counters.count(DropReason.floodDuplicate), 0)
    }

    func testFloodPerSecondZeroMeansUnlimited() {
        let relay = TestRelay {
            $0.limits.floodPerSecond = 0
            $0.limits.floodBurst = 1
        }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        for _ in 0..<30 { alice.send(Frames.join(from: Node.a, dataID: Node.newID())) }
        XCTAssertEqual(bob.receive().count, 30)
        XCTAssertEqual(relay.counters.count(DropReason.floodOverBudget), 0)
    }

    /// PROFILE.md section 11: "`limits.*` of 0 means unlimited", `limits.flood_burst` included.
    func testFloodBurstZeroMeansUnlimited() {
        let relay = TestRelay {
            $0.limits.floodPerSecond = 5
            $0.limits.floodBurst = 0
        }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        for _ in 0..<3 { alice.send(Frames.join(from: Node.a, dataID: Node.newID())) }
        XCTAssertEqual(bob.receive().count, 3, "floods dropped with limits.flood_burst = 0")
        XCTAssertEqual(relay.counters.count(DropReason.floodOverBudget), 0)
    }

    func testChannelCachedAndSentAfterRoutingToLaterClient() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let firstID = Node.newID()
        alice.send(Frames.channel(from: Node.a, id: firstID, name: "Old Name"))
        // Nobody else is connected; the announcement is kept.
        alice.expectNothing()
        XCTAssertEqual(relay.context.channels.count, 1)

        let bob = relay.connect(label: "bob")
        _ = bob.receive()
        bob.send(Frames.hello(Node.b, name: "bob"))
        let welcome = bob.receive()
        XCTAssertEqual(welcome.map(\.type), ["ROUTING", "CHANNEL"])
        guard welcome.count == 2 else { return }
        let channel = welcome[1]
        XCTAssertEqual(channel.dataMsgID, firstID)
        XCTAssertEqual(channel.data["channel_id"] as? String, Node.channel)
        XCTAssertEqual(channel.data["channel"] as? String, "Old Name")
        XCTAssertEqual(channel.flood, true)
        XCTAssertEqual(channel.sender, "LocalNode@\(Node.a)")
        XCTAssertEqual(channel.ttl, 31)

        // A newer CHANNEL for the same channel_id replaces it; another channel is added.
        let secondID = Node.newID()
        alice.send(Frames.channel(from: Node.a, id: secondID, name: "New Name"))
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, secondID)
        let otherID = Node.newID()
        let otherChannel = "0f44bfaf-5dd5-4941-bacc-3f2a91de3c80"
        alice.send(Frames.channel(from: Node.a, id: otherID, channelID: otherChannel, name: "Other"))
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, otherID)
        XCTAssertEqual(relay.context.channels.count, 2)

        let carol = relay.connect(label: "carol")
        _ = carol.receive()
        carol.send(Frames.clientHello(Node.c, name: "carol"))
        let carolWelcome = carol.receive()
        XCTAssertEqual(carolWelcome.first?.type, "ROUTING")
        let channels = carolWelcome.dropFirst()
        XCTAssertEqual(channels.map(\.type), ["CHANNEL", "CHANNEL"])
        XCTAssertEqual(Set(channels.compactMap(\.dataMsgID)), [secondID, otherID])
        XCTAssertEqual(
            Set(channels.compactMap { $0.data["channel"] as? String }), ["New Name", "Other"])
    }
}
