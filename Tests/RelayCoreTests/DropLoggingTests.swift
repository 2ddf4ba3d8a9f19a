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
        XCTAssertEqual(relay.counters.count(reason), countBefore + 1, "\(reason.rawValue) not counted", file: file, line: line)
        let lines = relay.logs.all.dropFirst(logsBefore).filter { $0.level == .debug || $0.level == .info }
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
        assertDropLogged(.unreachable, in: relay) { alice.send(Frames.message(from: Node.a, to: [Node.x], id: Node.newID())) }
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
        assertDropLogged(.handshakeTimeout, in: relay) { relay.loop.advanceTime(by: .seconds(11)) }
        XCTAssertFalse(silent.isActive)
    }
}
