import Foundation
import XCTest

/// PROFILE.md section 7: floods reach every other neighbour once; the channel directory.
final class FloodTests: RelayTestCase {
    func testJoinFloodReachesEveryOtherNodeOnceAndARepeatIsDropped() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        let carol = try bind(relay, name: "carol")
        let id = Ids.make()
        let channelID = Ids.make()
        alice.client.send(json: Frames.membership("JOIN", from: alice, id: id, headID: Ids.make(), channelID: channelID))
        for node in [bob, carol] {
            let join = node.client.receive(verb: "JOIN", timeout: expectWithin)
            assertRelayHead(join, verb: "JOIN", ttl: 31, flood: true, sender: alice.address)
            XCTAssertEqual(join?.dataMessageID?.lowercased(), id, "\(node.label): JOIN msg_data.msg_id")
            XCTAssertEqual(join?.data["channel_id"] as? String, channelID)
        }
        // The same flood id again (with another head id) is a repeat.
        alice.client.send(json: Frames.membership("JOIN", from: alice, id: id, headID: Ids.make(), channelID: channelID))
        for node in [bob, carol] {
            let again = node.client.receive(verb: "JOIN", timeout: quietPeriod)
            XCTAssertNil(again, "\(node.label) got the JOIN flood twice: \(String(describing: again))")
        }
        let echo = alice.client.receive(verb: "JOIN", timeout: quietPeriod)
        XCTAssertNil(echo, "the JOIN was sent back to its origin: \(String(describing: echo))")
    }

    func testFloodIdComesFromTheHeadWhenMsgDataHasNoneAndAFloodWithoutIdIsDropped() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        // No id anywhere: dropped.
        alice.client.send(json: Frames.membership("JOIN", from: alice, id: nil, headID: nil))
        // Only a head id: relayed with msg_data.msg_id copied from it.
        let headID = Ids.make()
        alice.client.send(json: Frames.membership("LEAVE", from: alice, id: nil, headID: headID))
        let first = bob.client.receive(timeout: expectWithin) { $0.verb == "JOIN" || $0.verb == "LEAVE" }
        XCTAssertEqual(first?.verb, "LEAVE", "a JOIN without any id was relayed: \(String(describing: first))")
        assertRelayHead(first, verb: "LEAVE", ttl: 31, flood: true, sender: alice.address)
        XCTAssertEqual(first?.dataMessageID?.lowercased(), headID, "a relayed LEAVE must carry msg_data.msg_id: \(String(describing: first))")
    }

    func testLatestChannelIsCachedAndSentToClientsThatConnectLater() throws {
        let relay = try startRelay()
        let legacy = try bindLegacy(relay)
        let bob = try bind(relay, name: "bob")
        let channelID = Ids.make()
        let firstID = Ids.make()
        legacy.client.send(text: LegacyFrames.channel(from: legacy.id, channelID: channelID, messageID: firstID, members: [legacy.id]))
        let first = bob.client.receive(verb: "CHANNEL", timeout: expectWithin)
        assertRelayHead(first, verb: "CHANNEL", ttl: 31, flood: true, sender: legacy.address)
        XCTAssertEqual(first?.dataMessageID?.lowercased(), firstID)
        XCTAssertEqual(first?.data["channel_id"] as? String, channelID)

        let latestID = Ids.make()
        legacy.client.send(text: LegacyFrames.channel(from: legacy.id, channelID: channelID, messageID: latestID, members: [legacy.id, bob.id]))
        XCTAssertEqual(bob.client.receive(verb: "CHANNEL", timeout: expectWithin)?.dataMessageID?.lowercased(), latestID)

        // A client connecting now gets ROUTING, then the cached (latest) CHANNEL.
        let (dave, _) = try connectAndReadHello(relay, label: "dave")
        let daveID = Ids.make()
        dave.send(json: Frames.hello(id: daveID, name: "dave"))
        var verbs: [String] = []
        var channels: [[String: Any]] = []
        let deadline = Deadline(expectWithin)
        while channels.isEmpty, let frame = dave.receive(timeout: deadline.remaining) {
            verbs.append(frame.verb ?? "?")
            if frame.verb == "CHANNEL" { channels.append(frame) }
        }
        channels += dave.drain(timeout: quietPeriod).filter { $0.verb == "CHANNEL" }
        XCTAssertEqual(verbs.first, "ROUTING", "the first frame after HELLO must be ROUTING: \(verbs)")
        let cached = channels.filter { ($0.data["channel_id"] as? String) == channelID }
        XCTAssertEqual(cached.count, 1, "expected the latest CHANNEL once, got: \(cached)")
        XCTAssertEqual(cached.first?.dataMessageID?.lowercased(), latestID, "the cached CHANNEL is not the latest")
        assertRelayHead(cached.first, verb: "CHANNEL", flood: true, sender: legacy.address)
        XCTAssertEqual((cached.first?.data["members"] as? [[String: Any]])?.count, 2)
    }

    func testFloodWithTTLOneIsNotForwarded() throws {
        let relay = try startRelay()
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        var join = Frames.membership("JOIN", from: alice)
        join["ttl"] = 1
        alice.client.send(json: join)
        let id = Ids.make()
        alice.client.send(json: Frames.membership("LEAVE", from: alice, id: id))
        let first = bob.client.receive(timeout: expectWithin) { $0.verb == "JOIN" || $0.verb == "LEAVE" }
        XCTAssertEqual(first?.verb, "LEAVE", "a JOIN with ttl 1 was forwarded with ttl 0: \(String(describing: first))")
        XCTAssertEqual(first?.dataMessageID?.lowercased(), id)
    }

    func testFloodsOverThePerOriginBudgetAreDropped() throws {
        let relay = try startRelay(config: "limits:\n  flood_per_second: 1\n  flood_burst: 3\n")
        let alice = try bind(relay, name: "alice")
        let bob = try bind(relay, name: "bob")
        for _ in 0..<10 {
            alice.client.send(json: Frames.membership("JOIN", from: alice))
        }
        var received = 0
        while bob.client.receive(verb: "JOIN", timeout: quietPeriod) != nil { received += 1 }
        XCTAssertGreaterThanOrEqual(received, 3, "the flood burst of 3 did not pass")
        XCTAssertLessThanOrEqual(received, 4, "floods over the budget (1/s, burst 3) were relayed: \(received) of 10")
    }

    func testExpiredChannelIsNotSentToNewClients() throws {
        let relay = try startRelay(config: "channels:\n  ttl: 1\n")
        let legacy = try bindLegacy(relay)
        let bob = try bind(relay, name: "bob")
        let channelID = Ids.make()
        legacy.client.send(text: LegacyFrames.channel(from: legacy.id, channelID: channelID, messageID: Ids.make(), members: [legacy.id]))
        XCTAssertNotNil(bob.client.receive(verb: "CHANNEL", timeout: expectWithin), "the CHANNEL was not flooded")
        // Let the 1 s channel ttl pass (the legacy client keeps its connection alive meanwhile).
        let wait = Deadline(2)
        while !wait.hasPassed {
            legacy.client.sendKeepalive()
            _ = bob.client.drain(timeout: 0.25)
        }
        let (dave, _) = try connectAndReadHello(relay, label: "dave")
        dave.send(json: Frames.hello(id: Ids.make(), name: "dave"))
        let frames = dave.drain(timeout: 1)
        XCTAssertEqual(frames.first?.verb, "ROUTING")
        let stale = frames.filter { $0.verb == "CHANNEL" && ($0.data["channel_id"] as? String) == channelID }
        XCTAssertTrue(stale.isEmpty, "a CHANNEL older than channels.ttl (1 s) was sent to a new client: \(stale)")
    }
}
