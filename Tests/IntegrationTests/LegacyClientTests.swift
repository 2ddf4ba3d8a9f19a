import Foundation
import XCTest

/// CLIENT-FRAMES.md: the existing C# client's frames, as it really sends them, interoperate.
final class LegacyClientTests: RelayTestCase {
    func testExistingClientChatFrameIsRelayedAsMessageAndItGetsTheAck() throws {
        let relay = try startRelay()
        let legacy = try bindLegacy(relay)
        let bob = try bind(relay, name: "bob")
        let id = Ids.make()
        legacy.client.send(text: LegacyFrames.chat(from: legacy.id, to: [legacy.id, bob.id], messageID: id))

        let delivered = bob.client.receive(verb: "MESSAGE", timeout: expectWithin)
        assertRelayHead(delivered, verb: "MESSAGE", ttl: 31, flood: false, sender: legacy.address)
        XCTAssertEqual((delivered?["msg_id"] as? String)?.lowercased(), id, "head msg_id must be the real id, not zero: \(String(describing: delivered))")
        XCTAssertEqual(delivered?.dataMessageID?.lowercased(), id)
        XCTAssertEqual(delivered?.recipientIDs, [bob.id], "recipient must be narrowed to bob (sender skipped)")
        XCTAssertEqual(delivered?.data["message"] as? String, "hi from client")
        XCTAssertEqual(delivered?.data["channel"] as? String, "Test Channel")

        let own = legacy.client.receive(timeout: quietPeriod) { $0.verb == "MESSAGE" || $0.verb == "HELLO" || self.isAnswer($0, to: id) }
        XCTAssertNil(own, "the sender got its own message back or an answer before bob ACKed: \(String(describing: own))")
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        let ack = legacy.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        assertRelayHead(ack, verb: "ACK", ttl: 1, flood: false, sender: relay.address)
    }

    func testExistingClientGetsFramesItAcceptsAndItsAckWithoutNodeIdCompletesDelivery() throws {
        let relay = try startRelay()
        let legacy = try bindLegacy(relay)
        let bob = try bind(relay, name: "bob")
        let id = Ids.make()
        bob.client.send(json: Frames.message(from: bob, to: [legacy.id], id: id))
        let delivered = try XCTUnwrap(legacy.client.receive(verb: "MESSAGE", timeout: expectWithin), "bob's message did not reach the existing client")
        // What the existing client accepts (CLIENT-FRAMES.md, "What it accepts from a relay").
        assertRelayHead(delivered, verb: "MESSAGE", ttl: 31, flood: false, sender: bob.address)
        XCTAssertNotEqual((delivered["sender_id"] as? String)?.lowercased().hasSuffix(legacy.id), true)
        XCTAssertNotNil(delivered.data["timestamp"] as? String)
        XCTAssertEqual(delivered.recipientIDs, [legacy.id])

        legacy.client.send(text: LegacyFrames.ack(id))
        let ack = bob.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        assertRelayHead(ack, verb: "ACK", ttl: 1, flood: false, sender: relay.address)
    }

    func testExistingClientJoinIsFloodedWithItsMsgDataId() throws {
        let relay = try startRelay()
        let legacy = try bindLegacy(relay)
        let bob = try bind(relay, name: "bob")
        let id = Ids.make()
        legacy.client.send(text: LegacyFrames.join(from: legacy.id, channelID: Ids.make(), messageID: id))
        let join = bob.client.receive(verb: "JOIN", timeout: expectWithin)
        assertRelayHead(join, verb: "JOIN", ttl: 31, flood: true, sender: legacy.address)
        XCTAssertEqual(join?.dataMessageID?.lowercased(), id)
    }
}
