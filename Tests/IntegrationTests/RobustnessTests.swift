import Foundation
import XCTest

/// PROFILE.md sections 1, 5 and 10: what the relay does with bad input and silent peers.
final class RobustnessTests: RelayTestCase {
    func testMalformedJSONIsDroppedWithoutNackAndTheConnectionStaysOpen() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        alice.client.send(text: #"{"msg_type":"MESSAGE","msg_data":{"#)
        alice.client.send(text: "hello there")
        alice.client.send(text: "[1,2,3]")
        alice.client.sendFrame([0xFF, 0xFE, 0x7B, 0x7D])
        let nack = alice.client.receive(verb: "NACK", timeout: quietPeriod)
        XCTAssertNil(nack, "malformed JSON (no msg_id to refer to) got a NACK: \(String(describing: nack))")
        XCTAssertFalse(alice.client.isClosed, "malformed JSON closed the connection")

        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id))
        XCTAssertEqual(bob.client.receive(verb: "MESSAGE", timeout: expectWithin)?.dataMessageID?.lowercased(), id,
            "the connection no longer works after malformed frames")
    }

    func testJSONInvalidForItsVerbIsNackedInvalid() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")

        let noRecipient = Ids.make()
        var missing = Frames.message(from: alice, to: [bob.id], id: noRecipient)
        var data = missing.data
        data.removeValue(forKey: "recipient")
        missing["msg_data"] = data
        alice.client.send(json: missing)
        assertNack(
            alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: noRecipient) }, for: noRecipient, reason: "invalid",
            relay: relay)

        let wrongType = Ids.make()
        var badRecipient = Frames.message(from: alice, to: [bob.id], id: wrongType)
        badRecipient["msg_data"] = badRecipient.data.merging(["recipient": bob.id]) { $1 }
        alice.client.send(json: badRecipient)
        assertNack(
            alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: wrongType) }, for: wrongType, reason: "invalid",
            relay: relay)

        XCTAssertNil(bob.client.receive(verb: "MESSAGE", timeout: quietPeriod), "an invalid message was relayed")
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id))
        XCTAssertEqual(bob.client.receive(verb: "MESSAGE", timeout: expectWithin)?.dataMessageID?.lowercased(), id)
    }

    func testFrameOverTheSizeLimitClosesTheConnection() throws {
        let relay = try startRelay(config: "limits:\n  max_frame_bytes: 1024\n")
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")

        // A frame just under the limit still passes.
        var padded = Frames.message(from: alice, to: [bob.id], text: "")
        let overhead = JSON.data(padded).count
        let room = (1024 - overhead - 8) / 4 * 3
        padded = Frames.message(from: alice, to: [bob.id], id: padded.dataMessageID!, text: String(repeating: "x", count: room))
        let size = JSON.data(padded).count
        XCTAssertLessThanOrEqual(size, 1024)
        XCTAssertGreaterThan(size, 960)
        alice.client.send(json: padded)
        XCTAssertNotNil(bob.client.receive(verb: "MESSAGE", timeout: expectWithin), "a \(size)-byte frame under the 1024 limit was not relayed")

        // A length header over the limit, followed by only part of its payload: the relay must
        // refuse it from the header alone.
        alice.client.sendRaw(TestClient.lengthPrefix(1025) + Array(repeating: UInt8(ascii: " "), count: 16))
        XCTAssertTrue(alice.client.expectClosed(timeout: expectWithin), "a 1025-byte length header (limit 1024) did not close the connection")
        XCTAssertFalse(bob.client.isClosed)
    }

    func testIdleTimeoutClosesASilentConnectionButNotOneSendingKeepalives() throws {
        let relay = try startRelay(config: "timeouts:\n  idle: 1\n")
        let silent = try bind(relay, name: "silent")
        let keeper = try bind(relay, name: "keeper")
        let start = Date()
        var closedAfter: Double?
        let deadline = Deadline(5)
        while !deadline.hasPassed {
            keeper.client.sendKeepalive()
            if silent.client.expectClosed(timeout: 0.2) {
                closedAfter = Date().timeIntervalSince(start)
                break
            }
        }
        let closed = try XCTUnwrap(closedAfter, "a silent connection was still open after 5 s with idle timeout 1 s")
        XCTAssertGreaterThanOrEqual(closed, 0.5, "closed after \(closed) s, before the 1 s idle timeout")
        // Keep the keeper going past another idle period, then check it is served.
        let more = Deadline(1.2)
        while !more.hasPassed {
            keeper.client.sendKeepalive()
            _ = keeper.client.drain(timeout: 0.2)
        }
        XCTAssertFalse(keeper.client.isClosed, "a connection sending keepalives was closed as idle")
        let probe = Ids.make()
        keeper.client.send(json: Frames.getKey(from: keeper, id: probe))
        XCTAssertNotNil(keeper.client.receive(timeout: expectWithin) { self.isAnswer($0, to: probe) }, "the keeper is not served any more")
    }
}
