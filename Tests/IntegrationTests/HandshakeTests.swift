import Foundation
import XCTest

/// PROFILE.md sections 1, 2 and 4: the relay's HELLO, the first frame rule, the handshake
/// timeout, ROUTING after HELLO, HELLO refresh and keepalives.
final class HandshakeTests: RelayTestCase {
    func testRelaySendsItsServerHelloFirstWithAnExactHead() throws {
        let relay = try startRelay()
        let client = try connect(relay, label: "probe")
        let frame = try XCTUnwrap(client.receiveFrame(timeout: expectWithin), "no frame from the relay after connecting")
        assertRelayHead(frame.json, verb: "HELLO", ttl: 1, flood: false, sender: relay.address)
        let data = frame.json.data
        XCTAssertEqual((data["node_id"] as? String)?.lowercased(), relay.nodeID, "HELLO msg_data.node_id: \(frame.json)")
        XCTAssertEqual((data["attributes"] as? [String: Any])?["node_type"] as? String, "server", "HELLO node_type: \(frame.json)")
        XCTAssertNotNil(data["version"] as? String, "HELLO version: \(frame.json)")
        XCTAssertTrue(JSON.isCompact(frame.bytes), "the HELLO is not compact JSON: \(TestClient.text(frame.bytes))")
        XCTAssertLessThanOrEqual(frame.bytes.count, 8192)
    }

    func testRoutingFollowsHelloAndListsConnectedNodesWithExactEntries() throws {
        // The whole view (`routing.to_clients: true`); ClientRoutingViewTests has `channels`.
        let relay = try startRelay(config: "routing:\n  to_clients: true\n")
        let bob = try bind(relay, name: "bob")
        let anonymous = try bind(relay, name: nil)
        let oddlyNamed = try bind(relay, name: "bad_name")
        let (alice, _) = try connectAndReadHello(relay, label: "alice")
        alice.send(json: Frames.hello(id: Ids.make(), name: "alice"))

        // The first frame after the HELLO is the ROUTING that binds the connection.
        let routing = try XCTUnwrap(alice.receive(timeout: expectWithin), "no frame after HELLO")
        assertRelayHead(routing, verb: "ROUTING", ttl: 1, flood: false, sender: relay.address)
        let entries = try XCTUnwrap(routing.data["nodes"] as? [[String: Any]], "ROUTING msg_data.nodes is not a list of objects: \(routing)")
        for entry in entries {
            XCTAssertEqual(Set(entry.keys), ["node_id", "ttl"], "entry keys: \(entry)")
            XCTAssertTrue(Ids.isAddress(entry["node_id"] as? String), "entry node_id must be name@GUID: \(entry)")
            XCTAssertNotNil(entry["ttl"] as? Int, "entry ttl must be an integer: \(entry)")
        }
        for node in [bob, anonymous, oddlyNamed] {
            let entry = entries.first { ($0["node_id"] as? String)?.lowercased().hasSuffix(node.id) ?? false }
            XCTAssertEqual(entry?["node_id"] as? String, node.address, "ROUTING entry for \(node.label): \(routing)")
            XCTAssertEqual(entry?["ttl"] as? Int, 1, "ROUTING entry ttl for \(node.label): \(routing)")
        }
        XCTAssertEqual(anonymous.address, "node@\(anonymous.id)")
        XCTAssertEqual(oddlyNamed.address, "node@\(oddlyNamed.id)")
    }

    func testRoutingChangesReachBoundClients() throws {
        let relay = try startRelay(config: "routing:\n  to_clients: true\n")
        let bob = try bind(relay, name: "bob")
        let alice = try bind(relay, name: "alice")
        func entry(_ frame: [String: Any]) -> [String: Any]? {
            guard frame.verb == "ROUTING" else { return nil }
            return (frame.data["nodes"] as? [[String: Any]])?.first { ($0["node_id"] as? String)?.lowercased().hasSuffix(alice.id) ?? false }
        }
        let added = bob.client.receive(timeout: expectWithin) { entry($0)?["ttl"] as? Int == 1 }
        XCTAssertNotNil(added, "bob got no ROUTING listing alice at ttl 1 after she connected")
        if let added { XCTAssertEqual(entry(added)?["node_id"] as? String, alice.address) }
        alice.client.close()
        let withdrawn = bob.client.receive(timeout: expectWithin) { entry($0)?["ttl"] as? Int == 32 }
        XCTAssertNotNil(withdrawn, "bob got no ROUTING withdrawing alice (ttl 32) after she disconnected")
    }

    func testFirstFrameOtherThanHelloClosesTheConnection() throws {
        let relay = try startRelay()
        let (client, _) = try connectAndReadHello(relay, label: "eager")
        let someone = Node(client: client, id: Ids.make(), name: "eager")
        client.send(json: Frames.message(from: someone, to: [Ids.make()]))
        XCTAssertTrue(client.expectClosed(timeout: expectWithin), "a MESSAGE before HELLO did not close the connection")

        let (garbage, _) = try connectAndReadHello(relay, label: "garbage")
        garbage.send(text: #"{"msg_type":"HELLO","msg_data":"#)
        XCTAssertTrue(garbage.expectClosed(timeout: expectWithin), "malformed JSON before HELLO did not close the connection")
    }

    func testNoHelloWithinTheHandshakeTimeoutClosesTheConnection() throws {
        let relay = try startRelay(config: "timeouts:\n  handshake: 1\n")
        let bound = try bind(relay, name: "bound")
        let start = Date()
        let (client, _) = try connectAndReadHello(relay, label: "silent")
        var closedAfter: Double?
        let deadline = Deadline(5)
        while !deadline.hasPassed {
            // Keepalives are not a HELLO: they must not keep the handshake open.
            client.sendKeepalive()
            if client.expectClosed(timeout: 0.2) {
                closedAfter = Date().timeIntervalSince(start)
                break
            }
        }
        let closed = try XCTUnwrap(closedAfter, "a connection without HELLO was still open 5 s after connecting (handshake timeout 1 s)")
        XCTAssertGreaterThanOrEqual(closed, 0.5, "closed after \(closed) s, before the 1 s handshake timeout")
        // A bound connection is past the handshake: still served.
        let probe = Ids.make()
        bound.client.send(json: Frames.getKey(from: bound, id: probe))
        XCTAssertNotNil(bound.client.receive(timeout: expectWithin) { self.isAnswer($0, to: probe) }, "the bound connection no longer answers")
    }

    func testHelloNamingTwoDifferentIdsIsRefused() throws {
        let relay = try startRelay()
        let bob = try bind(relay, name: "bob")
        let (client, _) = try connectAndReadHello(relay, label: "twofaced")
        let headID = Ids.make()
        let dataID = Ids.make()
        var hello = Frames.hello(id: dataID, name: nil)
        hello["sender_id"] = "twofaced@\(headID)"
        client.send(json: hello)
        let frames = client.drain(timeout: 1)
        XCTAssertFalse(frames.contains { $0.verb == "ROUTING" }, "a HELLO whose sender_id and msg_data.node_id differ was accepted: \(frames)")
        for id in [headID, dataID] {
            let probe = Ids.make()
            bob.client.send(json: Frames.message(from: bob, to: [id], id: probe))
            let answer = bob.client.receive(timeout: expectWithin) { self.isAnswer($0, to: probe) }
            XCTAssertEqual(answer?.verb, "NACK", "a message to \(id) of the refused HELLO was not refused: \(String(describing: answer))")
        }
    }

    func testRelayRepeatsItsHelloEveryHelloRefresh() throws {
        let relay = try startRelay(config: "timeouts:\n  hello_refresh: 1\n")
        let alice = try bind(relay, name: "alice")
        let hello = alice.client.receive(verb: "HELLO", timeout: 3)
        XCTAssertNotNil(hello, "no repeated HELLO within 3 s with hello_refresh 1 s")
        assertRelayHead(hello, verb: "HELLO", ttl: 1, flood: false, sender: relay.address)
        XCTAssertEqual((hello?.data["attributes"] as? [String: Any])?["node_type"] as? String, "server")
    }

    func testRelaySendsKeepalivesWhenItHasNothingToSend() throws {
        let relay = try startRelay(config: "timeouts:\n  keepalive: 1\n")
        let alice = try bind(relay, name: "alice")
        XCTAssertTrue(
            Deadline.poll(timeout: 3) {
                _ = alice.client.drain(timeout: 0.1)
                return alice.client.keepalivesReceived > 0
            }, "no keepalive within 3 s with keepalive 1 s")
        XCTAssertFalse(alice.client.isClosed)
    }
}
