import NIOCore
import PTPProtocol
import RelayMesh
import XCTest

@testable import RelayCore

/// A proven peer relay that sends garbage (PROFILE.md section 9): each bad ROUTING is counted and
/// logged, nothing of it is applied, and a peer that keeps doing it is disconnected.
final class MeshPeerDefenceTests: XCTestCase {
    static let key = TestRelay.peerKey
    static let peerID = TestRelay.peerID

    private func provenPeer(_ relay: TestRelay) throws -> Peer {
        let peer = try relay.provenPeer(key: Self.key, id: Self.peerID)
        let answer = peer.receive()
        let reply = try XCTUnwrap(answer.first { $0.type == "HELLO" }, "\(answer.map(\.text))")
        XCTAssertEqual(
            (reply.data["attributes"] as? [String: Any])?["mesh_proof"] as? String,
            try MeshKey(Self.key).proof(nonce: TestRelay.peerNonce, prover: Node.guid(Node.relay)), "the relay proves itself back")
        XCTAssertTrue(answer.contains { $0.type == "ROUTING" }, "the whole table follows the proof")
        return peer
    }

    private func routing(_ nodes: String) -> String {
        #"{"msg_type":"ROUTING","ttl":1,"flood":false,"msg_id":"\#(Node.newID())","sender_id":"peer@\#(Self.peerID)","msg_data":{"node_id":"\#(Self.peerID)","nodes":[\#(nodes)]}}"#
    }

    func testInvalidEntriesAreCountedNeverAppliedAndAPeerThatKeepsSendingThemIsClosed() throws {
        let relay = TestRelay { $0.mesh.key = Self.key }
        defer { relay.shutdown() }
        let peer = try provenPeer(relay)
        XCTAssertTrue(relay.context.mesh.isConnected(Node.guid(Self.peerID)))

        peer.send(routing(#"{"node_id":"x@\#(Node.x)","ttl":40,"seq":2},{"node_id":"b@\#(Node.b)","ttl":1,"seq":2}"#))
        XCTAssertEqual(relay.counters.count(DropReason.meshInvalidEntry), 1)
        XCTAssertNil(relay.context.mesh.nextHop(for: Node.guid(Node.x)), "an entry with ttl 40 is not applied")
        XCTAssertNotNil(relay.context.mesh.nextHop(for: Node.guid(Node.b)), "the valid entry beside it is")
        XCTAssertGreaterThan(relay.logs.count(.warning, "invalid ROUTING entries"), 0)
        XCTAssertTrue(peer.isActive, "one bad frame does not close a peer")

        for _ in 1..<RelayShard.peerStrikesBeforeClose {
            peer.send(routing(#"{"node_id":"x@\#(Node.x)","ttl":0}"#))
        }
        relay.loop.run()
        XCTAssertFalse(peer.isActive, "a peer that keeps sending garbage is disconnected")
        XCTAssertFalse(relay.context.mesh.isConnected(Node.guid(Self.peerID)))
        XCTAssertNil(relay.context.mesh.nextHop(for: Node.guid(Node.b)), "its routes went with it")
    }

    func testAPeerClaimingAClientOfThisRelayDoesNotWin() throws {
        let relay = TestRelay { $0.mesh.key = Self.key }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let peer = try provenPeer(relay)
        // The peer says Alice is its own client.
        peer.send(routing(#"{"node_id":"alice@\#(Node.a)","ttl":1}"#))
        XCTAssertEqual(relay.counters.count(DropReason.meshIDCollision), 1, "invalid \(relay.counters.count(DropReason.meshInvalidEntry)) \(relay.logs)")
        XCTAssertNil(relay.context.mesh.nextHop(for: Node.guid(Node.a)), "no mesh route for a local client")
        XCTAssertGreaterThan(relay.logs.count(.warning, "claims"), 0, "\(relay.logs)")
        // Alice's traffic still goes to Alice.
        bob.send(Frames.message(from: Node.b, to: [Node.a], id: Node.newID()))
        XCTAssertEqual(alice.receive().map(\.type), ["MESSAGE"])
        XCTAssertTrue(peer.receive().allSatisfy { $0.type != "MESSAGE" }, "nothing for Alice went to the peer")
    }

    func testARoutingFrameAbove8KiBIsCounted() throws {
        let relay = TestRelay { $0.mesh.key = Self.key }
        defer { relay.shutdown() }
        let peer = try provenPeer(relay)
        let entries = (0..<120).map { #"{"node_id":"n\#($0)@\#(GUID.random())","ttl":1,"seq":2}"# }.joined(separator: ",")
        XCTAssertGreaterThan(routing(entries).utf8.count, 8192)
        peer.send(routing(entries))
        XCTAssertEqual(relay.counters.count(DropReason.meshOversizedRouting), 1)
        XCTAssertTrue(peer.isActive)
    }

    func testWrongProofClosesAndIsCounted() throws {
        let relay = TestRelay { $0.mesh.key = Self.key }
        defer { relay.shutdown() }
        let peer = relay.connect(label: "liar")
        _ = peer.receive()
        peer.send(
            #"{"msg_type":"HELLO","ttl":1,"flood":false,"msg_id":"\#(Node.newID())","sender_id":"peer@\#(Self.peerID)","msg_data":{"node_id":"\#(Self.peerID)","version":"t","attributes":{"node_type":"server","mesh_nonce":"\#(String(repeating: "ab", count: 16))","mesh_proof":"\#(String(repeating: "0", count: 64))"}}}"#)
        relay.loop.run()
        XCTAssertFalse(peer.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.meshAuthFailed), 1)
        XCTAssertEqual(relay.logs.count(.warning, "peering proof failed"), 1)
    }
}
