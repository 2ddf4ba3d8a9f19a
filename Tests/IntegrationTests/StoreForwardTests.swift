import Foundation
import PTPProtocol
import XCTest

/// PROFILE.md section 6 and docs/store.md: store and forward with the real relay binary and its
/// SQLite store. The store is read from outside with `ptpchat-relay mailbox stats --json`.
final class StoreForwardTests: RelayTestCase {
    // MARK: Storing

    func testMessageForAnOfflineNodeIsNackedStoredTrueOnlyOnceCommitted() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = Ids.make()
        for index in 1...3 {
            let id = Ids.make()
            let nack = sendAndAwaitAnswer(alice, to: [bob], id: id)
            assertStoredNack(nack, for: id, relay: relay)
            // Read by another process right after the NACK, without polling: the row must be
            // committed before the NACK was written.
            let stats = storeStats(relay.dataDirectory)
            XCTAssertEqual(stats?.messages, index, "after the NACK stored:true of message \(index) the store holds \(String(describing: stats))")
            XCTAssertEqual(stats?.perRecipient[bob], index, "per recipient: \(String(describing: stats))")
        }
    }

    func testStoredMessagesFollowRoutingAndChannelsInArrivalOrderAndAreDeletedWhenAcked() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        // A cached CHANNEL: stored messages must come after it.
        let announcer = try bindLegacy(relay)
        let channelID = Ids.make()
        announcer.client.send(text: LegacyFrames.channel(from: announcer.id, channelID: channelID, messageID: Ids.make(), members: [announcer.id]))
        XCTAssertNotNil(alice.client.receive(verb: "CHANNEL", timeout: expectWithin), "the CHANNEL was not relayed (so not cached either)")

        let bobID = Ids.make()
        var sent: [String] = []
        for index in 0..<5 {
            let id = Ids.make()
            sent.append(id)
            alice.client.send(json: Frames.message(from: alice, to: [bobID], id: id, text: "stored \(index)"))
        }
        for id in sent {
            assertStoredNack(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }, for: id, relay: relay)
        }

        let bob = try sayHello(relay, name: "bob", id: bobID)
        var frames: [[String: Any]] = []
        let deadline = Deadline(expectWithin)
        while frames.filter({ $0.verb == "MESSAGE" }).count < sent.count, let frame = bob.client.receive(timeout: deadline.remaining) {
            frames.append(frame)
        }
        let verbs = frames.map { $0.verb ?? "?" }
        XCTAssertEqual(verbs.first, "ROUTING", "the first frame after the HELLO must be ROUTING: \(verbs)")
        let firstMessage = verbs.firstIndex(of: "MESSAGE") ?? verbs.count
        let channel = frames.firstIndex { $0.verb == "CHANNEL" && ($0.data["channel_id"] as? String)?.lowercased() == channelID }
        XCTAssertNotNil(channel, "the cached CHANNEL did not come: \(verbs)")
        if let channel { XCTAssertLessThan(channel, firstMessage, "a stored message came before the cached CHANNEL: \(verbs)") }
        XCTAssertFalse(verbs[firstMessage...].contains { $0 != "MESSAGE" }, "stored messages interleaved with other frames: \(verbs)")

        let messages = frames.filter { $0.verb == "MESSAGE" }
        XCTAssertEqual(messages.compactMap { $0.dataMessageID?.lowercased() }, sent, "stored messages not in arrival order")
        for (index, message) in messages.enumerated() {
            assertRelayHead(message, verb: "MESSAGE", ttl: 31, flood: false, sender: alice.address)
            XCTAssertEqual((message["msg_id"] as? String)?.lowercased(), message.dataMessageID?.lowercased(), "head msg_id: \(message)")
            XCTAssertEqual(message.recipientIDs, [bobID])
            XCTAssertEqual(message.data["message"] as? String, Data("stored \(index)".utf8).base64EncodedString())
        }

        // Delivered but not ACKed yet: still stored.
        XCTAssertEqual(storeStats(relay.dataDirectory)?.messages, sent.count, "stored messages deleted before their ACK")
        for id in sent { bob.client.send(json: Frames.ack(from: bob, acknowledging: id)) }
        XCTAssertEqual(waitForStoredMessages(0, in: relay.dataDirectory, timeout: expectWithin), 0, "ACKed messages still stored")
        XCTAssertEqual(storeStats(relay.dataDirectory)?.perRecipient.isEmpty, true)

        // Nothing comes again: not on this connection, not after a reconnect.
        let again = bob.client.receive(timeout: 1.2) { $0.verb == "MESSAGE" }
        XCTAssertNil(again, "an ACKed stored message came again: \(String(describing: again))")
        bob.client.close()
        let bobAgain = try bindAgain(relay, name: "bob", id: bobID)
        let afterReconnect = bobAgain.client.receive(timeout: 1.2) { $0.verb == "MESSAGE" }
        XCTAssertNil(afterReconnect, "an ACKed stored message came again after a reconnect: \(String(describing: afterReconnect))")
    }

    func testMultiRecipientMessageIsStoredOnlyForTheOfflineRecipientNarrowedToIt() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let carolID = Ids.make()
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id, carolID], id: id))
        let nack = alice.client.receive(timeout: expectWithin) { $0.verb == "NACK" && $0.dataMessageID?.lowercased() == id }
        assertStoredNack(nack, for: id, relay: relay)
        XCTAssertEqual(nack?.recipientIDs, [carolID], "the NACK must name the stored recipient: \(String(describing: nack))")
        XCTAssertEqual(storeStats(relay.dataDirectory)?.perRecipient, [carolID: 1])

        XCTAssertEqual(bob.client.receive(verb: "MESSAGE", timeout: expectWithin)?.recipientIDs, [bob.id])
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        XCTAssertNotNil(
            alice.client.receive(timeout: expectWithin) { $0.verb == "ACK" && $0.dataMessageID?.lowercased() == id },
            "no ACK once the connected recipient ACKed")

        let carol = try sayHello(relay, name: "carol", id: carolID)
        let stored = carol.client.receive(verb: "MESSAGE", timeout: expectWithin)
        XCTAssertEqual(stored?.dataMessageID?.lowercased(), id, "the stored copy did not come")
        XCTAssertEqual(stored?.recipientIDs, [carolID], "the stored copy must be narrowed to its recipient")
        carol.client.send(json: Frames.ack(from: carol, acknowledging: id))
        XCTAssertEqual(waitForStoredMessages(0, in: relay.dataDirectory, timeout: expectWithin), 0)
    }

    /// A message stored while its recipient is saying HELLO (the store's commit and the HELLO's
    /// read of the store race) must still be delivered to the now connected recipient.
    func testMessageStoredWhileTheRecipientConnectsIsDelivered() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        var stranded: [(node: Node, messageID: String)] = []
        var raced = 0
        let rounds = 4
        for round in 0..<rounds {
            let bobID = Ids.make()
            let (client, _) = try connectAndReadHello(relay, label: "bob\(round)")
            let bob = Node(client: client, id: bobID, name: "bob")
            let id = Ids.make()
            // Back to back: the message finds bob not connected, and bob's HELLO comes while the
            // message is being written.
            alice.client.send(json: Frames.message(from: alice, to: [bobID], id: id))
            client.send(json: Frames.hello(id: bobID, name: "bob"))
            // Stored messages are looked at again every second: 3 s is plenty. When bob's HELLO won
            // the race the message goes to him live, and alice's ACK waits for his: ACK first.
            let delivered = client.receive(timeout: 3) { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id }
            if delivered != nil { bob.client.send(json: Frames.ack(from: bob, acknowledging: id)) }
            let answer = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
            if answer?.verb == "NACK" && answer?.data["stored"] as? Bool == true {
                raced += 1
                if delivered == nil { stranded.append((bob, id)) }
            } else if answer == nil {
                XCTFail("round \(round): no answer for \(id)")
            }
        }
        print("messages stored while the recipient connected: \(raced) of \(rounds); not delivered: \(stranded.count)")
        XCTAssertTrue(
            stranded.isEmpty,
            "\(stranded.count) message(s) NACKed stored:true were not delivered within 3 s to their recipient, "
                + "connected since just after the message: \(stranded.map(\.messageID))")
        // Diagnosis: still in the store, and delivered once the recipient connects again.
        if let (bob, id) = stranded.first {
            XCTAssertEqual(storeStats(relay.dataDirectory)?.perRecipient[bob.id], 1, "the stranded message is not in the store")
            bob.client.close()
            let again = try bindAgain(relay, name: "bob", id: bob.id)
            let late = again.client.receive(timeout: expectWithin) { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id }
            print("stranded message delivered after a reconnect: \(late != nil)")
        }
    }

    /// A message for a recipient whose connection has just closed (the relay has not told every
    /// event loop yet) must be stored like one for any recipient that is not connected.
    func testMessageForARecipientThatJustLeftIsStored() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        var notStored: [String] = []
        let rounds = 10
        for round in 0..<rounds {
            let bob = try bind(relay, name: "bob\(round)")
            bob.client.close()
            let id = Ids.make()
            let answer = sendAndAwaitAnswer(alice, to: [bob.id], id: id)
            XCTAssertEqual(answer?.verb, "NACK", "round \(round): \(String(describing: answer))")
            if answer?.data["stored"] as? Bool != true {
                notStored.append("round \(round): NACK \(answer?.data["reason"] ?? "?") stored: \(answer?.data["stored"] ?? "?")")
            }
            XCTAssertTrue(waitUntilReportedGone(bob.id, to: alice), "the relay did not report bob\(round) as gone")
        }
        XCTAssertTrue(notStored.isEmpty, "messages for a recipient that had just disconnected were not stored: \(notStored)")
    }

    // MARK: Retries

    func testUnackedStoredMessageIsRetriedThenDroppedAfterMaxAttempts() throws {
        let relay = try startRelay(config: "timeouts:\n  ack: 1\nstore:\n  max_attempts: 2\n")
        let alice = try bind(relay, name: "alice")
        let bobID = Ids.make()
        let id = Ids.make()
        assertStoredNack(sendAndAwaitAnswer(alice, to: [bobID], id: id), for: id, relay: relay)

        let bob = try bind(relay, name: "bob", id: bobID)
        let isIt: ([String: Any]) -> Bool = { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id }
        XCTAssertNotNil(bob.client.receive(timeout: expectWithin, where: isIt), "first delivery missing")
        // Not ACKed: tried again after the ACK timeout (1 s) and the first retry delay (1 s).
        XCTAssertNotNil(bob.client.receive(timeout: 6, where: isIt), "no second delivery of an unACKed stored message")
        // The second was the last: dropped after its ACK timeout.
        XCTAssertEqual(waitForStoredMessages(0, in: relay.dataDirectory, timeout: 5), 0, "the message is still stored after max_attempts")
        let third = bob.client.receive(timeout: 4, where: isIt)
        XCTAssertNil(third, "a third delivery with store.max_attempts 2: \(String(describing: third))")
        XCTAssertTrue(relay.log.contains("stored message dropped after its last attempt"), "the drop is not logged")
    }

    func testRetriesBackOffDoublingFromTheAckTimeout() throws {
        // ACK timeout 2 s: a retry is due max(2, 1) = 2 s after the first failed attempt, 4 s after
        // the second; the relay looks for due messages every second.
        let relay = try startRelay(config: "timeouts:\n  ack: 2\nstore:\n  max_attempts: 3\nrouting:\n  to_clients: false\nrelay:\n  threads: 1\n")
        let alice = try bind(relay, name: "alice")
        let bobID = Ids.make()
        let id = Ids.make()
        assertStoredNack(sendAndAwaitAnswer(alice, to: [bobID], id: id), for: id, relay: relay)
        let bob = try bind(relay, name: "bob", id: bobID)
        var times: [Date] = []
        let deadline = Deadline(20)
        while times.count < 3, bob.client.receive(timeout: deadline.remaining, where: {
            $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id
        }) != nil {
            times.append(Date())
        }
        XCTAssertEqual(times.count, 3, "expected 3 deliveries (store.max_attempts 3), got \(times.count)")
        guard times.count == 3 else { return }
        let first = times[1].timeIntervalSince(times[0])
        let second = times[2].timeIntervalSince(times[1])
        print("gaps between deliveries: \(first) s, \(second) s (at \(times.map { ISO8601DateFormatter.string(from: $0, timeZone: .gmt, formatOptions: [.withInternetDateTime, .withFractionalSeconds]) }))")
        // 2 s ACK timeout + 2 s, then 2 s + 4 s, each plus up to 1 s until the next look.
        XCTAssertGreaterThanOrEqual(first, 3.8, "first retry too early")
        XCTAssertLessThanOrEqual(first, 5.6, "first retry too late")
        XCTAssertGreaterThanOrEqual(
            second, 5.8, "second retry does not wait the ACK timeout and back off (about 5 s: the retry's ACK deadline had passed when it was sent)")
        XCTAssertLessThanOrEqual(second, 7.6, "second retry too late")
        XCTAssertEqual(waitForStoredMessages(0, in: relay.dataDirectory, timeout: 4), 0)
    }

    /// A retry must wait `timeouts.ack` for its ACK like any delivery: a recipient that ACKs a
    /// retry well within the timeout has the message deleted and gets no further copy.
    func testRetriedStoredMessageGetsTheWholeAckTimeout() throws {
        // One event loop, no ROUTING deltas: nothing but the test's own frames happens on the
        // relay between the deliveries.
        let relay = try startRelay(
            config: "timeouts:\n  ack: 1\nstore:\n  max_attempts: 5\nrouting:\n  to_clients: false\nrelay:\n  threads: 1\n")
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let id = Ids.make()
        let isIt: ([String: Any]) -> Bool = { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id }
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id))
        // Live, not ACKed: stored after the 1 s ACK timeout and tried again (1 s later), not
        // ACKed again, tried a third time (2 s later).
        XCTAssertNotNil(bob.client.receive(timeout: expectWithin, where: isIt), "live delivery missing")
        assertStoredNack(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }, for: id, relay: relay)
        XCTAssertNotNil(bob.client.receive(timeout: 5, where: isIt), "first retry missing")
        XCTAssertNotNil(bob.client.receive(timeout: 6, where: isIt), "second retry missing")
        // ACK it 0.6 s after it came, within the 1 s ACK timeout.
        usleep(600_000)
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        XCTAssertEqual(
            waitForStoredMessages(0, in: relay.dataDirectory, timeout: 2), 0,
            "a retry ACKed 0.6 s after it was sent (ACK timeout 1 s) is still stored")
        let unknownAck = relay.log.split(separator: "\n").first { $0.contains("ACK for no awaited message") }
        XCTAssertNil(unknownAck, "the relay no longer awaited the ACK of the retry: \(unknownAck ?? "")")
        let another = bob.client.receive(timeout: 2, where: isIt)
        XCTAssertNil(another, "delivered again after the recipient ACKed the retry in time: \(String(describing: another))")
    }

    func testLiveDeliveryWithoutAckIsStoredAndDeliveredAgain() throws {
        let relay = try startRelay(config: "timeouts:\n  ack: 1\n")
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let id = Ids.make()
        let isIt: ([String: Any]) -> Bool = { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id }
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id))
        XCTAssertNotNil(bob.client.receive(timeout: expectWithin, where: isIt), "not delivered live")
        let nack = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        assertStoredNack(nack, for: id, relay: relay)
        XCTAssertEqual(storeStats(relay.dataDirectory)?.perRecipient[bob.id], 1, "NACK stored:true but the message is not in the store")
        XCTAssertNotNil(bob.client.receive(timeout: 6, where: isIt), "the stored copy was not delivered again")
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        XCTAssertEqual(waitForStoredMessages(0, in: relay.dataDirectory, timeout: expectWithin), 0, "ACKed, still stored")
        let extra = bob.client.receive(timeout: 2.5, where: isIt)
        XCTAssertNil(extra, "delivered again after the ACK: \(String(describing: extra))")
    }

    func testRecipientThatLeavesBeforeAckingGetsTheMessageAgainAfterReconnecting() throws {
        let relay = try startRelay(config: "timeouts:\n  ack: 2\n")
        let alice = try bind(relay, name: "alice")
        let bobID = Ids.make()
        let id = Ids.make()
        assertStoredNack(sendAndAwaitAnswer(alice, to: [bobID], id: id), for: id, relay: relay)
        let isIt: ([String: Any]) -> Bool = { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id }
        let bob = try bind(relay, name: "bob", id: bobID)
        XCTAssertNotNil(bob.client.receive(timeout: expectWithin, where: isIt), "first delivery missing")
        bob.client.close()
        let left = Date()
        XCTAssertEqual(storeStats(relay.dataDirectory)?.messages, 1, "deleted without an ACK")
        let bobAgain = try bindAgain(relay, name: "bob", id: bobID)
        // Tried again after the retry delay: max(ack, 1) s from the failed attempt.
        XCTAssertNotNil(bobAgain.client.receive(timeout: 5, where: isIt), "not delivered again after the reconnect")
        print("delivered again \(Date().timeIntervalSince(left)) s after the recipient left")
        bobAgain.client.send(json: Frames.ack(from: bobAgain, acknowledging: id))
        XCTAssertEqual(waitForStoredMessages(0, in: relay.dataDirectory, timeout: expectWithin), 0)
    }

    // MARK: De-duplication

    func testSameMessageIdIsStoredOnceAndNotDeliveredAgainAfterItsAck() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bobID = Ids.make()
        let id = Ids.make()
        assertStoredNack(sendAndAwaitAnswer(alice, to: [bobID], id: id), for: id, relay: relay)
        assertStoredNack(sendAndAwaitAnswer(alice, to: [bobID], id: id), for: id, relay: relay)
        XCTAssertEqual(storeStats(relay.dataDirectory)?.messages, 1, "the same msg_id was stored twice")

        let isIt: ([String: Any]) -> Bool = { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id }
        let bob = try bind(relay, name: "bob", id: bobID)
        XCTAssertNotNil(bob.client.receive(timeout: expectWithin, where: isIt))
        XCTAssertNil(bob.client.receive(timeout: 1.2, where: isIt), "delivered twice")
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        XCTAssertEqual(waitForStoredMessages(0, in: relay.dataDirectory, timeout: expectWithin), 0)

        // Re-sent after the ACK, recipient connected: ACKed at once, not delivered.
        XCTAssertEqual(sendAndAwaitAnswer(alice, to: [bobID], id: id)?.verb, "ACK", "a re-sent ACKed message must be ACKed")
        XCTAssertNil(bob.client.receive(timeout: quietPeriod, where: isIt), "a re-sent ACKed message was delivered again")

        // Re-sent after the ACK, recipient gone: ACKed, not stored again.
        bob.client.close()
        XCTAssertTrue(waitUntilReportedGone(bobID, to: alice), "the relay did not report bob as gone")
        XCTAssertEqual(sendAndAwaitAnswer(alice, to: [bobID], id: id)?.verb, "ACK", "a re-sent ACKed message must be ACKed, not stored")
        XCTAssertEqual(storeStats(relay.dataDirectory)?.messages, 0, "a re-sent ACKed message was stored again")
    }

    // MARK: Bounds

    func testPerRecipientMessageBoundGivesQueueFull() throws {
        let relay = try startRelay(config: "store:\n  per_recipient_messages: 2\n")
        let alice = try bind(relay, name: "alice")
        let bobID = Ids.make()
        var stored: [String] = []
        for _ in 0..<2 {
            let id = Ids.make()
            assertStoredNack(sendAndAwaitAnswer(alice, to: [bobID], id: id), for: id, relay: relay)
            stored.append(id)
        }
        let over = Ids.make()
        let nack = sendAndAwaitAnswer(alice, to: [bobID], id: over)
        assertNack(nack, for: over, reason: "queue_full", relay: relay)
        XCTAssertEqual(nack?.data["stored"] as? Bool, false, "queue_full must say stored: false: \(String(describing: nack))")
        // Another recipient is not affected.
        let other = Ids.make()
        assertStoredNack(sendAndAwaitAnswer(alice, to: [Ids.make()], id: other), for: other, relay: relay)

        let bob = try bind(relay, name: "bob", id: bobID)
        let frames = bob.client.drain(timeout: 1.5).filter { $0.verb == "MESSAGE" }
        XCTAssertEqual(frames.compactMap { $0.dataMessageID?.lowercased() }, stored, "exactly the two stored messages must come")
        for id in stored { bob.client.send(json: Frames.ack(from: bob, acknowledging: id)) }
        XCTAssertEqual(waitForStoredMessages(1, in: relay.dataDirectory, timeout: expectWithin), 1)

        // Room again once they are ACKed.
        bob.client.close()
        XCTAssertTrue(waitUntilReportedGone(bobID, to: alice), "the relay did not report bob as gone")
        let answer = sendAndAwaitAnswer(alice, to: [bobID])
        XCTAssertEqual(answer?.data["stored"] as? Bool, true, "bob's mailbox is still full after his ACKs: \(String(describing: answer))")
    }

    func testPerSenderMessageBoundGivesQueueFullToThatSenderOnly() throws {
        let relay = try startRelay(config: "store:\n  per_sender_messages: 2\n")
        let alice = try bind(relay, name: "alice")
        let carol = try bind(relay, name: "carol")
        let bobID = Ids.make()
        for _ in 0..<2 {
            let id = Ids.make()
            assertStoredNack(sendAndAwaitAnswer(alice, to: [bobID], id: id), for: id, relay: relay)
        }
        let over = Ids.make()
        let nack = sendAndAwaitAnswer(alice, to: [bobID], id: over)
        assertNack(nack, for: over, reason: "queue_full", relay: relay)
        XCTAssertEqual(nack?.data["stored"] as? Bool, false)

        let fromCarol = Ids.make()
        assertStoredNack(sendAndAwaitAnswer(carol, to: [bobID], id: fromCarol), for: fromCarol, relay: relay)
        let toDave = Ids.make()
        assertStoredNack(sendAndAwaitAnswer(alice, to: [Ids.make()], id: toDave), for: toDave, relay: relay)
        XCTAssertEqual(storeStats(relay.dataDirectory)?.perRecipient[bobID], 3)
    }

    func testByteBoundsGiveQueueFull() throws {
        let text = String(repeating: "0123456789abcdef", count: 190)  // about 4 KiB once base64 encoded
        for key in ["per_recipient_bytes", "max_bytes"] {
            let relay = try startRelay(config: "store:\n  \(key): 10000\n")
            let alice = try bind(relay, name: "alice")
            // per_recipient_bytes: all to one recipient; max_bytes: each to another one.
            let bobID = Ids.make()
            for index in 0..<2 {
                let id = Ids.make()
                let recipient = key == "max_bytes" ? Ids.make() : bobID
                assertStoredNack(sendAndAwaitAnswer(alice, to: [recipient], id: id, text: text), for: id, relay: relay)
                if index == 1 {
                    let bytes = storeStats(relay.dataDirectory)?.bytes ?? 0
                    XCTAssertTrue(bytes <= 10000 && bytes * 3 / 2 > 10000, "test premise: two messages take \(bytes) bytes")
                }
            }
            let over = Ids.make()
            let nack = sendAndAwaitAnswer(alice, to: [key == "max_bytes" ? Ids.make() : bobID], id: over, text: text)
            assertNack(nack, for: over, reason: "queue_full", relay: relay)
            XCTAssertEqual(nack?.data["stored"] as? Bool, false, "\(key): \(String(describing: nack))")
            // A small one still fits under the bound.
            let small = Ids.make()
            assertStoredNack(sendAndAwaitAnswer(alice, to: [bobID], id: small, text: "s"), for: small, relay: relay)
            relay.stop()
        }
    }

    // MARK: Expiry

    func testMessagePastMaxAgeIsDeletedByTheRelayAndNeverDelivered() throws {
        let relay = try startRelay(config: "store:\n  max_age: 1\n")
        let alice = try bind(relay, name: "alice")
        let bobID = Ids.make()
        let id = Ids.make()
        assertStoredNack(sendAndAwaitAnswer(alice, to: [bobID], id: id), for: id, relay: relay)
        let stored = Date()
        XCTAssertEqual(waitForStoredMessages(0, in: relay.dataDirectory, timeout: 5), 0, "not expired within 5 s with store.max_age 1")
        let after = Date().timeIntervalSince(stored)
        print("expired after \(after) s")
        XCTAssertGreaterThanOrEqual(after, 0.8, "deleted before it was max_age old")
        let bob = try bind(relay, name: "bob", id: bobID)
        let late = bob.client.receive(timeout: 1.5) { $0.verb == "MESSAGE" }
        XCTAssertNil(late, "an expired message was delivered: \(String(describing: late))")
        XCTAssertTrue(relay.log.contains("expired stored messages"), "the expiry is not logged")
    }

    // MARK: Restarts

    func testStoredMessagesSurviveARestart() throws {
        try checkStoredMessagesSurvive(kill: false)
    }

    func testStoredMessagesSurviveKill9() throws {
        try checkStoredMessagesSurvive(kill: true)
    }

    private func checkStoredMessagesSurvive(kill: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bobID = Ids.make()
        var sent: [String] = []
        for _ in 0..<3 {
            let id = Ids.make()
            assertStoredNack(sendAndAwaitAnswer(alice, to: [bobID], id: id), for: id, relay: relay, file: file, line: line)
            sent.append(id)
        }
        if kill {
            XCTAssertTrue(relay.kill9(), "the relay did not die", file: file, line: line)
        } else {
            relay.stop()
            XCTAssertEqual(relay.child.process.terminationStatus, 0, "the relay did not stop cleanly: \(relay.logTail())", file: file, line: line)
        }
        let restarted = try startRelay(dataDirectory: relay.dataDirectory, nodeID: relay.nodeID)
        let bob = try bind(restarted, name: "bob", id: bobID)
        var received: [String] = []
        let deadline = Deadline(expectWithin)
        while received.count < sent.count, let frame = bob.client.receive(timeout: deadline.remaining, where: { $0.verb == "MESSAGE" }) {
            received.append(frame.dataMessageID?.lowercased() ?? "?")
        }
        XCTAssertEqual(received, sent, "stored messages after the \(kill ? "kill -9" : "restart")", file: file, line: line)
        for id in received { bob.client.send(json: Frames.ack(from: bob, acknowledging: id)) }
        XCTAssertEqual(waitForStoredMessages(0, in: restarted.dataDirectory, timeout: expectWithin), 0, file: file, line: line)
    }

    // MARK: A bad store file

    func testGarbageStoreFileStopsTheRelayWithOneLineNamingIt() throws {
        let data = try directory.appendingPathComponent("garbage")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<16384).map { _ in UInt8.random(in: 0...255, using: &generator) }
        try Data(bytes).write(to: data.appendingPathComponent("store.sqlite"))
        try expectStartFailure(dataDirectory: data, name: "relay-garbage-store")
    }

    func testStoreFileWithEveryPageAfterTheFirstCorruptStopsTheRelayWithOneLineNamingIt() throws {
        let (dataDirectory, size) = try makeCheckpointedStore()
        try overwrite(dataDirectory.appendingPathComponent("store.sqlite"), from: 4096, count: size - 4096)
        try expectStartFailure(dataDirectory: dataDirectory, name: "relay-corrupt-pages")
    }

    func testStoreFileWithItsSecondHalfCorruptStopsTheRelayWithOneLineNamingIt() throws {
        let (dataDirectory, size) = try makeCheckpointedStore()
        let half = size / 2 / 4096 * 4096
        try overwrite(dataDirectory.appendingPathComponent("store.sqlite"), from: half, count: size - half)
        // Premise: reading the stored messages fails on this file.
        let list = try mailbox(["list", "--data-dir", dataDirectory.path, "--json", "--limit", "100000"])
        XCTAssertNotEqual(list.status, 0, "test premise: the messages of the damaged file can still be read: \(list.stderr)")
        print("mailbox list on the damaged store: \(list.stderr)")
        try expectStartFailure(dataDirectory: dataDirectory, name: "relay-corrupt-half")
    }

    /// A store of about 5 MB written by the relay, large enough for SQLite to have checkpointed
    /// its WAL into the main file (at 1000 pages); the WAL is removed after the relay stopped.
    private func makeCheckpointedStore() throws -> (dataDirectory: URL, size: Int) {
        let relay = try startRelay(config: "store:\n  per_recipient_messages: 100000\n  per_sender_messages: 100000\n")
        let alice = try bind(relay, name: "alice")
        let text = String(repeating: "0123456789abcdef", count: 190)
        let recipients = (0..<10).map { _ in Ids.make() }
        let total = 1200
        var sent = 0
        var answered = 0
        let deadline = Deadline(30)
        while answered < total && !deadline.hasPassed {
            while sent < total && sent - answered < 64 {
                alice.client.send(json: Frames.message(from: alice, to: [recipients[sent % recipients.count]], text: text))
                sent += 1
            }
            if alice.client.receive(timeout: 1, where: { $0.verb == "NACK" || $0.verb == "ACK" }) != nil { answered += 1 }
        }
        XCTAssertEqual(answered, total, "not every message was answered")
        relay.stop()
        let file = relay.storeFile
        try? FileManager.default.removeItem(atPath: file.path + "-wal")
        try? FileManager.default.removeItem(atPath: file.path + "-shm")
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int)
        guard size > 1_000_000 else {
            throw XCTSkip("test premise: the WAL was not checkpointed into store.sqlite (\(size) bytes)")
        }
        return (relay.dataDirectory, size)
    }

    private func overwrite(_ file: URL, from offset: Int, count: Int) throws {
        let handle = try FileHandle(forWritingTo: file)
        try handle.seek(toOffset: UInt64(offset))
        var generator = SeededRandom(seed: 42)
        try handle.write(contentsOf: Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }))
        try handle.close()
    }

    func testUnopenableStoreFileStopsTheRelayWithOneLineNamingIt() throws {
        let data = try directory.appendingPathComponent("unopenable")
        // A directory where the file should be: SQLite cannot open it (the tests run as root, so
        // file permissions would not stop it).
        try FileManager.default.createDirectory(at: data.appendingPathComponent("store.sqlite"), withIntermediateDirectories: true)
        try expectStartFailure(dataDirectory: data, name: "relay-unopenable-store")
    }

    private func expectStartFailure(dataDirectory: URL, name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let port = try Sockets.freePort()
        let relay = try runRelayBinary(
            ["--listen", "127.0.0.1:\(port)", "--stats", "off", "--data-dir", dataDirectory.path, "--node-id", Ids.make()], name: name)
        let status = relay.waitForExit(timeout: 5)
        guard let status else {
            XCTFail("the relay runs on a bad store file: \(relay.stdout)\(relay.stderr)", file: file, line: line)
            return
        }
        XCTAssertNotEqual(status, 0, "exit status", file: file, line: line)
        let lines = (relay.stdoutLines + relay.stderrLines).filter { !$0.isEmpty }
        XCTAssertEqual(lines.count, 1, "expected exactly one line of output: \(lines)", file: file, line: line)
        XCTAssertTrue(relay.stderrLines.first?.contains("store.sqlite") ?? false, "the line must name store.sqlite: \(lines)", file: file, line: line)
        XCTAssertFalse(try Sockets.isAccepting(port: port), "something listens on the relay's port", file: file, line: line)
    }
}

extension Sockets {
    static func isAccepting(port: UInt16) throws -> Bool {
        guard let fd = try? connected(port: port) else { return false }
        closeSocket(fd)
        return true
    }
}
