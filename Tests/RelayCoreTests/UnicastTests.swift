import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import XCTest

@testable import RelayCore

final class UnicastTests: XCTestCase {
    func testMessageForwardedAndAckedAfterNextHopAck() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b)
        let id = Node.newID()
        let sent = Frames.message(from: Node.a, to: [Node.b], id: id, text: "h\u{E9}llo \u{1F600}")
        alice.send(sent)

        guard let delivered = bob.receiveOne() else { return }
        XCTAssertEqual(delivered.type, "MESSAGE")
        XCTAssertEqual(delivered.ttl, 31)
        XCTAssertEqual(delivered.flood, false)
        XCTAssertEqual(delivered.msgID, id)
        XCTAssertEqual(delivered.sender, "alice@\(Node.a)")
        // msg_data as sent (non-ASCII escaped on the wire, same value).
        XCTAssertEqual(canonical(delivered.data), canonical(jsonObject(sent)["msg_data"] as? [String: Any] ?? [:]))
        XCTAssertEqual(delivered.data["message"] as? String, "h\u{E9}llo \u{1F600}")
        XCTAssertTrue(delivered.text.contains("h\\u00e9llo \\ud83d\\ude00"), delivered.text)

        // No ACK to Alice before Bob's.
        alice.expectNothing()
        XCTAssertEqual(relay.counters.acksSent, 0)

        bob.send(Frames.ack(id))
        guard let ack = alice.receiveOne() else { return }
        XCTAssertEqual(ack.type, "ACK")
        XCTAssertEqual(ack.ttl, 1)
        XCTAssertEqual(ack.flood, false)
        XCTAssertEqual(ack.dataMsgID, id)
        XCTAssertEqual(ack.data["node_id"] as? String, Node.relay)
        XCTAssertEqual(ack.sender, "relay@\(Node.relay)")
        bob.expectNothing()
        XCTAssertEqual(relay.counters.acksReceived, 1)
        XCTAssertEqual(relay.counters.acksSent, 1)
        XCTAssertEqual(relay.counters.relayed(.message), 1)
        XCTAssertTrue(relay.shard.pending.isEmpty)
    }

    func testUnnamedSenderForwardedAsNode() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let anonymous = relay.client(Node.a)  // SPEC.md HELLO with a bare id
        let bob = relay.client(Node.b, name: "bob")
        anonymous.send(Frames.message(from: Node.a, to: [Node.b], id: Node.newID()))
        XCTAssertEqual(bob.receiveOne()?.sender, "node@\(Node.a)")
        let weird = relay.connect(label: "weird")
        _ = weird.receive()
        weird.send(Frames.clientHello(Node.x, name: "Local-Node"))
        _ = weird.receive()
        weird.send(Frames.message(from: Node.x, to: [Node.b], id: Node.newID()))
        XCTAssertEqual(bob.receiveOne()?.sender, "node@\(Node.x)")
    }

    /// PROFILE.md section 2: `sender_id` is `node@GUID` only "when it never gave a name". A HELLO
    /// that gives its name in the head `sender_id` and its bare id in `msg_data.node_id` (as the
    /// relay's own HELLO does) gave one.
    func testNameFromSenderIDKeptWhenNodeIDIsBare() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.connect(label: "alice")
        _ = alice.receive()
        alice.send(#"{"msg_type":"HELLO","msg_id":"\#(Node.newID())","ttl":1,"flood":false,"sender_id":"alice@\#(Node.a)","target_id":null,"msg_data":{"node_id":"\#(Node.a)","version":"v","attributes":{"node_type":"client"}}}"#)
        XCTAssertEqual(alice.receive().map(\.type), ["ROUTING"])
        let bob = relay.client(Node.b, name: "bob")
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: Node.newID()))
        XCTAssertEqual(bob.receiveOne()?.sender, "alice@\(Node.a)")
    }

    func testPrettyPrintedUTF8ForwardedCompactASCII() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        let id = Node.newID()
        let pretty = """
            {
              "msg_type" : "MESSAGE",
              "ttl" : 32,
              "msg_data" : {
                "msg_id" : "\(id)",
                "node_id" : "\(Node.a)",
                "recipient" : [ { "node_id" : "\(Node.b)" }, { "node_id" : "\(Node.c)" } ],
                "timestamp" : "2016-05-04T13:23:29+01:00",
                "channel" : "caf\u{E9} \\"quoted\\"",
                "channel_id" : "\(Node.channel)",
                "message" : "gr\u{FC}\u{DF}e \u{1F44B}\\n",
                "attachment" : [ ]
              }
            }
            """
        alice.send(pretty)
        let original = jsonObject(pretty)["msg_data"] as? [String: Any] ?? [:]
        XCTAssertFalse(original.isEmpty)
        for peer in [bob, carol] {
            guard let frame = peer.receiveOne() else { continue }
            XCTAssertFalse(frame.bytes.contains(UInt8(ascii: "\n")), frame.text)
            XCTAssertFalse(frame.text.contains(" : "), frame.text)
            XCTAssertEqual(frame.data["channel"] as? String, "caf\u{E9} \"quoted\"")
            XCTAssertEqual(frame.data["message"] as? String, "gr\u{FC}\u{DF}e \u{1F44B}\n")
            XCTAssertEqual(canonical(frame.data, removing: ["recipient"]), canonical(original, removing: ["recipient"]))
        }
    }

    func testTTLClampedTo32() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: Node.newID(), ttl: 100))
        XCTAssertEqual(bob.receiveOne()?.ttl, 31)
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: Node.newID(), ttl: 2))
        XCTAssertEqual(bob.receiveOne()?.ttl, 1)
    }

    func testTTLExpiredNack() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        for ttl in [1, 0, -4] {
            let id = Node.newID()
            alice.send(Frames.message(from: Node.a, to: [Node.b], id: id, ttl: ttl))
            guard let nack = alice.receiveOne() else { continue }
            XCTAssertEqual(nack.type, "NACK")
            XCTAssertEqual(nack.reason, "ttl_expired")
            XCTAssertEqual(nack.dataMsgID, id)
            XCTAssertEqual(nack.ttl, 32)
        }
        bob.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.ttlExpired), 3)
        XCTAssertEqual(relay.counters.count(NackReason.ttlExpired), 3)
    }

    /// PROFILE.md sections 5 and 6: a recipient that is not connected gets the message later: it
    /// is stored, and the origin hears NACK `unreachable` with `stored: true` (not a drop).
    func testUnreachableNack() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: id))
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "unreachable")
        XCTAssertEqual(nack.dataMsgID, id)
        XCTAssertEqual(nack.data["node_id"] as? String, Node.relay)
        XCTAssertEqual(nack.data["stored"] as? Bool, true)
        XCTAssertEqual(nack.recipients, [Node.x])
        XCTAssertEqual(nack.sender, "relay@\(Node.relay)")
        XCTAssertEqual(relay.counters.stored, 1)
        XCTAssertEqual(relay.counters.count(DropReason.unreachable), 0)
        XCTAssertEqual(relay.counters.count(NackReason.unreachable), 1)
        XCTAssertEqual(relay.offline.messages.map(\.messageID), [Node.guid(id)])
        // CERTIFICATE and KEY to an unknown node: the same.
        let certID = Node.newID()
        alice.send(#"{"msg_type":"CERTIFICATE","msg_data":{"msg_id":"\#(certID)","node_id":"\#(Node.a)","recipient_id":"\#(Node.x)","certificate":"Y2VydA=="}}"#)
        guard let certNack = alice.receiveOne() else { return }
        XCTAssertEqual(certNack.reason, "unreachable")
        XCTAssertEqual(certNack.dataMsgID, certID)
        XCTAssertEqual(certNack.data["stored"] as? Bool, true)
        XCTAssertEqual(relay.counters.stored, 2)
        XCTAssertEqual(relay.counters.count(DropReason.unreachable), 0)
        XCTAssertEqual(relay.offline.messages.map(\.messageID), [Node.guid(id), Node.guid(certID)])
        XCTAssertTrue(relay.offline.messages.allSatisfy { $0.recipient == Node.guid(Node.x) })
    }

    func testMessageToSelfOrRelayOnlyIsAcked() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.a, Node.relay], id: id))
        alice.expectAck(id)
    }

    func testPartiallyUnreachable() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b, Node.x], id: id))
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "unreachable")
        XCTAssertEqual(nack.recipients, [Node.x])
        XCTAssertEqual(nack.dataMsgID, id)
        XCTAssertEqual(nack.data["stored"] as? Bool, true)
        XCTAssertEqual(relay.offline.messages.map(\.recipient), [Node.guid(Node.x)])
        guard let delivered = bob.receiveOne() else { return }
        XCTAssertEqual(delivered.recipients, [Node.b])
        bob.send(Frames.ack(id))
        alice.expectAck(id)
    }

    func testMultiRecipientNarrowing() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        let id = Node.newID()
        // The sender and the relay are listed too (the existing client does so): both skipped.
        let sent = Frames.message(from: Node.a, to: [Node.a, Node.b, Node.relay, Node.c], id: id)
        alice.send(sent)
        let original = jsonObject(sent)["msg_data"] as? [String: Any] ?? [:]

        guard let toBob = bob.receiveOne(), let toCarol = carol.receiveOne() else { return }
        XCTAssertEqual(toBob.recipients, [Node.b])
        XCTAssertEqual(toCarol.recipients, [Node.c])
        for frame in [toBob, toCarol] {
            XCTAssertEqual(frame.type, "MESSAGE")
            XCTAssertEqual(frame.ttl, 31)
            XCTAssertEqual(frame.msgID, id)
            XCTAssertEqual(frame.dataMsgID, id)
            XCTAssertEqual(frame.sender, "alice@\(Node.a)")
            // Everything else in msg_data is kept.
            XCTAssertEqual(canonical(frame.data, removing: ["recipient"]), canonical(original, removing: ["recipient"]))
        }
        alice.expectNothing()
        XCTAssertEqual(relay.counters.relayed(.message), 2)

        bob.send(Frames.ack(id))
        alice.expectNothing()  // Carol has not ACKed yet
        carol.send(Frames.ack(id))
        alice.expectAck(id)
        XCTAssertEqual(relay.counters.acksReceived, 2)
        XCTAssertEqual(relay.counters.acksSent, 1)
    }

    func testMultiRecipientOneHopNacksFirst() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b, Node.c], id: id))
        _ = bob.receive()
        _ = carol.receive()
        carol.send(Frames.nack(from: Node.c, refusing: id, reason: "queue_full"))
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "queue_full")
        XCTAssertEqual(nack.recipients, [Node.c])
        bob.send(Frames.ack(id))
        alice.expectAck(id)
        XCTAssertTrue(relay.shard.pending.isEmpty)
    }

    func testMultiRecipientAllHopsFailNoAck() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b, Node.c], id: id))
        _ = bob.receive()
        _ = carol.receive()
        bob.send(Frames.nack(from: Node.b, refusing: id, reason: "unreachable"))
        carol.close()
        let frames = alice.receive()
        XCTAssertEqual(frames.map(\.type), ["NACK", "NACK"], "\(frames.map(\.text))")
        XCTAssertEqual(Set(frames.compactMap(\.recipients).flatMap { $0 }), [Node.b, Node.c])
        XCTAssertTrue(frames.allSatisfy { $0.dataMsgID == id && $0.reason == "unreachable" })
        // Bob refused it himself: not stored. Carol went away without an ACK: stored for her.
        for frame in frames {
            XCTAssertEqual(frame.data["stored"] as? Bool, frame.recipients == [Node.c], frame.text)
        }
        XCTAssertEqual(relay.offline.messages.map(\.recipient), [Node.guid(Node.c)])
        XCTAssertEqual(relay.counters.acksSent, 0)
        XCTAssertTrue(relay.shard.pending.isEmpty)
    }

    func testLabelledChatRelayedAsMessage() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let bob = relay.client(Node.b, name: "testing", existingClientStyle: true)
        let id = Node.newID()
        alice.send(Frames.labelledChat(from: Node.a, to: [Node.a, Node.b], id: id))
        guard let delivered = bob.receiveOne() else { return }
        XCTAssertEqual(delivered.type, "MESSAGE")
        XCTAssertEqual(delivered.ttl, 31)
        XCTAssertEqual(delivered.msgID, id)
        XCTAssertEqual(delivered.dataMsgID, id)
        XCTAssertEqual(delivered.sender, "LocalNode@\(Node.a)")
        XCTAssertEqual(delivered.recipients, [Node.b])
        XCTAssertEqual(delivered.data["message"] as? String, "hi from client")
        XCTAssertEqual(delivered.data["timestamp"] as? String, "2016-05-04T13:23:29.123456+01:00")
        alice.expectNothing()
        bob.send(Frames.ack(id))
        alice.expectAck(id)
    }

    /// ACKs that repeat the connection's last one but for the id skip the parse
    /// (`RepeatedAck`): each still settles its own message, an unknown id is still counted, and
    /// one in another node's name is still refused, in its own id, up to the close.
    func testRepeatedAcksAreHandledAsTheFirst() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        // relay-load's ACK: Bob's node id, then the id.
        func ack(_ id: String, from node: String) -> String {
            #"{"msg_type":"ACK","ttl":1,"flood":false,"msg_data":{"node_id":"\#(node)","msg_id":"\#(id)"}}"#
        }
        func deliver(_ id: String, answer: String) {
            alice.send(Frames.message(from: Node.a, to: [Node.b], id: id))
            XCTAssertEqual(bob.receiveOne()?.msgID, id)
            bob.send(answer)
            alice.expectAck(id)
        }
        let ids = (0..<4).map { _ in Node.newID() }
        for id in ids { deliver(id, answer: ack(id, from: Node.b)) }
        // The existing client's ACK shape, then back: a new shape is parsed and remembered.
        let other = Node.newID()
        deliver(other, answer: Frames.ack(other))
        let again = Node.newID()
        deliver(again, answer: ack(again, from: Node.b))
        // Already settled, and never sent: no awaited message.
        bob.send(ack(ids[0], from: Node.b))
        bob.send(ack(Node.newID(), from: Node.b))
        bob.expectNothing()
        alice.expectNothing()
        XCTAssertEqual(relay.counters.count(.unknownAck), 2)
        // In Alice's name: refused with each frame's own id; the third closes the connection.
        let spoofed = (0..<3).map { _ in Node.newID() }
        for (index, id) in spoofed.enumerated() {
            bob.send(ack(id, from: Node.a))
            guard let nack = bob.receiveOne() else { return }
            XCTAssertEqual(nack.type, "NACK")
            XCTAssertEqual(nack.reason, "spoofed_sender")
            XCTAssertEqual(nack.dataMsgID, id)
            XCTAssertEqual(bob.isActive, index < 2)
        }
        XCTAssertEqual(relay.counters.count(DropReason.spoofedSender), 3)
    }

    /// MESSAGEs that repeat the connection's last one but for the id, timestamp and text skip
    /// the parse (`RepeatedMessage`): each is still delivered with its own id and text, acked in
    /// its own id, de-duplicated, and refused when its recipient cannot be reached; one to
    /// another recipient, or with text the repeat cannot read, is parsed and routed as usual.
    func testRepeatedMessagesAreHandledAsTheFirst() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        func deliver(_ text: String, to client: Peer, node: String) {
            let id = Node.newID()
            alice.send(Frames.message(from: Node.a, to: [node], id: id, text: text))
            guard let delivered = client.receiveOne() else { return XCTFail("\(text) not delivered") }
            XCTAssertEqual(delivered.dataMsgID, id)
            XCTAssertEqual(delivered.data["message"] as? String, text.replacingOccurrences(of: "\\n", with: "\n"))
            XCTAssertEqual(delivered.recipients, [node])
            client.send(Frames.ack(id))
            alice.expectAck(id)
        }
        for text in ["aGk=", "", "a", String(repeating: "QUFB", count: 40), "hello there", "x"] {
            deliver(text, to: bob, node: Node.b)
        }
        func remembered() -> ObjectIdentifier? {
            relay.shard.connections.values.first { $0.nodeID == Node.guid(Node.a) }?.lastMessage.map(ObjectIdentifier.init)
        }
        let bobs = remembered()
        XCTAssertNotNil(bobs, "Alice's MESSAGEs repeat one layout")
        // Another recipient, then text with an escape: parsed, and the remembered one kept;
        // then back to Bob.
        deliver("to carol", to: carol, node: Node.c)
        deliver(#"two\nlines"#, to: bob, node: Node.b)
        deliver("plain again", to: bob, node: Node.b)
        XCTAssertEqual(remembered(), bobs)
        // Two to Carol in a row: Alice has moved on, Carol's layout is remembered.
        deliver("to carol", to: carol, node: Node.c)
        XCTAssertEqual(remembered(), bobs)
        deliver("to carol again", to: carol, node: Node.c)
        XCTAssertNotEqual(remembered(), bobs)
        deliver("and again", to: carol, node: Node.c)
        bob.expectNothing()
        carol.expectNothing()
        // Sent twice: delivered once, acked twice.
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: id, text: "once"))
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, id)
        bob.send(Frames.ack(id))
        alice.expectAck(id)
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: id, text: "once"))
        alice.expectAck(id)
        bob.expectNothing()
        // To a node no one has heard of: refused in the repeat's own id.
        let nowhere = Node.newID()
        let unreachable = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [nowhere], id: Node.newID(), text: "parsed first"))
        _ = alice.receiveOne()
        alice.send(Frames.message(from: Node.a, to: [nowhere], id: unreachable, text: "then repeated"))
        guard let nack = alice.receiveOne() else { return XCTFail("no NACK") }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.dataMsgID, unreachable)
        XCTAssertEqual(nack.reason, "unreachable")
        // Stored as it was sent: the frame the store keeps is made from the repeat's tape.
        guard let stored = relay.offline.messages.last else { return XCTFail("not stored") }
        XCTAssertEqual(stored.messageID, Node.guid(unreachable))
        let frame = String(decoding: stored.frame, as: UTF8.self)
        XCTAssertTrue(frame.contains(#""message":"then repeated""#), frame)
        XCTAssertTrue(frame.contains(unreachable), frame)
    }

    func testSpoofedSenderNackAndCloseAfterThreeStrikes() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        // 1: msg_data.node_id names Bob.
        let first = Node.newID()
        alice.send(Frames.message(from: Node.b, to: [Node.c], id: first))
        guard let nack1 = alice.receiveOne() else { return }
        XCTAssertEqual(nack1.type, "NACK")
        XCTAssertEqual(nack1.reason, "spoofed_sender")
        XCTAssertEqual(nack1.dataMsgID, first)
        XCTAssertTrue(alice.isActive)
        // 2: head sender_id names Bob.
        let second = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.c], id: second, senderID: "bob@\(Node.b)"))
        XCTAssertEqual(alice.receiveOne()?.reason, "spoofed_sender")
        XCTAssertTrue(alice.isActive)
        // 3: a JOIN in Bob's name: NACK, then the connection closes.
        let third = Node.newID()
        alice.send(Frames.join(from: Node.b, dataID: third))
        guard let nack3 = alice.receiveOne() else { return }
        XCTAssertEqual(nack3.reason, "spoofed_sender")
        XCTAssertEqual(nack3.dataMsgID, third)
        XCTAssertFalse(alice.isActive)
        carol.expectNothing()
        bob.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.spoofedSender), 3)
        XCTAssertEqual(relay.counters.count(NackReason.spoofedSender), 3)
    }

    func testResentMessageNotDeliveredTwiceAndAcked() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        let message = Frames.message(from: Node.a, to: [Node.b], id: id)
        alice.send(message)
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, id)
        // Re-sent before Bob ACKed: not delivered again.
        alice.send(message)
        bob.expectNothing()
        alice.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.duplicateMessage), 1)
        bob.send(Frames.ack(id))
        let acks = alice.receive()
        XCTAssertFalse(acks.isEmpty)
        XCTAssertTrue(acks.allSatisfy { $0.type == "ACK" && $0.dataMsgID == id }, "\(acks.map(\.text))")
        // Re-sent after Bob ACKed: ACKed at once, not delivered.
        alice.send(message)
        bob.expectNothing()
        alice.expectAck(id)
        XCTAssertEqual(relay.counters.count(DropReason.duplicateMessage), 2)
        XCTAssertEqual(relay.counters.relayed(.message), 1)
    }

    func testNextHopNackRelayedToOrigin() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: id))
        _ = bob.receive()
        bob.send(Frames.nack(from: Node.b, refusing: id, reason: "queue_full"))
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "queue_full")
        XCTAssertEqual(nack.dataMsgID, id)
        XCTAssertEqual(nack.recipients, [Node.b])
        // PROFILE.md section 5: passed on in the name of the node that refused.
        XCTAssertEqual(nack.data["node_id"] as? String, Node.b)
        XCTAssertEqual(nack.sender, "bob@\(Node.b)")
        XCTAssertEqual(nack.data["stored"] as? Bool, false)
        XCTAssertTrue(relay.offline.messages.isEmpty)
        bob.expectNothing()
        XCTAssertTrue(relay.shard.pending.isEmpty)
    }

    /// The next hop went away before its ACK: the message is stored for it (PROFILE.md section 5).
    func testNextHopDisconnectGivesUnreachable() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: id))
        _ = bob.receive()
        bob.close()
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "unreachable")
        XCTAssertEqual(nack.dataMsgID, id)
        XCTAssertEqual(nack.recipients, [Node.b])
        XCTAssertEqual(nack.data["stored"] as? Bool, true)
        XCTAssertEqual(relay.offline.messages.map(\.messageID), [Node.guid(id)])
        XCTAssertTrue(relay.shard.pending.isEmpty)
    }

    func testUnknownAckCounted() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        alice.send(Frames.ack(Node.newID()))
        alice.send(Frames.nack(from: Node.a, refusing: Node.newID(), reason: "unreachable"))
        alice.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.unknownAck), 2)
        XCTAssertEqual(relay.counters.acksReceived, 0)
    }

    func testAckOnlyFromTheHopItWasDeliveredTo() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let carol = relay.client(Node.c, name: "carol")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: id))
        _ = bob.receive()
        carol.send(Frames.ack(id))
        alice.expectNothing()
        XCTAssertEqual(relay.counters.count(DropReason.unknownAck), 1)
        bob.send(Frames.ack(id))
        XCTAssertEqual(alice.receiveOne()?.type, "ACK")
    }

    func testCertificateAndKeyForwarded() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let frames = [
            ("CERTIFICATE", #"{"msg_type":"certificate","msg_data":{"msg_id":"%ID%","node_id":"\#(Node.a)","recipient_id":"\#(Node.b)","certificate":"Y2VydA=="}}"#),
            ("KEY", #"{"msg_type":"Key","msg_data":{"msg_id":"%ID%","node_id":"\#(Node.a)","recipient_id":"bob@\#(Node.b)","channel":"c","channel_id":"x","cipher":"aes","key":"a2V5"}}"#),
            ("GETCERTIFICATE", #"{"msg_type":"GETCERTIFICATE","msg_data":{"msg_id":"%ID%","node_id":"\#(Node.a)","recipient_id":"\#(Node.b)"}}"#),
            ("GETKEY", #"{"msg_type":"GETKEY","msg_data":{"msg_id":"%ID%","node_id":"\#(Node.a)","recipient_id":"\#(Node.b)","channel":"c","channel_id":"x"}}"#),
        ]
        for (verb, template) in frames {
            let id = Node.newID()
            alice.send(template.replacingOccurrences(of: "%ID%", with: id))
            guard let delivered = bob.receiveOne() else { continue }
            XCTAssertEqual(delivered.type, verb)
            XCTAssertEqual(delivered.ttl, 31, verb)
            XCTAssertEqual(delivered.msgID, id, verb)
            XCTAssertEqual(delivered.sender, "alice@\(Node.a)", verb)
            alice.expectNothing()
            bob.send(Frames.ack(id))
            XCTAssertEqual(alice.receiveOne()?.dataMsgID, id, verb)
        }
        XCTAssertEqual(relay.counters.relayed(.certificate), 1)
        XCTAssertEqual(relay.counters.relayed(.key), 1)
        XCTAssertEqual(relay.counters.relayed(.getCertificate), 1)
        XCTAssertEqual(relay.counters.relayed(.getKey), 1)
    }

    func testGetKeyAddressedByTargetID() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        alice.send(#"{"msg_type":"GETKEY","target_id":"bob@\#(Node.b)","msg_data":{"msg_id":"\#(id)","node_id":"\#(Node.a)","channel":"c","channel_id":"x"}}"#)
        guard let delivered = bob.receiveOne() else { return }
        XCTAssertEqual(delivered.type, "GETKEY")
        XCTAssertEqual(delivered.dataMsgID, id)
        XCTAssertTrue(delivered.object["target_id"] is NSNull)
    }

    func testGetCertificateAndGetKeyForTheRelay() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let certID = Node.newID()
        alice.send(#"{"msg_type":"GETCERTIFICATE","msg_data":{"msg_id":"\#(certID)","node_id":"\#(Node.a)"}}"#)
        guard let noCert = alice.receiveOne() else { return }
        XCTAssertEqual(noCert.reason, "no_certificate")
        XCTAssertEqual(noCert.dataMsgID, certID)
        let keyID = Node.newID()
        alice.send(#"{"msg_type":"GETKEY","target_id":"relay@\#(Node.relay)","msg_data":{"msg_id":"\#(keyID)","node_id":"\#(Node.a)","channel":"c","channel_id":"x"}}"#)
        guard let notMember = alice.receiveOne() else { return }
        XCTAssertEqual(notMember.reason, "not_a_member")
        XCTAssertEqual(notMember.dataMsgID, keyID)
        XCTAssertEqual(relay.counters.count(NackReason.noCertificate), 1)
        XCTAssertEqual(relay.counters.count(NackReason.notAMember), 1)
    }

    func testFrameAndByteCounters() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let before = relay.counters
        let message = Frames.message(from: Node.a, to: [Node.b], id: Node.newID())
        alice.send(message)
        let delivered = bob.receive()
        let after = relay.counters
        XCTAssertEqual(after.framesIn - before.framesIn, 1)
        XCTAssertEqual(after.bytesIn - before.bytesIn, message.utf8.count)
        XCTAssertEqual(after.framesOut - before.framesOut, 1)
        XCTAssertEqual(after.bytesOut - before.bytesOut, delivered.reduce(0) { $0 + 4 + $1.bytes.count })
        XCTAssertEqual(after.relayedBytesByVerb[Int(Verb.message.rawValue)], delivered.reduce(0) { $0 + 4 + $1.bytes.count })
    }
}
