import Foundation
import XCTest

/// PROFILE.md section 3: a connection speaks for the id its HELLO bound, and one id has one
/// connection.
final class IdentityTests: RelayTestCase {
    func testSpoofedSenderIsNackedAndNotRelayed() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let carol = try bind(relay, name: "carol")
        let mallory = Ids.make()

        // msg_data.node_id names another node.
        let viaData = Ids.make()
        var spoofed = Frames.message(from: alice, to: [bob.id], id: viaData)
        spoofed.removeValue(forKey: "sender_id")
        spoofed["msg_data"] = spoofed.data.merging(["node_id": mallory]) { $1 }
        alice.client.send(json: spoofed)
        assertNack(
            alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: viaData) }, for: viaData, reason: "spoofed_sender",
            relay: relay)

        // Head sender_id names another node (no msg_data.node_id).
        let viaHead = Ids.make()
        var spoofedHead = Frames.message(from: carol, to: [bob.id], id: viaHead)
        spoofedHead["sender_id"] = "mallory@\(mallory)"
        var data = spoofedHead.data
        data.removeValue(forKey: "node_id")
        spoofedHead["msg_data"] = data
        carol.client.send(json: spoofedHead)
        assertNack(
            carol.client.receive(timeout: expectWithin) { self.isAnswer($0, to: viaHead) }, for: viaHead, reason: "spoofed_sender",
            relay: relay)

        let leaked = bob.client.receive(verb: "MESSAGE", timeout: quietPeriod)
        XCTAssertNil(leaked, "a spoofed message was relayed: \(String(describing: leaked))")

        // One mismatch does not end the connection.
        let honest = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: honest))
        XCTAssertEqual(bob.client.receive(verb: "MESSAGE", timeout: expectWithin)?.dataMessageID?.lowercased(), honest)
    }

    func testSecondConnectionWithALiveIdIsRefusedAndTheFirstKeepsWorking() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let (intruder, _) = try connectAndReadHello(relay, label: "intruder")
        let helloID = Ids.make()
        intruder.send(json: Frames.hello(id: alice.id, name: "intruder", messageID: helloID))
        let answer = intruder.receive(timeout: expectWithin) { $0.verb == "NACK" || $0.verb == "ROUTING" }
        XCTAssertEqual(answer?.verb, "NACK", "a HELLO for a live id got \(String(describing: answer))")
        assertNack(answer, for: helloID, reason: "id_in_use", relay: relay)
        XCTAssertTrue(intruder.expectClosed(timeout: expectWithin), "the refused connection was not closed")

        let id = Ids.make()
        bob.client.send(json: Frames.message(from: bob, to: [alice.id], id: id))
        let delivered = alice.client.receive(verb: "MESSAGE", timeout: expectWithin)
        XCTAssertEqual(delivered?.dataMessageID?.lowercased(), id, "the first connection no longer gets its messages")
        XCTAssertFalse(alice.client.isClosed, "the first connection was closed")
    }

    func testRepeatedSpoofingClosesTheConnection() throws {
        let relay = try startRelay()
        let mallory = try bind(relay, name: "mallory")
        let bob = try bind(relay, name: "bob")
        for _ in 0..<50 {
            let victim = Ids.make()
            var spoofed = Frames.message(from: mallory, to: [bob.id])
            spoofed["sender_id"] = "victim@\(victim)"
            spoofed["msg_data"] = spoofed.data.merging(["node_id": victim]) { $1 }
            if !mallory.client.send(json: spoofed) { break }
        }
        XCTAssertTrue(mallory.client.expectClosed(timeout: expectWithin), "50 spoofed messages in a row did not close the connection")
        XCTAssertNil(bob.client.receive(verb: "MESSAGE", timeout: quietPeriod), "a spoofed message was relayed")
    }

    func testHelloWithTheRelaysOwnIdIsRefused() throws {
        let relay = try startRelay()
        let (client, _) = try connectAndReadHello(relay, label: "impostor")
        let helloID = Ids.make()
        client.send(json: Frames.hello(id: relay.nodeID, name: "impostor", messageID: helloID))
        let answer = client.receive(timeout: expectWithin) { $0.verb == "NACK" || $0.verb == "ROUTING" }
        assertNack(answer, for: helloID, reason: "id_in_use", relay: relay)
        XCTAssertTrue(client.expectClosed(timeout: expectWithin), "a HELLO with the relay's own id did not close the connection")
    }

    func testLaterHelloRefreshesTheConnectionButCannotChangeItsId() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        alice.client.send(json: Frames.hello(id: alice.id, name: "alice"))
        let refused = alice.client.receive(timeout: quietPeriod) { $0.verb == "NACK" }
        XCTAssertNil(refused, "a repeated HELLO with the bound id was refused: \(String(describing: refused))")

        let otherHello = Ids.make()
        alice.client.send(json: Frames.hello(id: Ids.make(), name: "other", messageID: otherHello))
        assertNack(
            alice.client.receive(timeout: expectWithin) { $0.verb == "NACK" }, for: otherHello, reason: "spoofed_sender", relay: relay)

        let id = Ids.make()
        bob.client.send(json: Frames.message(from: bob, to: [alice.id], id: id))
        XCTAssertEqual(alice.client.receive(verb: "MESSAGE", timeout: expectWithin)?.dataMessageID?.lowercased(), id,
            "the connection is no longer bound to alice after the HELLOs")
    }
}
