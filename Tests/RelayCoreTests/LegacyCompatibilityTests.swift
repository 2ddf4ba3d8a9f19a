import Foundation
import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import XCTest

@testable import RelayCore

/// PROFILE.md section 4a: the existing public client never ACKs, learns a node's address only
/// from a HELLO under that node's id, and never announces its channel membership.
final class LegacyCompatibilityTests: XCTestCase {
    private func makeRelay(_ configure: @escaping (inout RelayConfiguration) -> Void = { _ in }) -> TestRelay {
        TestRelay {
            $0.compat.legacyClients = true
            configure(&$0)
        }
    }

    // MARK: Recognition

    func testRecognisedByNodeTypeStringOrVersionOnly() {
        let relay = makeRelay()
        defer { relay.shutdown() }
        _ = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        XCTAssertEqual(relay.context.legacyClients.count, 1, "node_type \"string\" and version ptpchat-client")

        let byVersion = relay.connect(label: "by-version")
        _ = byVersion.receive()
        byVersion.send(
            #"{"msg_type":"HELLO","msg_id":"\#(Node.newID())","ttl":1,"flood":false,"msg_data":{"node_id":"\#(Node.b)","version":"ptpchat-client; 0.1","attributes":{"node_type":"client"}}}"#)
        XCTAssertEqual(byVersion.receive().first?.type, "ROUTING")
        XCTAssertEqual(relay.context.legacyClients.count, 2, "a version starting with ptpchat-client")

        _ = relay.client(Node.c, name: "carol")
        XCTAssertEqual(relay.context.legacyClients.count, 2, "a SPEC client is not the existing client")

        byVersion.close()
        relay.loop.run()
        XCTAssertEqual(relay.context.legacyClients.count, 1, "a closed connection leaves the roster")
    }

    // MARK: Best-effort delivery

    func testDeliveryCountsWhenWrittenIsNeverRepeatedAndNeverStored() {
        let relay = makeRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        let first = Node.newID()
        bob.send(Frames.message(from: Node.b, to: [Node.a], id: first))

        let delivered = alice.receive()
        XCTAssertEqual(delivered.map(\.type), ["HELLO", "MESSAGE"], "bob introduced before his chat: \(delivered.map(\.text))")
        XCTAssertEqual(delivered.first?.sender, "bob@\(Node.b)")
        XCTAssertEqual(delivered.first?.data["node_id"] as? String, Node.b)
        XCTAssertEqual((delivered.first?.data["attributes"] as? [String: Any])?["node_type"] as? String, "client")
        XCTAssertEqual(delivered.last?.dataMsgID, first)
        bob.expectAck(first)

        // The ACK deadline passes: no redelivery, no NACK, nothing stored.
        relay.passAckDeadlines()
        alice.expectNothing()
        bob.expectNothing()
        XCTAssertTrue(relay.offline.messages.isEmpty)
        XCTAssertEqual(relay.counters.legacyDelivered, 1)
        XCTAssertEqual(relay.counters.count(DropReason.ackTimeout), 0)

        // The same message again is a repeat (ACKed, not written); a new one needs no introduction.
        bob.send(Frames.message(from: Node.b, to: [Node.a], id: first))
        bob.expectAck(first)
        alice.expectNothing()
        let second = Node.newID()
        bob.send(Frames.message(from: Node.b, to: [Node.a], id: second))
        XCTAssertEqual(alice.receive().map(\.type), ["MESSAGE"], "one introduction per node per connection")
        bob.expectAck(second)
        XCTAssertEqual(relay.counters.introductions, 1)
    }

    func testStoredWhileOfflineWrittenOnceOnReturnThenDeleted() {
        let relay = makeRelay()
        defer { relay.shutdown() }
        let bob = relay.client(Node.b, name: "bob")
        let ids = [Node.newID(), Node.newID()]
        for id in ids {
            bob.send(Frames.message(from: Node.b, to: [Node.a], id: id))
            guard let nack = bob.receiveOne() else { continue }
            XCTAssertEqual(nack.type, "NACK")
            XCTAssertEqual(nack.data["stored"] as? Bool, true)
        }
        XCTAssertEqual(relay.offline.messages.count, 2)

        let alice = relay.connect(label: "alice")
        _ = alice.receive()
        alice.send(Frames.clientHello(Node.a))
        relay.loop.run()
        let frames = alice.receive()
        XCTAssertEqual(frames.map(\.type), ["ROUTING", "HELLO", "MESSAGE", "MESSAGE"], "\(frames.map(\.text))")
        XCTAssertEqual(frames.compactMap { $0.type == "MESSAGE" ? $0.dataMsgID : nil }, ids)
        relay.loop.run()
        XCTAssertTrue(relay.offline.messages.isEmpty, "written counts as delivered: the rows are deleted")

        // Nothing comes again, on the retry timer or after the ACK deadline.
        relay.offline.makeAllDue()
        relay.loop.advanceTime(by: .seconds(2))
        relay.passAckDeadlines()
        alice.expectNothing()
        bob.expectNothing()
    }

    func testSenderOfALiveCopyFoldedIntoAWrittenDeliveryIsAcked() {
        let relay = makeRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        let id = Node.newID()
        // The existing client's chat arrives once per channel member: the same id twice, one read.
        let frame = Frames.message(from: Node.b, to: [Node.a], id: id)
        bob.send(bytes: frameBytes(frame) + frameBytes(frame))
        XCTAssertEqual(alice.receive().filter { $0.type == "MESSAGE" }.count, 1)
        let answers = bob.receive()
        XCTAssertEqual(answers.map(\.type), ["ACK", "ACK"], "both copies answered, none NACKed: \(answers.map(\.text))")
        carol.expectNothing()
    }

    // MARK: Introductions

    func testJoinIsPrecededByItsOriginsHelloForTheExistingClientOnly() {
        let relay = makeRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        bob.send(Frames.join(from: Node.b, dataID: Node.newID()).replacingOccurrences(of: "LocalNode@", with: "bob@"))
        let toAlice = alice.receive()
        XCTAssertEqual(toAlice.map(\.type), ["HELLO", "JOIN"], "\(toAlice.map(\.text))")
        XCTAssertEqual(toAlice.map(\.sender), ["bob@\(Node.b)", "bob@\(Node.b)"])
        XCTAssertEqual(toAlice.first?.ttl, 1)
        XCTAssertEqual(toAlice.first?.flood, false)
        XCTAssertEqual(carol.receive().map(\.type), ["JOIN"], "a SPEC client gets no introductions")
        bob.expectNothing()
    }

    func testTwoExistingClientsAreIntroducedToEachOtherAsChannelMembers() {
        let relay = makeRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bobPeer = relay.connect(label: "bob")
        _ = bobPeer.receive()
        bobPeer.send(Frames.clientHello(Node.b))
        let welcome = bobPeer.receive()
        XCTAssertEqual(welcome.map(\.type), ["ROUTING", "HELLO", "JOIN"], "\(welcome.map(\.text))")
        let toAlice = alice.receive()
        XCTAssertEqual(toAlice.map(\.type), ["HELLO", "JOIN"], "\(toAlice.map(\.text))")
        for (frames, other) in [(Array(welcome.dropFirst()), Node.a), (toAlice, Node.b)] {
            XCTAssertEqual(frames.map(\.sender), ["LocalNode@\(other)", "LocalNode@\(other)"])
            guard let join = frames.last else { continue }
            XCTAssertEqual(join.data["channel_id"] as? String, Node.channel)
            XCTAssertEqual(join.data["channel"] as? String, "Test Channel")
            XCTAssertEqual(join.dataMsgID, join.msgID, "JOIN carries msg_data.msg_id")
            XCTAssertEqual(join.ttl, 1)
            XCTAssertEqual(join.flood, false)
        }
        XCTAssertEqual(relay.counters.introductions, 2)

        // A SPEC client binding is introduced to nobody and meets nobody.
        _ = relay.client(Node.c, name: "carol")
        alice.expectNothing()
        bobPeer.expectNothing()
    }

    func testHelloRefreshRepeatsTheIntroductionsOfConnectedNodes() {
        let relay = makeRelay { $0.timeouts.helloRefresh = 5 }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        bob.send(Frames.message(from: Node.b, to: [Node.a], id: Node.newID()))
        _ = alice.receive()
        _ = bob.receive()
        relay.shard.stopTimers()
        relay.shard.startTimers()
        relay.loop.advanceTime(by: .seconds(5))
        let refresh = alice.receive().filter { $0.type == "HELLO" }
        XCTAssertEqual(refresh.compactMap(\.sender).sorted(), ["bob@\(Node.b)", "relay@\(Node.relay)"])
        XCTAssertEqual(bob.receive().filter { $0.type == "HELLO" }.compactMap(\.sender), ["relay@\(Node.relay)"])
    }

    // MARK: ROUTING

    func testNoClientIsListedInItsOwnRouting() {
        let relay = makeRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bobPeer = relay.connect(label: "bob")
        _ = bobPeer.receive()
        bobPeer.send(Frames.hello(Node.b, name: "bob"))
        let welcome = bobPeer.receive()
        XCTAssertEqual(welcome.first?.routingNodes.map(\.0), ["alice@\(Node.a)"], "the welcome lists others only")
        relay.shard.sendRoutingDelta()
        let aliceDelta = alice.receive().filter { $0.type == "ROUTING" }.flatMap(\.routingNodes).map(\.0)
        XCTAssertTrue(aliceDelta.contains("bob@\(Node.b)"), "alice learns of bob: \(aliceDelta)")
        XCTAssertFalse(aliceDelta.contains("alice@\(Node.a)"), "alice is not told about herself: \(aliceDelta)")
        let bobDelta = bobPeer.receive().filter { $0.type == "ROUTING" }.flatMap(\.routingNodes).map(\.0)
        XCTAssertFalse(bobDelta.contains("bob@\(Node.b)"), "bob is not told about himself: \(bobDelta)")
    }

    // MARK: Turned off

    func testCompatOffTreatsTheExistingClientAsAnyClient() {
        let relay = TestRelay { $0.compat.legacyClients = false }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let other = relay.client(Node.c, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "bob")
        XCTAssertEqual(relay.context.legacyClients.count, 0)
        alice.expectNothing()
        other.expectNothing()
        let id = Node.newID()
        bob.send(Frames.message(from: Node.b, to: [Node.a], id: id))
        XCTAssertEqual(alice.receive().map(\.type), ["MESSAGE"], "no introduction")
        bob.expectNothing()
        relay.passAckDeadlines()
        XCTAssertEqual(relay.offline.messages.count, 1, "no ACK in time: stored as for any client")
        XCTAssertEqual(relay.counters.introductions, 0)
        XCTAssertEqual(relay.counters.legacyDelivered, 0)
    }
}
