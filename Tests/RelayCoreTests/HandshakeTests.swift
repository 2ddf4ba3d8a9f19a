import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import XCTest

@testable import RelayCore

final class HandshakeTests: XCTestCase {
    func testHelloSentOnActivation() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let peer = relay.connect(label: "peer")
        guard let hello = peer.receiveOne() else { return }
        XCTAssertEqual(hello.type, "HELLO")
        XCTAssertEqual(hello.ttl, 1)
        XCTAssertEqual(hello.flood, false)
        XCTAssertEqual(hello.sender, "relay@\(Node.relay)")
        XCTAssertEqual(hello.data["node_id"] as? String, Node.relay)
        XCTAssertEqual((hello.data["attributes"] as? [String: Any])?["node_type"] as? String, "server")
        XCTAssertEqual(hello.data["version"] as? String, RelayFrames.version)
        XCTAssertEqual(relay.counters.connectionsAccepted, 1)
        XCTAssertEqual(relay.counters.framesOut, 1)
        XCTAssertEqual(relay.counters.bytesOut, 4 + hello.bytes.count)
        XCTAssertTrue(peer.isActive)
    }

    func testNonHelloFirstFrameCloses() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let peer = relay.connect(label: "peer")
        _ = peer.receive()
        peer.send(Frames.message(from: Node.a, to: [Node.b], id: Node.newID()))
        XCTAssertFalse(peer.isActive)
        peer.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.handshakeViolation), 1)
        XCTAssertEqual(relay.counters.connectionsClosed, 1)
        XCTAssertNil(relay.context.registry.lookup(Node.guid(Node.a)))
        // Also an ACK, a JOIN, a ROUTING first: all close.
        for first in [Frames.ack(Node.newID()), Frames.join(from: Node.a, dataID: Node.newID()), #"{"msg_type":"ROUTING","msg_data":{"nodes":[]}}"#] {
            let other = relay.connect(label: "other")
            _ = other.receive()
            other.send(first)
            XCTAssertFalse(other.isActive, first)
        }
        XCTAssertEqual(relay.counters.count(DropReason.handshakeViolation), 4)
    }

    func testGarbageFirstFrameCloses() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let peer = relay.connect(label: "peer")
        _ = peer.receive()
        peer.send("this is not json")
        XCTAssertFalse(peer.isActive)
        peer.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.handshakeViolation), 1)
    }

    func testInvalidHelloNackedAndClosed() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let peer = relay.connect(label: "peer")
        _ = peer.receive()
        let helloID = Node.newID()
        // sender_id and msg_data.node_id name different nodes.
        peer.send(
            #"{"msg_type":"HELLO","msg_id":"\#(helloID)","ttl":1,"flood":false,"sender_id":"LocalNode@\#(Node.a)","msg_data":{"node_id":"\#(Node.b)"}}"#)
        guard let nack = peer.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.dataMsgID, helloID)
        XCTAssertEqual(nack.reason, "invalid")
        XCTAssertFalse(peer.isActive)
        XCTAssertNil(relay.context.registry.lookup(Node.guid(Node.a)))
        XCTAssertNil(relay.context.registry.lookup(Node.guid(Node.b)))
        XCTAssertEqual(relay.counters.count(DropReason.handshakeViolation), 1)
        XCTAssertEqual(relay.counters.count(NackReason.invalid), 1)
    }

    func testKeepalivesBeforeHelloAreNotAFrame() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let peer = relay.connect(label: "peer")
        _ = peer.receive()
        peer.send(bytes: [0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertTrue(peer.isActive)
        peer.send(Frames.clientHello(Node.a))
        XCTAssertEqual(peer.receive().map(\.type), ["ROUTING"])
        XCTAssertTrue(peer.isActive)
        XCTAssertEqual(relay.counters.framesIn, 1)
    }

    func testHelloBindsAndRoutingFollows() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.connect(label: "alice")
        _ = alice.receive()
        alice.send(Frames.clientHello(Node.a, name: "alice"))
        // Exactly one frame: the ROUTING, no second HELLO.
        guard let routing = alice.receiveOne() else { return }
        XCTAssertEqual(routing.type, "ROUTING")
        XCTAssertEqual(routing.ttl, 1)
        XCTAssertEqual(routing.flood, false)
        XCTAssertEqual(routing.sender, "relay@\(Node.relay)")
        XCTAssertEqual(routing.data["node_id"] as? String, Node.relay)
        XCTAssertNotNil(relay.context.registry.lookup(Node.guid(Node.a)))
        XCTAssertEqual(relay.context.registry.count, 1)

        // Bob (SPEC.md HELLO, no name) sees Alice, written name@GUID.
        let bob = relay.connect(label: "bob")
        _ = bob.receive()
        bob.send(Frames.hello(Node.b))
        guard let bobRouting = bob.receiveOne() else { return }
        XCTAssertEqual(bobRouting.type, "ROUTING")
        let entries = Dictionary(bobRouting.routingNodes, uniquingKeysWith: { first, _ in first })
        XCTAssertEqual(entries["alice@\(Node.a)"], 1, "\(bobRouting.routingNodes)")
        for (node, ttl) in bobRouting.routingNodes {
            XCTAssertTrue(node.contains("@"), "entry not name@GUID: \(node)")
            XCTAssertEqual(ttl, 1)
        }
        XCTAssertEqual(relay.context.registry.count, 2)
        // Alice got nothing yet: deltas go out on the routing timer.
        alice.expectNothing()
    }

    func testRoutingToClientsOffStillSendsEmptyRouting() {
        let relay = TestRelay { $0.routing.toClients = false }
        defer { relay.shutdown() }
        _ = relay.client(Node.a, name: "alice")
        let bob = relay.connect(label: "bob")
        _ = bob.receive()
        bob.send(Frames.hello(Node.b, name: "bob"))
        guard let routing = bob.receiveOne() else { return }
        XCTAssertEqual(routing.type, "ROUTING")
        XCTAssertEqual((routing.data["nodes"] as? [Any])?.count, 0)
    }

    func testIDInUseNackedAndClosed() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let impostor = relay.connect(label: "impostor")
        _ = impostor.receive()
        let helloID = Node.newID()
        impostor.send(Frames.clientHello(Node.a, name: "mallory", msgID: helloID))
        guard let nack = impostor.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "id_in_use")
        XCTAssertEqual(nack.dataMsgID, helloID)
        XCTAssertEqual(nack.data["stored"] as? Bool, false)
        XCTAssertFalse(impostor.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.idInUse), 1)
        XCTAssertEqual(relay.counters.count(NackReason.idInUse), 1)
        // The first connection keeps the id: a message for Alice still reaches her.
        XCTAssertTrue(alice.isActive)
        let id = Node.newID()
        bob.send(Frames.message(from: Node.b, to: [Node.a], id: id))
        XCTAssertEqual(alice.receiveOne()?.dataMsgID, id)
    }

    func testHelloWithRelayIDRefused() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let peer = relay.connect(label: "peer")
        _ = peer.receive()
        peer.send(Frames.hello(Node.relay, name: "fake"))
        XCTAssertEqual(peer.receiveOne()?.reason, "id_in_use")
        XCTAssertFalse(peer.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.idInUse), 1)
    }

    func testLaterHelloRefreshesAndForeignHelloIsSpoof() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice", existingClientStyle: true)
        alice.send(Frames.clientHello(Node.a, name: "alice"))
        alice.expectNothing()
        XCTAssertTrue(alice.isActive)
        let helloID = Node.newID()
        alice.send(Frames.clientHello(Node.b, name: "bob", msgID: helloID))
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.reason, "spoofed_sender")
        XCTAssertEqual(nack.dataMsgID, helloID)
        XCTAssertEqual(relay.counters.count(DropReason.spoofedSender), 1)
        XCTAssertNil(relay.context.registry.lookup(Node.guid(Node.b)))
    }

    func testFrameTooLargeCloses() {
        let relay = TestRelay { $0.limits.maxFrameBytes = 300 }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        // 301 bytes announced; only the length is sent.
        alice.send(bytes: [0, 0, 0x01, 0x2D])
        XCTAssertFalse(alice.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.frameTooLarge), 1)
        XCTAssertNil(relay.context.registry.lookup(Node.guid(Node.a)))
        // Exactly at the limit is fine.
        let bob = relay.client(Node.b, name: "bob")
        let padded = #"{"msg_type":"ROUTING","msg_data":{"nodes":[]},"pad":""# 
        let body = padded + String(repeating: "p", count: 300 - padded.utf8.count - 2) + "\"}"
        XCTAssertEqual(body.utf8.count, 300)
        bob.send(body)
        XCTAssertTrue(bob.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.routingFromClient), 1)
    }

    func testHandshakeTimeout() {
        let relay = TestRelay { $0.timeouts.handshake = 10 }
        defer { relay.shutdown() }
        let opened = NIODeadline.now()
        let silent = relay.connect(label: "silent")
        let alice = relay.client(Node.a, name: "alice")
        relay.shard.sweepIdle(now: opened + .seconds(9))
        relay.loop.run()
        XCTAssertTrue(silent.isActive)
        relay.shard.sweepIdle(now: opened + .seconds(11))
        relay.loop.run()
        XCTAssertFalse(silent.isActive)
        XCTAssertTrue(alice.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.handshakeTimeout), 1)
    }

    func testRoutingFromClientIgnored() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        alice.send(#"{"msg_data":{"nodes":[{"node_id":"evil@\#(Node.x)","ttl":1}]},"flood":false,"msg_type":"ROUTING","msg_id":"\#(Node.newID())","ttl":1,"sender_id":"LocalNode@\#(Node.a)","target_id":null}"#)
        alice.expectNothing()
        bob.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.routingFromClient), 1)
        XCTAssertNil(relay.shard.nextHop(for: Node.guid(Node.x)))
    }

    func testInvalidAndMalformedAfterHandshake() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        // Invalid MESSAGE (no channel) with an id: NACK invalid naming it.
        let id = Node.newID()
        alice.send(#"{"msg_type":"MESSAGE","msg_data":{"msg_id":"\#(id)","recipient":[{"node_id":"\#(Node.b)"}],"timestamp":"t","channel_id":"c","message":"m"}}"#)
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "invalid")
        XCTAssertEqual(nack.dataMsgID, id)
        XCTAssertEqual(relay.counters.count(DropReason.invalid), 1)
        // Not JSON: dropped, counted, no answer, connection kept.
        alice.send("{\"msg_type\":")
        alice.expectNothing()
        XCTAssertTrue(alice.isActive)
        XCTAssertEqual(relay.counters.count(DropReason.malformed), 1)
    }

    func testClosedNodeIsUnbound() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        XCTAssertNotNil(relay.context.registry.lookup(Node.guid(Node.a)))
        alice.close()
        XCTAssertNil(relay.context.registry.lookup(Node.guid(Node.a)))
        XCTAssertNil(relay.shard.directory[Node.guid(Node.a)])
        XCTAssertEqual(relay.counters.connectionsClosed, 1)
        // The id is free again.
        let again = relay.client(Node.a, name: "alice")
        XCTAssertTrue(again.isActive)
    }
}

final class PipelineTests: XCTestCase {
    func testSeveralFramesInOneReadAndFramesSplitAcrossReads() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let ids = [Node.newID(), Node.newID(), Node.newID()]
        let bytes = ids.flatMap { frameBytes(Frames.message(from: Node.a, to: [Node.b], id: $0)) }
        // Two frames and a half in the first read, the rest in the second.
        let cut = frameBytes(Frames.message(from: Node.a, to: [Node.b], id: ids[0])).count * 2 + 17
        alice.send(bytes: Array(bytes[..<cut]))
        XCTAssertEqual(bob.receive().compactMap(\.dataMsgID), Array(ids.prefix(2)))
        alice.send(bytes: Array(bytes[cut...]))
        XCTAssertEqual(bob.receive().compactMap(\.dataMsgID), [ids[2]])
    }

    /// The connection handler splits the frames itself: a stream fed one byte a read (the length
    /// prefix cut too), with keepalives between the frames, gives the same messages in order.
    func testFramesFedOneByteAReadArriveWholeAndInOrder() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let ids = [Node.newID(), Node.newID(), Node.newID()]
        let keepalive: [UInt8] = [0, 0, 0, 0]
        let bytes = ids.flatMap { keepalive + frameBytes(Frames.message(from: Node.a, to: [Node.b], id: $0)) }
        for byte in bytes {
            alice.send(bytes: [byte])
        }
        XCTAssertEqual(bob.receive().compactMap(\.dataMsgID), ids)
    }

    func testWelcomeRoutingChunkedAt8KiB() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        var names: [String] = []
        for index in 0..<90 {
            let id = String(format: "%08x-0000-4000-8000-%012x", index + 1, index + 1)
            let name = "n\(index)" + String(repeating: "x", count: 60)
            names.append("\(name)@\(id)")
            _ = relay.client(id, name: name)
        }
        let last = relay.connect(label: "last")
        _ = last.receive()
        last.send(Frames.hello(Node.a, name: "last"))
        let welcome = last.receive()
        XCTAssertGreaterThan(welcome.count, 1)
        XCTAssertTrue(welcome.allSatisfy { $0.type == "ROUTING" && $0.ttl == 1 && $0.flood == false })
        for frame in welcome {
            XCTAssertLessThanOrEqual(frame.bytes.count, 8192)
        }
        let entries = welcome.flatMap(\.routingNodes)
        // Every other node, never the client's own entry (PROFILE.md sections 4a and 9).
        XCTAssertEqual(Set(entries.map(\.0)), Set(names))
        XCTAssertEqual(entries.count, names.count)
        XCTAssertEqual(Set(welcome.compactMap(\.msgID)).count, welcome.count)
    }
}
