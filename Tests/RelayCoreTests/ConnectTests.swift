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
}
