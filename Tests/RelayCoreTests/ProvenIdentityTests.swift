import NIOCore
import PTPProtocol
import XCTest

@testable import RelayCore

/// PROFILE.md section 3: a connection whose TLS client certificate proved a node id. The TLS
/// handler's event sets `Connection.provenNodeID`; these tests set it directly, as that event would
/// before the first frame.
final class ProvenIdentityTests: XCTestCase {
    /// A connection (relay HELLO read) that proved `id`.
    private func provenConnection(_ relay: TestRelay, proving id: String, shard: Int = 0, label: String) -> Peer {
        let peer = relay.connect(label: label, shard: shard)
        XCTAssertEqual(peer.receive().map(\.type), ["HELLO"])
        let connection = relay.shards[shard].connections.values.first { $0.context.channel === peer.channel }
        XCTAssertNotNil(connection, "the connection is open on shard \(shard)")
        connection?.provenNodeID = Node.guid(id)
        return peer
    }

    func testProvenConnectionBindsItsID() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = provenConnection(relay, proving: Node.a, label: "alice")
        alice.send(Frames.hello(Node.a, name: "alice"))
        XCTAssertEqual(alice.receive().first?.type, "ROUTING")
        XCTAssertTrue(alice.isActive)
        XCTAssertNotNil(relay.context.registry.lookup(Node.guid(Node.a)))
    }

    func testProvenConnectionHelloForAnotherIDRefused() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let mallory = provenConnection(relay, proving: Node.a, label: "mallory")
        let helloID = Node.newID()
        mallory.send(Frames.hello(Node.b, name: "bob", msgID: helloID))
        guard let nack = mallory.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "spoofed_sender")
        XCTAssertEqual(nack.dataMsgID, helloID)
        XCTAssertFalse(mallory.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.spoofedSender), 1)
        XCTAssertNil(relay.context.registry.lookup(Node.guid(Node.b)), "the id it did not prove is not bound")
    }

    func testUnprovenCannotTakeOverAProvenConnection() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = provenConnection(relay, proving: Node.a, label: "alice")
        alice.send(Frames.hello(Node.a, name: "alice"))
        _ = alice.receive()
        let impostor = relay.connect(label: "impostor")
        _ = impostor.receive()
        impostor.send(Frames.hello(Node.a, name: "mallory"))
        XCTAssertEqual(impostor.receiveOne()?.reason, "id_in_use")
        XCTAssertFalse(impostor.isActive)
        XCTAssertTrue(alice.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.takenOver), 0)
        XCTAssertEqual(relay.counters.count(DropReason.idInUse), 1)
    }

    func testProvenNewcomerTakesOverOnOneShard() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let old = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        _ = old.receive()
        let newcomer = provenConnection(relay, proving: Node.a, label: "alice-proven")
        newcomer.send(Frames.hello(Node.a, name: "alice"))
        XCTAssertEqual(newcomer.receive().first?.type, "ROUTING", "bound at once")
        relay.runLoops()
        XCTAssertFalse(old.isActive, "the connection that held the id is closed")
        XCTAssertTrue(newcomer.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.takenOver), 1)
        assertDelivered(relay, from: bob, to: newcomer)
    }

    func testProvenNewcomerTakesOverAcrossShards() {
        let relay = TestRelay(shards: 2)
        defer { relay.shutdown() }
        let old = relay.client(Node.a, name: "alice", shard: 0)
        let bob = relay.client(Node.b, name: "bob", shard: 0)
        relay.runLoops()
        _ = old.receive()
        _ = bob.receive()
        let newcomer = provenConnection(relay, proving: Node.a, shard: 1, label: "alice-proven")
        newcomer.send(Frames.hello(Node.a, name: "alice"))
        XCTAssertEqual(newcomer.receive().first?.type, "ROUTING", "bound at once, before the old shard closes its connection")
        relay.runLoops()
        XCTAssertFalse(old.isActive, "the old connection on the other shard is closed")
        XCTAssertTrue(newcomer.isActive)
        XCTAssertEqual(relay.shards[1].counters.count(DropReason.takenOver), 1)
        _ = newcomer.receive()
        assertDelivered(relay, from: bob, to: newcomer)
    }

    /// A proven connection reconnecting (the old one half-dead) takes its own id over again.
    func testProvenNewcomerTakesOverAProvenConnection() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let old = provenConnection(relay, proving: Node.a, label: "alice-1")
        old.send(Frames.hello(Node.a, name: "alice"))
        _ = old.receive()
        let newcomer = provenConnection(relay, proving: Node.a, label: "alice-2")
        newcomer.send(Frames.hello(Node.a, name: "alice"))
        XCTAssertEqual(newcomer.receive().first?.type, "ROUTING")
        relay.runLoops()
        XCTAssertFalse(old.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.takenOver), 1)
    }

    /// The old connection's unbind (when it closes) leaves the new binding alone: Bob's message
    /// reaches the newcomer, and the registry still points at it.
    private func assertDelivered(_ relay: TestRelay, from bob: Peer, to newcomer: Peer, file: StaticString = #filePath, line: UInt = #line) {
        let location = relay.context.registry.lookup(Node.guid(Node.a))
        let newcomerShard = relay.shards.firstIndex { shard in
            shard.connections.values.contains { $0.context.channel === newcomer.channel }
        }
        XCTAssertEqual(location?.shard, newcomerShard, "the id is bound to the newcomer's shard", file: file, line: line)
        _ = bob.receive()
        let id = Node.newID()
        bob.send(Frames.message(from: Node.b, to: [Node.a], id: id))
        relay.runLoops()
        let frames = newcomer.receive(file: file, line: line).filter { $0.type == "MESSAGE" }
        XCTAssertEqual(frames.map(\.dataMsgID), [id], "the message reaches the connection that took the id over", file: file, line: line)
    }
}
