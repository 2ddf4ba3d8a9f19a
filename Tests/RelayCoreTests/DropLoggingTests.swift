import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import XCTest

@testable import RelayCore

/// PROFILE.md: "never silent about what it drops (every drop has a reason, a log line at debug
/// level and a counter)". Each case makes one drop happen and checks both.
final class DropLoggingTests: XCTestCase {
    private func assertDropLogged(
        _ reason: DropReason, in relay: TestRelay, file: StaticString = #filePath, line: UInt = #line,
        _ action: () -> Void
    ) {
        let countBefore = relay.counters.count(reason)
        let logsBefore = relay.logs.all.count
        action()
        relay.loop.run()  // store completions come back to the loop as tasks
        XCTAssertEqual(relay.counters.count(reason), countBefore + 1, "\(reason.rawValue) not counted", file: file, line: line)
        // Debug or above (a failed store write is a warning).
        let lines = relay.logs.all.dropFirst(logsBefore).filter { $0.level >= .debug }
        XCTAssertFalse(lines.isEmpty, "drop \(reason.rawValue) has no log line", file: file, line: line)
    }

    func testDuplicateMessageDropIsLogged() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        let message = Frames.message(from: Node.a, to: [Node.b], id: id)
        alice.send(message)
        _ = bob.receive()
        // Re-sent while the first copy awaits Bob's ACK.
        assertDropLogged(.duplicateMessage, in: relay) { alice.send(message) }
        bob.send(Frames.ack(id))
        _ = alice.receive()
        // Re-sent after Bob's ACK.
        assertDropLogged(.duplicateMessage, in: relay) { alice.send(message) }
    }

    func testConnectTTLExpiredDropIsLogged() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        _ = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        assertDropLogged(.ttlExpired, in: relay) {
            alice.send(#"{"msg_type":"CONNECT","ttl":1,"msg_id":"\#(id)","msg_data":{"src_node_id":"\#(Node.a)","dst_node_id":"\#(Node.b)","src":":4000","dst":null}}"#)
        }
        XCTAssertEqual(alice.receiveOne()?.reason, "ttl_expired")
    }

    func testOtherDropsAreLogged() {
        let relay = TestRelay { $0.limits.floodBurst = 1; $0.limits.floodPerSecond = 0.001 }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        _ = relay.client(Node.b, name: "bob")
        assertDropLogged(.malformed, in: relay) { alice.send("nope") }
        assertDropLogged(.invalid, in: relay) {
            alice.send(#"{"msg_type":"KEY","msg_data":{"msg_id":"\#(Node.newID())"}}"#)
        }
        // A MESSAGE for a node that is not connected is stored (PROFILE.md section 6), not dropped;
        // CONNECT to it is never stored: that is the drop `unreachable`.
        _ = alice.receive()  // the NACK `invalid` above
        let storedBefore = relay.counters.stored
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: Node.newID()))
        XCTAssertEqual(alice.receiveOne()?.data["stored"] as? Bool, true)
        XCTAssertEqual(relay.counters.stored, storedBefore + 1)
        XCTAssertEqual(relay.counters.count(DropReason.unreachable), 0, "a stored message counted as dropped")
        assertDropLogged(.unreachable, in: relay) {
            alice.send(Frames.connect(src: ":4000", dst: nil, srcNode: Node.a, dstNode: Node.x, msgID: Node.newID()))
        }
        XCTAssertEqual(alice.receiveOne()?.data["stored"] as? Bool, false)
        assertDropLogged(.ttlExpired, in: relay) { alice.send(Frames.message(from: Node.a, to: [Node.b], id: Node.newID(), ttl: 1)) }
        assertDropLogged(.unknownAck, in: relay) { alice.send(Frames.ack(Node.newID())) }
        assertDropLogged(.routingFromClient, in: relay) { alice.send(#"{"msg_type":"ROUTING","msg_data":{"nodes":[]}}"#) }
        assertDropLogged(.floodNoID, in: relay) { alice.send(Frames.join(from: Node.a, dataID: nil)) }
        assertDropLogged(.floodTTLExpired, in: relay) { alice.send(Frames.join(from: Node.a, dataID: Node.newID(), ttl: 1)) }
        let joinID = Node.newID()
        alice.send(Frames.join(from: Node.a, dataID: joinID))
        assertDropLogged(.floodDuplicate, in: relay) { alice.send(Frames.join(from: Node.a, dataID: joinID)) }
        assertDropLogged(.floodOverBudget, in: relay) { alice.send(Frames.join(from: Node.a, dataID: Node.newID())) }
        assertDropLogged(.spoofedSender, in: relay) { alice.send(Frames.message(from: Node.b, to: [Node.b], id: Node.newID())) }
        let late = relay.connect(label: "late")
        assertDropLogged(.handshakeViolation, in: relay) { late.send(Frames.ack(Node.newID())) }
        let twin = relay.connect(label: "twin")
        assertDropLogged(.idInUse, in: relay) { twin.send(Frames.clientHello(Node.a)) }
        let silent = relay.connect(label: "silent")
        assertDropLogged(.handshakeTimeout, in: relay) {
            relay.shard.sweepIdle(now: .now() + .seconds(11))
            relay.loop.run()
        }
        XCTAssertFalse(silent.isActive)
    }

    /// PROFILE.md section 6: what the store refuses or gives up on is counted and logged too.
    func testStoreDropsAreLogged() {
        let relay = TestRelay { $0.store.perRecipientMessages = 1; $0.store.maxAttempts = 1 }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: Node.newID()))
        XCTAssertEqual(alice.receiveOne()?.data["stored"] as? Bool, true)
        assertDropLogged(.queueFull, in: relay) { alice.send(Frames.message(from: Node.a, to: [Node.x], id: Node.newID())) }
        XCTAssertEqual(alice.receiveOne()?.reason, "queue_full")
        relay.offline.failWrites = true
        assertDropLogged(.storeFailed, in: relay) { alice.send(Frames.message(from: Node.a, to: [Node.c], id: Node.newID())) }
        XCTAssertEqual(alice.receiveOne()?.data["stored"] as? Bool, false)
        relay.offline.failWrites = false
        // Xena's one stored message, delivered once without an ACK: store.max_attempts 1 reached.
        let xena = relay.connect(label: "xena")
        _ = xena.receive()
        xena.send(Frames.hello(Node.x, name: "xena"))
        XCTAssertEqual(xena.receive().map(\.type), ["ROUTING", "MESSAGE"])
        assertDropLogged(.storeGaveUp, in: relay) {
            relay.shard.expireAcks(now: .now() + .seconds(11))
            relay.loop.run()
        }
        XCTAssertTrue(relay.offline.messages.isEmpty)
    }
}
