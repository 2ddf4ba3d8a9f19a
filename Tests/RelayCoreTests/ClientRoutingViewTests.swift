import PTPProtocol
import XCTest

@testable import RelayCore

/// `routing.to_clients: channels` (PROFILE.md section 9), the default: a client hears about the
/// nodes it shares a channel with (learned from the JOIN, LEAVE and CHANNEL floods the relay
/// relays) and the nodes it exchanged messages with; never about itself.
final class ClientRoutingViewTests: XCTestCase {
    private var relay: TestRelay!
    static let other = "33333333-3333-4333-8333-333333333333"
    static let channelD = "44444444-4444-4444-8444-444444444444"

    override func setUp() {
        relay = TestRelay(shards: 2) { $0.routing.clientView = .channels }
    }

    override func tearDown() {
        relay.shutdown()
    }

    /// The ROUTING entries `peer` got since the last read, by `name@GUID`.
    private func routes(_ peer: Peer) -> [String: Int] {
        for shard in relay.shards { shard.sendRoutingDelta() }
        relay.runLoops()
        var entries: [String: Int] = [:]
        for frame in peer.receive() where frame.type == "ROUTING" {
            for (node, ttl) in frame.routingNodes { entries[node] = ttl }
        }
        return entries
    }

    private func join(_ peer: Peer, _ node: String, channel: String) {
        peer.send(
            #"{"msg_type":"JOIN","ttl":32,"flood":true,"msg_id":"\#(Node.newID())","msg_data":{"msg_id":"\#(Node.newID())","node_id":"\#(node)","channel":"c","channel_id":"\#(channel)"}}"#)
        relay.runLoops()
    }

    func testAClientHearsOnlyOfTheMembersOfItsChannelsAcrossShards() {
        let a = relay.client(Node.a, name: "alice", shard: 0)
        let b = relay.client(Node.b, name: "bob", shard: 1)
        let x = relay.client(Node.x, name: "xavier", shard: 0)
        relay.runLoops()
        XCTAssertTrue(routes(a).isEmpty, "nobody shares anything with alice yet")

        join(a, Node.a, channel: Node.channel)
        join(b, Node.b, channel: Node.channel)
        join(x, Node.x, channel: Self.channelD)
        XCTAssertEqual(routes(a), ["bob@\(Node.b)": 1])
        XCTAssertEqual(routes(b), ["alice@\(Node.a)": 1])
        XCTAssertTrue(routes(x).isEmpty, "xavier shares no channel")
        // Counted for operators (/stats routing_to_clients): the three welcomes and two deltas.
        XCTAssertEqual(relay.shards.map(\.counters.routingFramesToClients).reduce(0, +), 5)
        XCTAssertGreaterThan(relay.shards.map(\.counters.routingBytesToClients).reduce(0, +), 0)

        // A newcomer in the channel is in its welcome; the others hear of it.
        let c = relay.client(Node.c, name: "carol", shard: 1)
        join(c, Node.c, channel: Node.channel)
        let carolView = routes(c)
        XCTAssertEqual(carolView, ["alice@\(Node.a)": 1, "bob@\(Node.b)": 1])
        XCTAssertEqual(routes(a), ["carol@\(Node.c)": 1])

        // Leaving the relay withdraws it from those who saw it, and only from them.
        b.close()
        relay.runLoops()
        XCTAssertEqual(routes(a), ["bob@\(Node.b)": 32])
        XCTAssertTrue(routes(x).isEmpty)
    }

    func testANodeMessagedIsInTheViewOfBothEnds() {
        let a = relay.client(Node.a, name: "alice", shard: 0)
        let b = relay.client(Node.b, name: "bob", shard: 1)
        relay.runLoops()
        _ = routes(a)
        _ = routes(b)
        let id = Node.newID()
        a.send(Frames.message(from: Node.a, to: [Node.b], id: id))
        relay.runLoops()
        XCTAssertEqual(routes(a), ["bob@\(Node.b)": 1])
        XCTAssertEqual(routes(b).filter { $0.key.hasSuffix(Node.a) }, ["alice@\(Node.a)": 1])
    }

    func testAWelcomeListsChannelMembersButNeverTheClientItself() {
        let a = relay.client(Node.a, name: "alice", shard: 0)
        join(a, Node.a, channel: Node.channel)
        // Bob's JOIN comes before his HELLO elsewhere in the mesh: here, a CHANNEL lists him.
        let b = relay.client(Node.b, name: "bob", shard: 1)
        join(b, Node.b, channel: Node.channel)
        b.close()
        relay.runLoops()
        let again = relay.connect(label: "bob again", shard: 1)
        XCTAssertEqual(again.receive().map(\.type), ["HELLO"])
        again.send(Frames.hello(Node.b, name: "bob"))
        var listed: [String: Int] = [:]
        for frame in again.receive() where frame.type == "ROUTING" {
            for (node, ttl) in frame.routingNodes { listed[node] = ttl }
        }
        XCTAssertEqual(listed, ["alice@\(Node.a)": 1], "bob's welcome lists his channel's members, not himself")
    }

    func testExistingClientsSeeEachOtherAsMembersOfTheirBuiltInChannel() {
        let legacy = TestRelay(shards: 2) {
            $0.routing.clientView = .channels
            $0.compat.legacyClients = true
        }
        defer { legacy.shutdown() }
        let first = legacy.client(Node.a, existingClientStyle: true, shard: 0)
        let second = legacy.client(Node.b, existingClientStyle: true, shard: 1)
        legacy.runLoops()
        for shard in legacy.shards { shard.sendRoutingDelta() }
        legacy.runLoops()
        let firstView = first.receive().filter { $0.type == "ROUTING" }.flatMap(\.routingNodes)
        XCTAssertTrue(firstView.contains { $0.0.hasSuffix(Node.b) && $0.1 == 1 }, "\(firstView)")
        XCTAssertFalse(firstView.contains { $0.0.hasSuffix(Node.a) })
        let secondView = second.receive().filter { $0.type == "ROUTING" }.flatMap(\.routingNodes)
        XCTAssertTrue(secondView.contains { $0.0.hasSuffix(Node.a) && $0.1 == 1 }, "\(secondView)")
    }

    func testInterestIndexIsBoundedAndReportsNewSharing() {
        var index = InterestIndex()
        let a = Node.guid(Node.a)
        let b = Node.guid(Node.b)
        XCTAssertEqual(index.apply(MembershipChange(channelID: "c", node: a, joined: true)), [])
        XCTAssertEqual(index.apply(MembershipChange(channelID: "c", node: b, joined: true)), [a])
        XCTAssertEqual(index.apply(MembershipChange(channelID: "d", node: b, joined: true)), [], "a second channel adds nobody")
        XCTAssertEqual(index.apply(MembershipChange(channelID: "d", node: a, joined: true)), [], "already sharing c")
        XCTAssertTrue(index.share(a, b))
        _ = index.apply(MembershipChange(channelID: "c", node: a, joined: false))
        XCTAssertTrue(index.share(a, b), "still in d together")
        _ = index.apply(MembershipChange(channelID: "d", node: a, joined: false))
        XCTAssertFalse(index.share(a, b))
        for channel in 0..<(InterestIndex.maxChannelsPerNode + 10) {
            _ = index.apply(MembershipChange(channelID: "ch\(channel)", node: a, joined: true))
        }
        XCTAssertEqual(index.membershipCount, InterestIndex.maxChannelsPerNode + 2, "a's channels are capped; b keeps c and d")
    }
}
