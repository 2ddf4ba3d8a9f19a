import Foundation
import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import RelayStore
import XCTest

@testable import RelayCore

/// PROFILE.md sections 5 and 6: store and forward, driven through the handler with the in-memory
/// store. `holdCommits` stands for a transaction that has not committed yet: nothing that depends
/// on it (the ACK upstream, a NACK `stored: true`) may go out before `commit()`.
final class StoreForwardTests: XCTestCase {
    // MARK: Helpers

    /// A new connection that says HELLO as `id`; returns it and everything the relay sent after
    /// the HELLO (ROUTING, cached CHANNELs, stored messages).
    private func bind(
        _ relay: TestRelay, _ id: String, name: String, file: StaticString = #filePath, line: UInt = #line
    ) -> (Peer, [Frame]) {
        let peer = relay.connect(label: name, file: file, line: line)
        XCTAssertEqual(peer.receive(file: file, line: line).map(\.type), ["HELLO"], file: file, line: line)
        peer.send(Frames.hello(id, name: name), file: file, line: line)
        return (peer, peer.receive(file: file, line: line))
    }

    /// The JSON of a stored frame: it is kept with its 4-byte big-endian length, as it goes out.
    private func body(_ row: StoredMessage, file: StaticString = #filePath, line: UInt = #line) -> [UInt8] {
        guard row.frame.count >= 4 else {
            XCTFail("stored frame shorter than its length prefix", file: file, line: line)
            return []
        }
        let length = row.frame.prefix(4).reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual(length, row.frame.count - 4, "stored frame's length prefix", file: file, line: line)
        return Array(row.frame.dropFirst(4))
    }

    private func object(_ bytes: [UInt8]) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
    }

    private func now() -> Double { Date().timeIntervalSince1970 }


    // MARK: Storing, and answering only after the commit

    func testUnreachableStoredAndNackedStoredTrueOnlyAfterCommit() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        relay.offline.holdCommits = true
        let id = Node.newID()
        let sent = Frames.message(from: Node.a, to: [Node.x], id: id)
        let before = now()
        alice.send(sent)

        // Written, not committed: the sender hears nothing yet.
        alice.expectNothing()
        XCTAssertEqual(relay.offline.messages.count, 1)
        XCTAssertEqual(relay.counters.stored, 0)
        XCTAssertEqual(relay.counters.acksSent, 0)
        XCTAssertEqual(relay.counters.count(NackReason.unreachable), 0)

        relay.offline.commit()
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "unreachable")
        XCTAssertEqual(nack.data["stored"] as? Bool, true)
        XCTAssertEqual(nack.dataMsgID, id)
        XCTAssertEqual(nack.data["node_id"] as? String, Node.relay)
        XCTAssertEqual(nack.recipients, [Node.x])
        XCTAssertNotEqual(nack.msgID, id, "the NACK has an id of its own")
        XCTAssertEqual(relay.counters.stored, 1)
        XCTAssertEqual(relay.counters.count(DropReason.unreachable), 0)
        XCTAssertEqual(relay.counters.acksSent, 0)

        // The row: the frame exactly as it will be delivered.
        guard let row = relay.offline.messages.first else { return }
        XCTAssertEqual(row.recipient, Node.guid(Node.x))
        XCTAssertEqual(row.messageID, Node.guid(id))
        XCTAssertEqual(row.sender, Node.guid(Node.a))
        XCTAssertEqual(row.attempts, 0)
        XCTAssertLessThanOrEqual(row.nextAttemptAt, now(), "a new message is due at once")
        XCTAssertGreaterThanOrEqual(row.createdAt, before - 1)
        XCTAssertLessThanOrEqual(row.createdAt, now() + 1)
        let stored = object(body(row))
        XCTAssertEqual(stored["msg_type"] as? String, "MESSAGE")
        XCTAssertEqual((stored["ttl"] as? NSNumber)?.intValue, 31)
        XCTAssertEqual(stored["flood"] as? Bool, false)
        XCTAssertEqual(stored["msg_id"] as? String, id)
        XCTAssertEqual(stored["sender_id"] as? String, "alice@\(Node.a)")
        XCTAssertTrue(stored["target_id"] is NSNull)
        XCTAssertEqual(
            canonical(stored["msg_data"] as? [String: Any] ?? [:]), canonical(jsonObject(sent)["msg_data"] as? [String: Any] ?? [:]))

        // The recipient comes: it gets those very bytes.
        relay.offline.holdCommits = false
        let (xena, welcome) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(welcome.map(\.type), ["ROUTING", "MESSAGE"], "\(welcome.map(\.text))")
        guard welcome.count == 2 else { return }
        XCTAssertEqual(welcome[1].bytes, body(row))
        XCTAssertEqual(relay.counters.storedSent, 1)
        xena.send(Frames.ack(id))
        xena.expectNothing()
        alice.expectNothing()
        XCTAssertTrue(relay.offline.messages.isEmpty)
        XCTAssertEqual(relay.counters.storedDelivered, 1)
    }

    // MARK: Delivery after HELLO

    func testStoredDeliveredAfterRoutingAndChannelsInArrivalOrderAndDeletedOnlyWhenAcked() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let channelID = Node.newID()
        alice.send(Frames.channel(from: Node.a, id: channelID))
        alice.expectNothing()

        // Three for Xena (a CERTIFICATE among them), one for Carol in between.
        let ids = [Node.newID(), Node.newID(), Node.newID()]
        let forCarol = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: ids[0], text: "b25l"))
        alice.send(Frames.message(from: Node.a, to: [Node.c], id: forCarol))
        alice.send(#"{"msg_type":"CERTIFICATE","msg_data":{"msg_id":"\#(ids[1])","node_id":"\#(Node.a)","recipient_id":"\#(Node.x)","certificate":"Y2VydA=="}}"#)
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: ids[2], text: "dGhyZWU="))
        let nacks = alice.receive()
        XCTAssertEqual(nacks.map(\.type), ["NACK", "NACK", "NACK", "NACK"])
        XCTAssertTrue(nacks.allSatisfy { $0.reason == "unreachable" && $0.data["stored"] as? Bool == true }, "\(nacks.map(\.text))")
        XCTAssertEqual(relay.offline.messages.count, 4)

        let (xena, welcome) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(welcome.map(\.type), ["ROUTING", "CHANNEL", "MESSAGE", "CERTIFICATE", "MESSAGE"], "\(welcome.map(\.text))")
        guard welcome.count == 5 else { return }
        XCTAssertEqual(welcome[1].dataMsgID, channelID)
        XCTAssertEqual(welcome.dropFirst(2).map(\.dataMsgID), ids)
        XCTAssertEqual(welcome.dropFirst(2).map(\.msgID), ids)
        XCTAssertTrue(welcome.dropFirst(2).allSatisfy { $0.ttl == 31 && $0.sender == "LocalNode@\(Node.a)" })
        XCTAssertEqual(relay.counters.storedSent, 3)

        // No second copy while they await Xena's ACK.
        relay.offline.makeAllDue()
        relay.shard.retryStored()
        xena.expectNothing()

        // Each ACK deletes its own row, and only that one.
        xena.send(Frames.ack(ids[1]))
        xena.expectNothing()
        XCTAssertEqual(relay.offline.messages.map(\.messageID), [ids[0], forCarol, ids[2]].map(Node.guid))
        XCTAssertEqual(relay.counters.storedDelivered, 1)
        xena.send(Frames.ack(ids[2]))
        xena.send(Frames.ack(ids[0]))
        xena.expectNothing()
        XCTAssertEqual(relay.offline.messages.map(\.messageID), [Node.guid(forCarol)])
        XCTAssertEqual(relay.counters.storedDelivered, 3)
        XCTAssertEqual(relay.counters.acksReceived, 3)
        XCTAssertEqual(relay.counters.count(DropReason.unknownAck), 0)
        // The senders' answer was the NACK `stored: true`; nothing more goes upstream.
        alice.expectNothing()

        // Carol's comes when she does.
        let (_, carolWelcome) = bind(relay, Node.c, name: "carol")
        XCTAssertEqual(carolWelcome.map(\.type), ["ROUTING", "CHANNEL", "MESSAGE"], "\(carolWelcome.map(\.text))")
        XCTAssertEqual(carolWelcome.last?.dataMsgID, forCarol)
    }

    func testUnackedStoredMessagesRedeliveredInArrivalOrder() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let ids = alice.sendMessages(3, from: Node.a, to: Node.x)
        XCTAssertEqual(alice.receive().count, 3)

        let (xena, welcome) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(welcome.dropFirst().map(\.dataMsgID), ids)
        xena.send(Frames.ack(ids[1]))
        relay.passAckDeadlines()
        XCTAssertEqual(relay.counters.count(DropReason.ackTimeout), 2)
        XCTAssertEqual(relay.offline.messages.map(\.messageID), [ids[0], ids[2]].map(Node.guid))
        XCTAssertEqual(relay.offline.messages.map(\.attempts), [1, 1])
        xena.expectNothing()

        relay.offline.makeAllDue()
        relay.shard.retryStored()
        XCTAssertEqual(xena.receive().map(\.dataMsgID), [ids[0], ids[2]])
    }

    /// Xena goes away with a stored message unACKed: that counts an attempt, the row stays, and
    /// she gets it when she is back.
    func testRecipientLeavingDuringStoredDeliveryGetsItWhenBack() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: id))
        XCTAssertEqual(alice.receiveOne()?.data["stored"] as? Bool, true)

        let (xena, welcome) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(welcome.last?.dataMsgID, id)
        xena.close()
        relay.loop.run()
        XCTAssertEqual(relay.offline.messages.map(\.messageID), [Node.guid(id)])
        XCTAssertEqual(relay.offline.messages.first?.attempts, 1)
        alice.expectNothing()

        relay.offline.makeAllDue()
        let (again, secondWelcome) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(secondWelcome.map(\.type), ["ROUTING", "MESSAGE"])
        XCTAssertEqual(secondWelcome.last?.dataMsgID, id)
        again.send(Frames.ack(id))
        again.expectNothing()
        XCTAssertTrue(relay.offline.messages.isEmpty)
    }

    func testLabelledChatForOfflineRecipientStoredAsMessage() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "LocalNode", existingClientStyle: true)
        let id = Node.newID()
        alice.send(Frames.labelledChat(from: Node.a, to: [Node.a, Node.x], id: id))
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.data["stored"] as? Bool, true)
        XCTAssertEqual(nack.recipients, [Node.x])
        guard let row = relay.offline.messages.first else { return XCTFail("not stored") }
        let (_, welcome) = bind(relay, Node.x, name: "xena")
        guard let delivered = welcome.last, welcome.count == 2 else { return XCTFail("\(welcome.map(\.text))") }
        XCTAssertEqual(delivered.bytes, body(row))
        XCTAssertEqual(delivered.type, "MESSAGE")
        XCTAssertEqual(delivered.ttl, 31)
        XCTAssertEqual(delivered.msgID, id)
        XCTAssertEqual(delivered.dataMsgID, id)
        XCTAssertEqual(delivered.sender, "LocalNode@\(Node.a)")
        XCTAssertEqual(delivered.recipients, [Node.x])
        XCTAssertEqual(delivered.data["message"] as? String, "hi from client")
    }

    // MARK: Retries and giving up

    /// The retry runs on the shard's one-second timer.
    func testRetryOnTheTimer() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        relay.shard.startTimers()
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: id))
        _ = alice.receive()
        let (xena, welcome) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(welcome.last?.dataMsgID, id)
        relay.passAckDeadlines()
        XCTAssertEqual(relay.offline.messages.first?.attempts, 1)
        relay.loop.advanceTime(by: .seconds(1))
        XCTAssertEqual(xena.receive().filter { $0.type != "ROUTING" }.count, 0, "sent before it was due")
        relay.offline.makeAllDue()
        relay.loop.advanceTime(by: .seconds(1))
        let retried = xena.receive().filter { $0.type != "ROUTING" }
        XCTAssertEqual(retried.map(\.dataMsgID), [id])
        xena.send(Frames.ack(id))
        XCTAssertTrue(relay.offline.messages.isEmpty)
    }

    func testStoredMessagesPastMaxAgeExpired() {
        let relay = TestRelay { $0.store.maxAge = 60 }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: Node.newID()))
        _ = alice.receive()
        relay.shard.expireStored()
        relay.loop.run()
        XCTAssertEqual(relay.offline.messages.count, 1)
        relay.offline.backdate(by: 61)
        relay.shard.expireStored()
        relay.loop.run()
        XCTAssertTrue(relay.offline.messages.isEmpty)
        XCTAssertEqual(relay.counters.storeExpired, 1)
        XCTAssertEqual(relay.counters.count(DropReason.storeExpired), 1)
        let (_, welcome) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(welcome.map(\.type), ["ROUTING"])
    }

    func testStoredMessageWithoutAckRetriedWithBackoffThenDroppedAfterMaxAttempts() {
        let relay = TestRelay()  // store.max_attempts: the default, 5
        defer { relay.shutdown() }
        XCTAssertEqual(relay.configuration.store.maxAttempts, 5)
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: id))
        _ = alice.receive()

        let (xena, welcome) = bind(relay, Node.x, name: "xena")
        guard let first = welcome.last, first.dataMsgID == id else {
            return XCTFail("stored message not delivered after HELLO: \(welcome.map(\.text))")
        }
        var deliveries = 1
        var delays: [Double] = []
        for attempt in 1...5 {
            relay.passAckDeadlines()
            XCTAssertEqual(relay.counters.count(DropReason.ackTimeout), attempt)
            if attempt == 5 { break }
            guard let row = relay.offline.messages.first else {
                return XCTFail("row gone after \(attempt) attempts")
            }
            XCTAssertEqual(row.attempts, attempt)
            XCTAssertGreaterThan(row.nextAttemptAt, now(), "attempt \(attempt): next try not in the future")
            delays.append(row.nextAttemptAt - now())
            XCTAssertEqual(relay.counters.count(DropReason.storeGaveUp), 0)

            // Not due yet: not sent.
            relay.shard.retryStored()
            xena.expectNothing()
            // Due: sent again, the same bytes.
            relay.offline.makeAllDue()
            relay.shard.retryStored()
            guard let again = xena.receiveOne() else { return }
            XCTAssertEqual(again.bytes, first.bytes)
            deliveries += 1
        }
        XCTAssertEqual(deliveries, 5)
        XCTAssertTrue(relay.offline.messages.isEmpty, "still stored after store.max_attempts")
        XCTAssertEqual(relay.counters.count(DropReason.storeGaveUp), 1)
        XCTAssertEqual(relay.counters.storedSent, 5)
        XCTAssertEqual(relay.counters.storedDelivered, 0)
        // Backoff: each wait longer than the one before.
        XCTAssertEqual(delays.count, 4)
        for (earlier, later) in zip(delays, delays.dropFirst()) {
            XCTAssertGreaterThan(later, earlier, "no backoff: \(delays)")
        }

        // Gone for good.
        relay.offline.makeAllDue()
        relay.shard.retryStored()
        xena.expectNothing()
        alice.expectNothing()
        // A late ACK finds nothing to resolve.
        xena.send(Frames.ack(id))
        XCTAssertEqual(relay.counters.count(DropReason.unknownAck), 1)
    }

    func testMaxAttemptsConfigurableAndCountsTheLiveTry() {
        let relay = TestRelay { $0.store.maxAttempts = 2 }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: id))
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, id)
        relay.passAckDeadlines()
        XCTAssertEqual(alice.receiveOne()?.data["stored"] as? Bool, true)
        XCTAssertEqual(relay.offline.messages.first?.attempts, 1)

        relay.offline.makeAllDue()
        relay.shard.retryStored()
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, id)
        relay.passAckDeadlines()
        XCTAssertTrue(relay.offline.messages.isEmpty)
        XCTAssertEqual(relay.counters.count(DropReason.storeGaveUp), 1)
        relay.offline.makeAllDue()
        relay.shard.retryStored()
        bob.expectNothing()
        alice.expectNothing()
    }

    // MARK: A connected recipient that does not ACK

    /// On the shard's own timers: `timeouts.ack` 1 ns has passed when the sweep runs.
    func testLiveDeliveryWithoutAckStoredAfterCommitThenRedelivered() {
        let relay = TestRelay { $0.timeouts.ack = 1e-9 }
        defer { relay.shutdown() }
        relay.shard.startTimers()
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        relay.offline.holdCommits = true
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: id))
        guard let delivered = bob.receiveOne() else { return }

        relay.loop.advanceTime(by: .milliseconds(100))
        XCTAssertEqual(relay.counters.count(DropReason.ackTimeout), 1)
        // Stored, not committed: no answer to Alice yet.
        alice.expectNothing()
        XCTAssertEqual(relay.counters.stored, 0)
        guard let row = relay.offline.messages.first else { return XCTFail("no row for a delivery without ACK") }
        XCTAssertEqual(relay.offline.messages.count, 1)
        XCTAssertEqual(row.recipient, Node.guid(Node.b))
        XCTAssertEqual(row.messageID, Node.guid(id))
        XCTAssertEqual(row.sender, Node.guid(Node.a))
        XCTAssertEqual(row.attempts, 1, "the live delivery counts as the first attempt")
        XCTAssertGreaterThan(row.nextAttemptAt, now())
        XCTAssertEqual(body(row), delivered.bytes, "the frame as it was delivered")

        relay.offline.commit()
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "unreachable")
        XCTAssertEqual(nack.data["stored"] as? Bool, true)
        XCTAssertEqual(nack.dataMsgID, id)
        XCTAssertEqual(nack.recipients, [Node.b])
        XCTAssertEqual(relay.counters.stored, 1)
        XCTAssertEqual(relay.counters.acksSent, 0)

        // Due again: Bob gets it again, ACKs, the row goes.
        relay.offline.holdCommits = false
        relay.offline.makeAllDue()
        relay.shard.retryStored()
        guard let again = bob.receiveOne() else { return }
        XCTAssertEqual(again.bytes, delivered.bytes)
        bob.send(Frames.ack(id))
        bob.expectNothing()
        XCTAssertTrue(relay.offline.messages.isEmpty)
        XCTAssertEqual(relay.counters.storedDelivered, 1)
        alice.expectNothing()
    }

    func testRecipientThatNacksItselfCausesNoStorage() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        for reason in ["queue_full", "unreachable"] {
            let id = Node.newID()
            alice.send(Frames.message(from: Node.a, to: [Node.b], id: id))
            XCTAssertEqual(bob.receiveOne()?.dataMsgID, id)
            bob.send(Frames.nack(from: Node.b, refusing: id, reason: reason))
            guard let nack = alice.receiveOne() else { continue }
            XCTAssertEqual(nack.type, "NACK")
            XCTAssertEqual(nack.reason, reason)
            XCTAssertEqual(nack.data["stored"] as? Bool, false, reason)
            XCTAssertEqual(nack.recipients, [Node.b])
        }
        relay.passAckDeadlines()
        XCTAssertTrue(relay.offline.messages.isEmpty)
        XCTAssertEqual(relay.counters.stored, 0)
        XCTAssertEqual(relay.counters.count(DropReason.ackTimeout), 0)
        alice.expectNothing()
        bob.expectNothing()
    }

    /// A stored row for Bob (no ACK in time), then the same message re-sent and ACKed live: the
    /// row goes at the next retry without a third copy to Bob.
    func testRowLeftByAnUnackedDeliveryResolvedByALiveAck() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        let message = Frames.message(from: Node.a, to: [Node.b], id: id)
        alice.send(message)
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, id)
        relay.passAckDeadlines()
        XCTAssertEqual(alice.receiveOne()?.data["stored"] as? Bool, true)
        XCTAssertEqual(relay.offline.messages.count, 1)

        alice.send(message)
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, id)
        bob.send(Frames.ack(id))
        XCTAssertEqual(alice.receiveOne()?.type, "ACK")

        relay.offline.makeAllDue()
        relay.shard.retryStored()
        relay.loop.run()
        bob.expectNothing()
        XCTAssertTrue(relay.offline.messages.isEmpty, "row left behind after the message was ACKed")
    }

    /// The sender re-sends while the stored copy is out to the recipient: not delivered twice,
    /// and the recipient's ACK answers both (the row goes, the sender gets its ACK).
    func testResentWhileStoredCopyInFlightFoldedIntoIt() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        let message = Frames.message(from: Node.a, to: [Node.x], id: id)
        alice.send(message)
        XCTAssertEqual(alice.receiveOne()?.data["stored"] as? Bool, true)
        let (xena, welcome) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(welcome.last?.dataMsgID, id)

        alice.send(message)
        xena.expectNothing()
        alice.expectNothing()
        xena.send(Frames.ack(id))
        alice.expectAck(id)
        XCTAssertTrue(relay.offline.messages.isEmpty)
        XCTAssertEqual(relay.counters.storedDelivered, 1)
    }

    /// The same, and the recipient does not ACK: the message is still kept (the row, one attempt
    /// more), so the re-sender hears `stored: true`.
    func testResentWhileStoredCopyInFlightNotAckedAnsweredStoredTrue() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        let message = Frames.message(from: Node.a, to: [Node.x], id: id)
        alice.send(message)
        XCTAssertEqual(alice.receiveOne()?.data["stored"] as? Bool, true)
        let (xena, welcome) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(welcome.last?.dataMsgID, id)
        alice.send(message)
        xena.expectNothing()

        relay.passAckDeadlines()
        XCTAssertEqual(relay.offline.messages.map(\.attempts), [1], "the message is kept for a later try")
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "unreachable")
        XCTAssertEqual(nack.recipients, [Node.x])
        XCTAssertEqual(nack.data["stored"] as? Bool, true, "the relay keeps the message, yet tells the sender it does not")
    }

    // MARK: Failures and bounds

    func testFailingWriteNacksStoredFalse() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        relay.offline.failWrites = true

        let offline = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: offline))
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.reason, "unreachable")
        XCTAssertEqual(nack.data["stored"] as? Bool, false)
        XCTAssertEqual(nack.dataMsgID, offline)
        XCTAssertEqual(nack.recipients, [Node.x])
        XCTAssertEqual(relay.counters.count(DropReason.storeFailed), 1)

        // A delivery without ACK whose storing fails: the same.
        let live = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: live))
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, live)
        relay.passAckDeadlines()
        guard let liveNack = alice.receiveOne() else { return }
        XCTAssertEqual(liveNack.reason, "unreachable")
        XCTAssertEqual(liveNack.data["stored"] as? Bool, false)
        XCTAssertEqual(liveNack.dataMsgID, live)
        XCTAssertEqual(relay.counters.count(DropReason.storeFailed), 2)

        XCTAssertTrue(relay.offline.messages.isEmpty)
        XCTAssertEqual(relay.counters.stored, 0)
        XCTAssertEqual(relay.counters.acksSent, 0)
    }

    func testOverPerRecipientBoundQueueFullStoredFalse() {
        let relay = TestRelay { $0.store.perRecipientMessages = 2 }
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let ids = alice.sendMessages(3, from: Node.a, to: Node.x)
        let nacks = alice.receive()
        XCTAssertEqual(nacks.map(\.dataMsgID), ids)
        guard nacks.count == 3 else { return }
        XCTAssertEqual(nacks[0].data["stored"] as? Bool, true)
        XCTAssertEqual(nacks[1].data["stored"] as? Bool, true)
        XCTAssertEqual(nacks[2].type, "NACK")
        XCTAssertEqual(nacks[2].reason, "queue_full")
        XCTAssertEqual(nacks[2].data["stored"] as? Bool, false)
        XCTAssertEqual(nacks[2].recipients, [Node.x])
        XCTAssertEqual(relay.counters.count(DropReason.queueFull), 1)
        XCTAssertEqual(relay.counters.count(NackReason.queueFull), 1)
        XCTAssertEqual(relay.counters.stored, 2)
        XCTAssertEqual(relay.offline.messages.map(\.messageID), ids.prefix(2).map(Node.guid))

        // Another recipient's mailbox is not full.
        let other = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.c], id: other))
        XCTAssertEqual(alice.receiveOne()?.data["stored"] as? Bool, true)
    }

    // MARK: De-duplication

    func testResentMessageAlreadyStoredNackedStoredTrueAgainOneRow() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        let message = Frames.message(from: Node.a, to: [Node.x], id: id)
        alice.send(message)
        XCTAssertEqual(alice.receiveOne()?.data["stored"] as? Bool, true)
        alice.send(message)
        guard let again = alice.receiveOne() else { return }
        XCTAssertEqual(again.type, "NACK")
        XCTAssertEqual(again.reason, "unreachable")
        XCTAssertEqual(again.data["stored"] as? Bool, true)
        XCTAssertEqual(again.dataMsgID, id)
        XCTAssertEqual(relay.offline.messages.count, 1)
        XCTAssertEqual(relay.counters.stored, 1)
        XCTAssertEqual(relay.counters.count(DropReason.duplicateMessage), 1)

        let (xena, welcome) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(welcome.map(\.type), ["ROUTING", "MESSAGE"], "delivered more than once: \(welcome.map(\.text))")
        xena.send(Frames.ack(id))
        XCTAssertTrue(relay.offline.messages.isEmpty)
    }

    func testResentAfterStoredDeliveryAckedIsAckedNotStored() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        let message = Frames.message(from: Node.a, to: [Node.x], id: id)
        alice.send(message)
        _ = alice.receive()
        let (xena, welcome) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(welcome.last?.dataMsgID, id)
        xena.send(Frames.ack(id))
        XCTAssertTrue(relay.offline.messages.isEmpty)

        // Re-sent while Xena is connected: ACKed, not delivered again.
        alice.send(message)
        xena.expectNothing()
        alice.expectAck(id)

        // Re-sent while she is away: ACKed at once (the relay remembers the ACKed delivery, so
        // there is nothing to wait for), not stored.
        xena.close()
        relay.loop.run()
        relay.offline.holdCommits = true
        alice.send(message)
        relay.offline.commit()
        alice.expectAck(id)
        XCTAssertTrue(relay.offline.messages.isEmpty)
        XCTAssertEqual(relay.counters.stored, 1)
        let (_, back) = bind(relay, Node.x, name: "xena")
        XCTAssertEqual(back.map(\.type), ["ROUTING"], "delivered twice: \(back.map(\.text))")
    }

    /// The same as above for a message that went out live (no store involved) and was ACKed: the
    /// recipient then leaves and the sender re-sends it.
    func testResentAfterLiveDeliveryAckedAndRecipientGoneIsAckedNotStored() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        let message = Frames.message(from: Node.a, to: [Node.b], id: id)
        alice.send(message)
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, id)
        bob.send(Frames.ack(id))
        XCTAssertEqual(alice.receiveOne()?.type, "ACK")
        bob.close()
        relay.loop.run()

        alice.send(message)
        let answer = alice.receive()
        XCTAssertEqual(answer.map(\.type), ["ACK"], "re-sent delivered message: \(answer.map(\.text))")
        XCTAssertTrue(relay.offline.messages.isEmpty, "a message Bob already ACKed was stored again for him")
        let (_, back) = bind(relay, Node.b, name: "bob")
        XCTAssertEqual(back.map(\.type), ["ROUTING"], "delivered twice: \(back.map(\.text))")
        XCTAssertTrue(relay.offline.messages.isEmpty, "row left after Bob came back")
    }

    // MARK: Several recipients

    func testOneRecipientOnlineOneOfflineAckAfterCommitAndOnlineAck() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        relay.offline.holdCommits = true
        let id = Node.newID()
        let sent = Frames.message(from: Node.a, to: [Node.a, Node.b, Node.x], id: id)
        alice.send(sent)
        let original = jsonObject(sent)["msg_data"] as? [String: Any] ?? [:]

        guard let toBob = bob.receiveOne() else { return }
        XCTAssertEqual(toBob.recipients, [Node.b])
        XCTAssertEqual(toBob.ttl, 31)
        alice.expectNothing()
        guard let row = relay.offline.messages.first else { return XCTFail("nothing stored for Xena") }
        XCTAssertEqual(relay.offline.messages.count, 1)
        XCTAssertEqual(row.recipient, Node.guid(Node.x))
        let stored = object(body(row))
        let storedData = stored["msg_data"] as? [String: Any] ?? [:]
        XCTAssertEqual((storedData["recipient"] as? [[String: Any]])?.compactMap { $0["node_id"] as? String }, [Node.x])
        XCTAssertEqual(canonical(storedData, removing: ["recipient"]), canonical(original, removing: ["recipient"]))
        XCTAssertEqual((stored["ttl"] as? NSNumber)?.intValue, 31)
        XCTAssertEqual(stored["sender_id"] as? String, "alice@\(Node.a)")

        // Bob's ACK alone is not enough: Xena's copy is not committed yet.
        bob.send(Frames.ack(id))
        alice.expectNothing()
        XCTAssertEqual(relay.counters.acksSent, 0)

        relay.offline.commit()
        let answers = alice.receive()
        XCTAssertEqual(answers.map(\.type), ["NACK", "ACK"], "\(answers.map(\.text))")
        guard answers.count == 2 else { return }
        XCTAssertEqual(answers[0].reason, "unreachable")
        XCTAssertEqual(answers[0].data["stored"] as? Bool, true)
        XCTAssertEqual(answers[0].recipients, [Node.x])
        XCTAssertEqual(answers[0].dataMsgID, id)
        XCTAssertEqual(answers[1].dataMsgID, id)
        XCTAssertTrue(relay.shard.pending.isEmpty)

        relay.offline.holdCommits = false
        let (xena, welcome) = bind(relay, Node.x, name: "xena")
        guard welcome.count == 2 else { return XCTFail("\(welcome.map(\.text))") }
        XCTAssertEqual(welcome[1].recipients, [Node.x])
        XCTAssertEqual(welcome[1].bytes, body(row))
        xena.send(Frames.ack(id))
        XCTAssertTrue(relay.offline.messages.isEmpty)
        alice.expectNothing()
    }

    func testOneRecipientOnlineOneOfflineAckWaitsForOnlineAck() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.x, Node.b], id: id))
        XCTAssertEqual(bob.receiveOne()?.recipients, [Node.b])
        guard let nack = alice.receiveOne() else { return }
        XCTAssertEqual(nack.type, "NACK")
        XCTAssertEqual(nack.data["stored"] as? Bool, true)
        XCTAssertEqual(nack.recipients, [Node.x])
        alice.expectNothing()
        bob.send(Frames.ack(id))
        alice.expectAck(id)
    }

    func testTwoOfflineRecipientsOneRowEachNarrowed() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.c, Node.x], id: id))
        let nacks = alice.receive().filter { $0.type == "NACK" }
        XCTAssertTrue(nacks.allSatisfy { $0.data["stored"] as? Bool == true && $0.reason == "unreachable" }, "\(nacks.map(\.text))")
        XCTAssertEqual(Set(nacks.compactMap(\.recipients).flatMap { $0 }), [Node.c, Node.x])
        let rows = relay.offline.messages
        XCTAssertEqual(Set(rows.map(\.recipient)), [Node.guid(Node.c), Node.guid(Node.x)])
        for row in rows {
            let data = object(body(row))["msg_data"] as? [String: Any] ?? [:]
            XCTAssertEqual(
                (data["recipient"] as? [[String: Any]])?.compactMap { $0["node_id"] as? String }, [row.recipient.description])
        }
    }
}
