import Foundation
import XCTest

/// PROFILE.md sections 2 and 5: unicast relaying between directly connected nodes, ACK and NACK.
final class UnicastTests: RelayTestCase {
    func testMessageIsDeliveredAndAckedOnlyAfterTheRecipientAcks() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id, text: "hi bob"))

        let delivered = bob.client.receive(verb: "MESSAGE", timeout: expectWithin)
        assertRelayHead(delivered, verb: "MESSAGE", ttl: 31, flood: false, sender: alice.address)
        let message = try XCTUnwrap(delivered)
        XCTAssertEqual((message["msg_id"] as? String)?.lowercased(), id, "head msg_id must be msg_data.msg_id: \(message)")
        XCTAssertEqual(message.dataMessageID?.lowercased(), id)
        XCTAssertEqual(message.recipientIDs, [bob.id])
        XCTAssertEqual((message.data["node_id"] as? String)?.lowercased(), alice.id)
        XCTAssertEqual(message.data["message"] as? String, Data("hi bob".utf8).base64EncodedString())
        XCTAssertEqual(message.data["channel"] as? String, "integration")
        XCTAssertEqual(message.data["timestamp"] as? String, "2016-05-04T13:23:29.123456+01:00")

        let early = alice.client.receive(timeout: quietPeriod) { self.isAnswer($0, to: id) }
        XCTAssertNil(early, "alice got an answer before bob ACKed: \(String(describing: early))")

        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        let ack = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        assertRelayHead(ack, verb: "ACK", ttl: 1, flood: false, sender: relay.address)
        XCTAssertEqual((ack?.data["node_id"] as? String)?.lowercased(), relay.nodeID, "ACK node_id: \(String(describing: ack))")
    }

    func testResentMessageIsDeliveredOnce() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let id = Ids.make()
        let frame = Frames.message(from: alice, to: [bob.id], id: id)
        alice.client.send(json: frame)
        XCTAssertNotNil(bob.client.receive(verb: "MESSAGE", timeout: expectWithin), "first copy not delivered")
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }?.verb, "ACK")
        alice.client.send(json: frame)
        let again = bob.client.receive(verb: "MESSAGE", timeout: quietPeriod)
        XCTAssertNil(again, "a re-sent msg_id was delivered twice: \(String(describing: again))")
    }

    func testMessageToAnUnknownNodeIsNackedUnreachableAndStoredAsTheNackSays() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let nobody = Ids.make()
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [nobody], id: id))
        let nack = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        assertNack(nack, for: id, reason: "unreachable", relay: relay)
        let stored = nack?.data["stored"] as? Bool
        print("NACK for a message to an unknown node: stored = \(String(describing: stored))")

        // The NACK must tell the truth: stored means delivered once the node comes.
        let late = try bind(relay, name: "late", id: nobody)
        let delivered = late.client.receive(timeout: stored == true ? expectWithin : 1) {
            $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id
        }
        if stored == true {
            XCTAssertNotNil(delivered, "NACK said stored: true, but the message did not come when the recipient connected")
        } else {
            XCTAssertNil(delivered, "NACK said stored: false, but the message was delivered later")
        }
    }

    func testMultiRecipientMessageIsNarrowedPerRecipientAndAckedAfterAll() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let carol = try bind(relay, name: "carol")
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id, carol.id], id: id))
        for node in [bob, carol] {
            let delivered = node.client.receive(verb: "MESSAGE", timeout: expectWithin)
            assertRelayHead(delivered, verb: "MESSAGE", ttl: 31, flood: false, sender: alice.address)
            XCTAssertEqual(delivered?.recipientIDs, [node.id], "\(node.label): recipient not narrowed to itself")
            XCTAssertEqual(delivered?.dataMessageID?.lowercased(), id)
        }
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        let early = alice.client.receive(timeout: quietPeriod) { self.isAnswer($0, to: id) }
        XCTAssertNil(early, "alice got an answer when only bob had ACKed: \(String(describing: early))")
        carol.client.send(json: Frames.ack(from: carol, acknowledging: id))
        let ack = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        assertRelayHead(ack, verb: "ACK", ttl: 1, flood: false, sender: relay.address)
        let extra = alice.client.receive(timeout: quietPeriod) { self.isAnswer($0, to: id) }
        XCTAssertNil(extra, "a second answer for one message: \(String(describing: extra))")
    }

    func testRecipientsEqualToTheSenderOrTheRelayAreSkipped() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [alice.id, relay.nodeID, bob.id], id: id))
        let delivered = bob.client.receive(verb: "MESSAGE", timeout: expectWithin)
        XCTAssertEqual(delivered?.recipientIDs, [bob.id], "recipient not narrowed to bob: \(String(describing: delivered))")
        let own = alice.client.receive(timeout: quietPeriod) { $0.verb == "MESSAGE" || self.isAnswer($0, to: id) }
        XCTAssertNil(own, "alice got her own message or an answer before bob ACKed: \(String(describing: own))")
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }?.verb, "ACK")
    }

    func testPartlyUnreachableRecipientsAreNamedInTheNackAndTheRestIsAcked() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let nobody = Ids.make()
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id, nobody], id: id))
        let delivered = bob.client.receive(verb: "MESSAGE", timeout: expectWithin)
        XCTAssertEqual(delivered?.recipientIDs, [bob.id], "recipient not narrowed to bob: \(String(describing: delivered))")
        let nack = alice.client.receive(timeout: expectWithin) { $0.verb == "NACK" && $0.dataMessageID?.lowercased() == id }
        assertNack(nack, for: id, reason: "unreachable", relay: relay)
        XCTAssertEqual(nack?.recipientIDs, [nobody], "the NACK must name the unreachable recipient: \(String(describing: nack))")
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        let ack = alice.client.receive(timeout: expectWithin) { $0.verb == "ACK" && $0.dataMessageID?.lowercased() == id }
        XCTAssertNotNil(ack, "no ACK after bob, the reachable recipient, ACKed")
    }

    func testMessageWithTTLOneIsNackedTTLExpired() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id, ttl: 1))
        let nack = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        assertNack(nack, for: id, reason: "ttl_expired", relay: relay)
        let leaked = bob.client.receive(verb: "MESSAGE", timeout: quietPeriod)
        XCTAssertNil(leaked, "a message with ttl 1 was forwarded: \(String(describing: leaked))")
    }

    func testHeadIsReadLeniently() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")

        // Lower-case verb, no ttl, no flood: MESSAGE with its defaults (32, false).
        var lower = Frames.message(from: alice, to: [bob.id], ttl: nil)
        lower["msg_type"] = "message"
        lower.removeValue(forKey: "flood")
        alice.client.send(json: lower)
        let first = bob.client.receive(verb: "MESSAGE", timeout: expectWithin)
        assertRelayHead(first, verb: "MESSAGE", ttl: 31, flood: false, sender: alice.address)

        // ttl above 32 is clamped to 32, so delivered with 31.
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], ttl: 100))
        let second = bob.client.receive(verb: "MESSAGE", timeout: expectWithin)
        assertRelayHead(second, verb: "MESSAGE", ttl: 31, flood: false, sender: alice.address)

        // Unknown head keys are ignored.
        var extra = Frames.message(from: alice, to: [bob.id])
        extra["x_custom"] = ["anything": 1]
        alice.client.send(json: extra)
        XCTAssertNotNil(bob.client.receive(verb: "MESSAGE", timeout: expectWithin), "a message with an unknown head key was not delivered")
    }

    func testCertificateRequestAndAnswerAreRelayedByRecipientId() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let id = Ids.make()
        alice.client.send(json: Frames.getCertificate(from: alice, id: id, recipientID: bob.id))
        let request = bob.client.receive(verb: "GETCERTIFICATE", timeout: expectWithin)
        assertRelayHead(request, verb: "GETCERTIFICATE", ttl: 31, flood: false, sender: alice.address)
        XCTAssertEqual(request?.dataMessageID?.lowercased(), id)
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }?.verb, "ACK")

        // SPEC.md: the CERTIFICATE answer carries the GETCERTIFICATE's msg_id.
        bob.client.send(json: Frames.certificate(from: bob, id: id, recipientID: alice.id))
        let answer = alice.client.receive(verb: "CERTIFICATE", timeout: expectWithin)
        XCTAssertNotNil(answer, "the CERTIFICATE answering a GETCERTIFICATE (same msg_id, as SPEC.md says) did not arrive")
        assertRelayHead(answer, verb: "CERTIFICATE", ttl: 31, flood: false, sender: bob.address)
        XCTAssertEqual(answer?.data["certificate"] as? String, "TUlJQg==")
    }

    func testGetCertificateAddressedToTheRelayIsNackedNoCertificate() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bare = Ids.make()
        alice.client.send(json: Frames.getCertificate(from: alice, id: bare))
        assertNack(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: bare) }, for: bare, reason: "no_certificate", relay: relay)
        let addressed = Ids.make()
        alice.client.send(json: Frames.getCertificate(from: alice, id: addressed, recipientID: relay.nodeID))
        assertNack(
            alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: addressed) }, for: addressed, reason: "no_certificate",
            relay: relay)
    }

    func testGetKeyAddressedToTheRelayIsNackedNotAMember() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let id = Ids.make()
        alice.client.send(json: Frames.getKey(from: alice, id: id))
        assertNack(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }, for: id, reason: "not_a_member", relay: relay)
    }

    func testNonASCIITextArrivesEscapedAsASCII() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let channel = "Caf\u{e9} \u{2615} \u{1F600} \u{fc}ber"
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], text: "gr\u{fc}\u{df}e", channel: channel))
        let frame = try XCTUnwrap(bob.client.receiveFrame(verb: "MESSAGE", timeout: expectWithin), "the message did not arrive")
        XCTAssertTrue(frame.bytes.allSatisfy { $0 < 0x80 }, "not ASCII only: \(TestClient.text(frame.bytes))")
        let text = String(decoding: frame.bytes, as: UTF8.self).lowercased()
        XCTAssertTrue(text.contains("\\u00e9"), "é not escaped as \\u00e9: \(text)")
        XCTAssertTrue(text.contains("\\u2615"), "U+2615 not escaped: \(text)")
        XCTAssertTrue(text.contains("\\ud83d\\ude00"), "U+1F600 not escaped as a surrogate pair: \(text)")
        XCTAssertEqual(frame.json.data["channel"] as? String, channel)
        XCTAssertTrue(JSON.isCompact(frame.bytes), "not compact: \(TestClient.text(frame.bytes))")
    }

    func testMessageNotAckedWithinTheAckTimeoutIsAnsweredAnyway() throws {
        let relay = try startRelay(config: "timeouts:\n  ack: 1\n")
        let alice = try bind(relay, name: "alice")
        let mute = try bind(relay, name: "mute")
        let id = Ids.make()
        let sent = Date()
        alice.client.send(json: Frames.message(from: alice, to: [mute.id], id: id))
        XCTAssertNotNil(mute.client.receive(verb: "MESSAGE", timeout: expectWithin), "not delivered")
        let answer = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        let after = Date().timeIntervalSince(sent)
        XCTAssertNotNil(answer, "no ACK or NACK for a message the next hop never ACKed (ack timeout 1 s)")
        XCTAssertGreaterThanOrEqual(after, 0.8, "answered after \(after) s, before the next hop's ACK timeout")
        if answer?.verb == "NACK" {
            assertNack(answer, for: id, reason: "unreachable", relay: relay)
        }
    }
}
