import Foundation
import XCTest

/// PROFILE.md section 9 with real relay processes on loopback: peering and its proof, routes,
/// forwarding with ACK chaining, floods, withdrawals, restarts, store and forward, CONNECT, id
/// collisions and the existing client across relays.
final class MeshTests: RelayTestCase {
    static let key = "integration-mesh-key-0123456789"
    /// Short enough that a test sees a route change within a second.
    static let interval = 0.05
    /// `routing.interval` as the relay defaults it.
    static let defaultInterval = 0.25

    /// A relay of the mesh that dials `peers`.
    func startMeshRelay(
        peers: [RelayProcess] = [], key: String = MeshTests.key, dataDirectory: URL? = nil, nodeID: String? = nil,
        port: UInt16? = nil, view: String = "true", interval: Double = MeshTests.interval, extra: String = "",
        peerAddresses: [String] = []
    ) throws -> RelayProcess {
        let list = (peers.map(\.endpoint) + peerAddresses).map { "\"\($0)\"" }.joined(separator: ", ")
        let config = """
            mesh:
              key: "\(key)"
              peers: [\(list)]
            routing:
              interval: \(interval)
              to_clients: \(view)
            \(extra)
            """
        return try startRelay(config: config, dataDirectory: dataDirectory, nodeID: nodeID, port: port)
    }

    /// What each test client has learned from its ROUTING frames: node id to ttl.
    private var routeViews: [ObjectIdentifier: [String: Int]] = [:]

    /// Reads frames on `node` until its ROUTING view lists `id` at `ttl` (a withdrawal: 32), or
    /// fails. Frames of other verbs read meanwhile are dropped.
    @discardableResult
    func waitForRoute(
        _ node: Node, to id: String, ttl: Int, timeout: Double = 10, file: StaticString = #filePath, line: UInt = #line
    ) -> Bool {
        let key = ObjectIdentifier(node.client)
        if routeViews[key]?[id] == ttl { return true }
        let frame = node.client.receive(timeout: timeout) { frame in
            guard frame.verb == "ROUTING" else { return false }
            for entry in frame.routingEntries { self.routeViews[key, default: [:]][entry.id] = entry.ttl }
            return self.routeViews[key]?[id] == ttl
        }
        XCTAssertNotNil(
            frame, "\(node.label): no ROUTING listing \(id) at ttl \(ttl); it has \(routeViews[key]?[id].map(String.init) ?? "nothing")",
            file: file, line: line)
        return frame != nil
    }

    // MARK: Peering

    func testAPeerNamedByItsHostNameIsResolvedAndDialed() throws {
        // Literal addresses skip the resolver; a name must still go through it.
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peerAddresses: ["localhost:\(r1.port)"])
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r2, name: "bob")
        waitForRoute(bob, to: alice.id, ttl: 2)
    }

    func testTwoRelaysPeerAndTheirClientsSeeEachOther() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peers: [r1])
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r2, name: "bob")
        waitForRoute(alice, to: bob.id, ttl: 2)
        waitForRoute(bob, to: alice.id, ttl: 2)
        // The peer relays are nodes too, one hop away.
        let carol = try bind(r1, name: "carol")
        _ = carol
        XCTAssertTrue(r1.log.contains("peer relay up"), r1.logTail())
        XCTAssertTrue(r2.log.contains("peer relay up"), r2.logTail())
    }

    func testWrongKeyIsRefusedCountedAndCarriesNoRoutes() throws {
        let statsPort = try Sockets.freePort()
        let r1 = try startMeshRelay(extra: "stats:\n  listen: \"127.0.0.1:\(statsPort)\"")
        let r2 = try startMeshRelay(peers: [r1], key: "another-mesh-key-of-this-test")
        XCTAssertTrue(
            Deadline.poll(timeout: expectWithin) { r1.log.contains("peering proof failed") },
            "no proof failure logged:\n\(r1.logTail())\n----\n\(r2.logTail())")
        let stats = try HTTPProbe.request(port: statsPort, path: "/stats").json
        let failures = (stats?["drops"] as? [String: Any])?["mesh_auth_failed"] as? Int
        XCTAssertGreaterThanOrEqual(failures ?? 0, 1, "mesh_auth_failed not counted: \(String(describing: stats))")
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r2, name: "bob")
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id))
        let nack = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        XCTAssertEqual(nack?.verb, "NACK", "bob is reachable without a proven peer: \(String(describing: nack))")
        XCTAssertEqual(nack?.data["stored"] as? Bool, true)
        XCTAssertNil(bob.client.receive(verb: "MESSAGE", timeout: quietPeriod))
    }

    func testFakePeerWithoutProofCannotHijackRoutes() throws {
        let r1 = try startMeshRelay()
        let alice = try bind(r1, name: "alice")
        let victim = Ids.make()
        // A "relay" that gives no proof binds as a client; its ROUTING is ignored.
        let (fake, hello) = try connectAndReadHello(r1, label: "fake")
        XCTAssertNotNil((hello.data["attributes"] as? [String: Any])?["mesh_nonce"], "the relay offers a nonce: \(hello)")
        let fakeID = Ids.make()
        fake.send(json: Frames.hello(id: fakeID, name: "evil", nodeType: "server"))
        XCTAssertNotNil(fake.receive(verb: "ROUTING", timeout: expectWithin), "the fake was not bound as a client")
        fake.send(json: Frames.head(
            "ROUTING", ttl: 1, flood: false, sender: "evil@\(fakeID)",
            data: ["node_id": fakeID, "nodes": [["node_id": victim, "ttl": 1, "seq": 1000]]]))
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [victim], id: id))
        let nack = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        XCTAssertEqual(nack?.data["stored"] as? Bool, true, "the message must be stored, not sent to the fake: \(String(describing: nack))")
        XCTAssertNil(fake.receive(verb: "MESSAGE", timeout: quietPeriod), "the fake got a message for a node it claimed")

        // A wrong proof closes the connection.
        let (liar, _) = try connectAndReadHello(r1, label: "liar")
        var wrong = Frames.hello(id: Ids.make(), name: "liar", nodeType: "server")
        var data = wrong["msg_data"] as! [String: Any]
        data["attributes"] = ["node_type": "server", "mesh_nonce": String(repeating: "ab", count: 16), "mesh_proof": String(repeating: "0", count: 64)]
        wrong["msg_data"] = data
        liar.send(json: wrong)
        XCTAssertTrue(liar.expectClosed(timeout: expectWithin), "a wrong proof must close the connection")
        XCTAssertTrue(r1.log.contains("peering proof failed"), r1.logTail())
    }

    func testChannelsViewAcrossRelaysListsOnlyWhoSharesAChannel() throws {
        let r1 = try startMeshRelay(view: "channels")
        let r2 = try startMeshRelay(peers: [r1], view: "channels")
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r2, name: "bob")
        let xavier = try bind(r2, name: "xavier")
        let channel = Ids.make()
        // Wait until the relays are peered (a flood sent before would not cross).
        XCTAssertTrue(Deadline.poll(timeout: expectWithin) { r1.log.contains("peer relay up") && r2.log.contains("peer relay up") })
        alice.client.send(json: Frames.membership("JOIN", from: alice, channelID: channel))
        bob.client.send(json: Frames.membership("JOIN", from: bob, channelID: channel))
        waitForRoute(alice, to: bob.id, ttl: 2)
        waitForRoute(bob, to: alice.id, ttl: 2)
        let xavierRoutes = xavier.client.drain(timeout: 0.5).filter { $0.verb == "ROUTING" }.flatMap(\.routingEntries)
        XCTAssertFalse(xavierRoutes.contains { $0.id == alice.id || $0.id == bob.id }, "xavier shares no channel: \(xavierRoutes)")
        XCTAssertFalse(xavierRoutes.contains { $0.id == xavier.id }, "a client is never listed to itself")
    }

    // MARK: Forwarding

    func testMessageAcrossThreeRelaysIsAckedOnlyAfterTheFarEndAcks() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peers: [r1])
        let r3 = try startMeshRelay(peers: [r2])
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r3, name: "bob")
        waitForRoute(alice, to: bob.id, ttl: 3)
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id, text: "across"))
        let delivered = bob.client.receive(verb: "MESSAGE", timeout: expectWithin)
        assertRelayHead(delivered, verb: "MESSAGE", ttl: 29, flood: false, sender: alice.address)
        XCTAssertEqual(delivered?.dataMessageID?.lowercased(), id)
        XCTAssertNil(alice.client.receive(timeout: quietPeriod) { self.isAnswer($0, to: id) }, "ACK before the far end ACKed")
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
        let ack = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        XCTAssertEqual(ack?.verb, "ACK")
        XCTAssertEqual((ack?.data["node_id"] as? String)?.lowercased(), r1.nodeID, "the ACK is hop by hop, from alice's relay")
    }

    func testNackOfAFarRecipientReachesTheOriginInItsName() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peers: [r1])
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r2, name: "bob")
        waitForRoute(alice, to: bob.id, ttl: 2)
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id))
        XCTAssertNotNil(bob.client.receive(verb: "MESSAGE", timeout: expectWithin))
        bob.client.send(json: Frames.head(
            "NACK", ttl: 32, flood: false, sender: bob.address, data: ["node_id": bob.id, "msg_id": id, "reason": "not_a_member"]))
        let nack = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        XCTAssertEqual(nack?.verb, "NACK")
        XCTAssertEqual((nack?.data["node_id"] as? String)?.lowercased(), bob.id, "the origin must learn who refused: \(String(describing: nack))")
        XCTAssertEqual(nack?["sender_id"] as? String, bob.address)
        XCTAssertEqual(nack?.data["reason"] as? String, "not_a_member")
    }

    func testMessageForRecipientsOnTwoRelaysIsNarrowedPerNextHop() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peers: [r1])
        let alice = try bind(r1, name: "alice")
        let carol = try bind(r1, name: "carol")
        let bob = try bind(r2, name: "bob")
        let dave = try bind(r2, name: "dave")
        waitForRoute(alice, to: dave.id, ttl: 2)
        waitForRoute(alice, to: bob.id, ttl: 2)
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id, carol.id, dave.id], id: id))
        for node in [bob, dave] {
            let message = node.client.receive(verb: "MESSAGE", timeout: expectWithin)
            // r1 sends r2 one copy for both; r2 narrows it again for each of its clients.
            XCTAssertEqual(message?.recipientIDs, [node.id], "\(node.label): narrowed per next hop")
            node.client.send(json: Frames.ack(from: node, acknowledging: id))
        }
        XCTAssertEqual(carol.client.receive(verb: "MESSAGE", timeout: expectWithin)?.recipientIDs, [carol.id])
        XCTAssertNil(alice.client.receive(timeout: quietPeriod) { self.isAnswer($0, to: id) }, "ACK before carol ACKed")
        carol.client.send(json: Frames.ack(from: carol, acknowledging: id))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }?.verb, "ACK")
    }

    func testFloodInATriangleReachesEveryClientOnce() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peers: [r1])
        let r3 = try startMeshRelay(peers: [r1, r2])
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r2, name: "bob")
        let carol = try bind(r3, name: "carol")
        waitForRoute(alice, to: carol.id, ttl: 2)
        waitForRoute(alice, to: bob.id, ttl: 2)
        waitForRoute(bob, to: carol.id, ttl: 2)
        let floodID = Ids.make()
        alice.client.send(json: Frames.membership("JOIN", from: alice, id: floodID))
        for node in [bob, carol] {
            let joins = node.client.drain(timeout: 1).filter { $0.verb == "JOIN" }
            XCTAssertEqual(joins.count, 1, "\(node.label) got \(joins.count) copies of the JOIN")
            XCTAssertEqual(joins.first?.dataMessageID?.lowercased(), floodID)
        }
        XCTAssertTrue(alice.client.drain(timeout: quietPeriod).filter { $0.verb == "JOIN" }.isEmpty, "the JOIN came back to its sender")
    }

    // MARK: Withdrawals and restarts

    func testRoutesWithdrawnWhenAClientLeavesAndWhenItsRelayIsKilled() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peers: [r1])
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r2, name: "bob")
        let carol = try bind(r2, name: "carol")
        waitForRoute(alice, to: bob.id, ttl: 2)
        waitForRoute(alice, to: carol.id, ttl: 2)
        bob.client.close()
        waitForRoute(alice, to: bob.id, ttl: 32, timeout: 3)

        kill(r2.child.process.processIdentifier, SIGKILL)
        waitForRoute(alice, to: carol.id, ttl: 32, timeout: 3)
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [carol.id], id: id))
        let nack = alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        XCTAssertEqual(nack?.data["stored"] as? Bool, true, "no route: stored at alice's relay: \(String(describing: nack))")
    }

    func testRelayRestartedOnItsPortIsPeeredAgainAndStoredMessagesFlow() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peers: [r1])
        let alice = try bind(r1, name: "alice")
        let bobID = Ids.make()
        kill(r1.child.process.processIdentifier, SIGKILL)
        XCTAssertNotNil(r1.child.waitForExit(timeout: expectWithin))

        // r2 keeps redialing; a message for bob waits in r2's store meanwhile.
        let carol = try bind(r2, name: "carol")
        let id = Ids.make()
        carol.client.send(json: Frames.message(from: carol, to: [bobID], id: id, text: "for later"))
        XCTAssertEqual(carol.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }?.data["stored"] as? Bool, true)
        _ = alice

        let restarted = try startMeshRelay(dataDirectory: r1.dataDirectory, nodeID: r1.nodeID, port: r1.port)
        let bob = try bind(restarted, name: "bob", id: bobID)
        waitForRoute(bob, to: carol.id, ttl: 2, timeout: 15)
        let message = bob.client.receive(verb: "MESSAGE", timeout: expectWithin)
        XCTAssertEqual(message?.dataMessageID?.lowercased(), id, "the stored message did not follow the new route")
        bob.client.send(json: Frames.ack(from: bob, acknowledging: id))
    }

    func testStoredMessageIsPickedUpWhenTheRecipientAppearsOnAnotherRelay() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peers: [r1])
        let alice = try bind(r1, name: "alice")
        let bobID = Ids.make()
        let ids = (0..<3).map { _ in Ids.make() }
        for id in ids {
            alice.client.send(json: Frames.message(from: alice, to: [bobID], id: id))
            XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }?.data["stored"] as? Bool, true)
        }
        let bob = try bind(r2, name: "bob", id: bobID)
        var received: [String] = []
        for _ in ids {
            guard let message = bob.client.receive(verb: "MESSAGE", timeout: expectWithin) else { break }
            received.append(message.dataMessageID?.lowercased() ?? "?")
            bob.client.send(json: Frames.ack(from: bob, acknowledging: message.dataMessageID ?? ""))
        }
        XCTAssertEqual(received, ids, "stored messages must arrive once each, in arrival order")
        XCTAssertTrue(bob.client.drain(timeout: quietPeriod).filter { $0.verb == "MESSAGE" }.isEmpty, "a stored message came twice")
    }

    // MARK: Operations

    func testStatsMetricsAndRoutesShowThePeersAndTheTable() throws {
        let statsPort = try Sockets.freePort()
        let r1 = try startMeshRelay(extra: "stats:\n  listen: \"127.0.0.1:\(statsPort)\"")
        let r2 = try startMeshRelay(peers: [r1])
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r2, name: "bob")
        waitForRoute(alice, to: bob.id, ttl: 2)

        let stats = try XCTUnwrap(try HTTPProbe.request(port: statsPort, path: "/stats").json)
        XCTAssertEqual((stats["connections"] as? [String: Any])?["peers"] as? Int, 1, "\(stats)")
        XCTAssertEqual((stats["connections"] as? [String: Any])?["clients"] as? Int, 1, "the peer is not a client: \(stats)")
        let mesh = try XCTUnwrap(stats["mesh"] as? [String: Any], "\(stats)")
        let peers = try XCTUnwrap(mesh["peers"] as? [[String: Any]])
        XCTAssertEqual(peers.count, 1)
        XCTAssertEqual((peers.first?["node_id"] as? String)?.lowercased(), r2.nodeID)
        XCTAssertEqual(peers.first?["state"] as? String, "up")
        XCTAssertNotNil(peers.first?["since"] as? String)
        XCTAssertNotNil(peers.first?["last_routing"] as? String)
        XCTAssertGreaterThanOrEqual(peers.first?["routes_learned"] as? Int ?? 0, 2, "r2 and bob at least: \(peers)")
        XCTAssertGreaterThan(((peers.first?["routing_frames"] as? [String: Any])?["in"] as? Int) ?? 0, 0)
        XCTAssertGreaterThanOrEqual(mesh["routes"] as? Int ?? 0, 3, "alice, r2 and bob: \(mesh)")

        let metrics = try PrometheusText(parsing: try HTTPProbe.request(port: statsPort, path: "/metrics").text)
        XCTAssertEqual(metrics.value("ptpchat_mesh_peers"), 1)
        XCTAssertGreaterThanOrEqual(metrics.value("ptpchat_routes") ?? 0, 3)
        XCTAssertGreaterThan(metrics.value("ptpchat_routing_frames_total", ["direction": "in"]) ?? 0, 0)
        XCTAssertGreaterThan(metrics.value("ptpchat_routing_frames_total", ["direction": "out"]) ?? 0, 0)
        for sample in metrics.samples {
            XCTAssertFalse(sample.labels.values.contains { $0.lowercased().contains(bob.id) }, "a node id as a label: \(sample)")
        }

        let routes = try XCTUnwrap(try HTTPProbe.request(port: statsPort, path: "/routes").json)
        let rows = try XCTUnwrap(routes["routes"] as? [[String: Any]])
        let bobRow = rows.first { ($0["node"] as? String)?.lowercased().hasSuffix(bob.id) == true }
        XCTAssertEqual(bobRow?["ttl"] as? Int, 2, "\(rows)")
        XCTAssertEqual((bobRow?["via"] as? String)?.lowercased(), r2.nodeID)
        let aliceRow = rows.first { ($0["node"] as? String)?.lowercased().hasSuffix(alice.id) == true }
        XCTAssertEqual(aliceRow?["via"] as? String, "local")
    }

    /// Aggregation (PROFILE.md section 9): a thousand clients connecting at once cost a peer a
    /// handful of ROUTING frames, not a thousand.
    func testAThousandClientsConnectingCostAPeerAHandfulOfRoutingFrames() throws {
        let statsPort = try Sockets.freePort()
        // The default interval, as an operator runs it.
        let r1 = try startMeshRelay(interval: Self.defaultInterval, extra: Self.manyConnectionsFromOneAddress)
        _ = try startMeshRelay(peers: [r1], interval: Self.defaultInterval, extra: "stats:\n  listen: \"127.0.0.1:\(statsPort)\"")
        func framesIn() throws -> Int {
            let stats = try HTTPProbe.request(port: statsPort, path: "/stats").json
            let peers = (stats?["mesh"] as? [String: Any])?["peers"] as? [[String: Any]]
            return ((peers?.first?["routing_frames"] as? [String: Any])?["in"] as? Int) ?? -1
        }
        func routes() throws -> Int {
            ((try HTTPProbe.request(port: statsPort, path: "/stats").json?["mesh"] as? [String: Any])?["routes"] as? Int) ?? 0
        }
        XCTAssertTrue(Deadline.poll(timeout: expectWithin) { ((try? routes()) ?? 0) >= 1 }, "the relays did not peer")
        let before = try framesIn()
        let baseRoutes = try routes()
        let started = Date()
        var clients: [TestClient] = []
        for index in 0..<1000 {
            let client = try TestClient(port: r1.port, label: "c\(index)")
            track(client)
            client.send(json: Frames.hello(id: Ids.make(), name: "c\(index)"))
            clients.append(client)
        }
        let connectTime = Date().timeIntervalSince(started)
        XCTAssertTrue(
            Deadline.poll(timeout: 15, interval: 0.05) { ((try? routes()) ?? 0) >= baseRoutes + 1000 },
            "r2 did not learn the thousand routes: \((try? routes()) ?? -1)")
        let learnedTime = Date().timeIntervalSince(started)
        let frames = try framesIn() - before
        print(
            "1000 clients connected to r1 in \(String(format: "%.2f", connectTime)) s, r2 knew them all after "
                + "\(String(format: "%.2f", learnedTime)) s, at the cost of \(frames) ROUTING frames")
        // One batch per interval while the clients arrive (an 8 KiB frame holds about a hundred
        // entries): a few dozen frames, not a thousand. A loaded machine spreads the binds over
        // more intervals, so the bound follows the time until the peer knew them all.
        let intervals = Int((learnedTime / Self.defaultInterval).rounded(.up))
        XCTAssertLessThanOrEqual(frames, 30 + 3 * intervals, "a thousand binds must be batched, not sent one by one")
    }

    func testReloadAddsAndRemovesPeersWithoutDroppingClients() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay()
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r2, name: "bob")
        let config = r2.directory.appendingPathComponent("relay.yaml")
        let original = try String(contentsOf: config, encoding: .utf8)

        try original.replacingOccurrences(of: "peers: []", with: "peers: [\"\(r1.endpoint)\"]").write(to: config, atomically: true, encoding: .utf8)
        r2.child.signal(SIGHUP)
        waitForRoute(alice, to: bob.id, ttl: 2)
        waitForRoute(bob, to: alice.id, ttl: 2)

        try original.write(to: config, atomically: true, encoding: .utf8)
        r2.child.signal(SIGHUP)
        waitForRoute(alice, to: bob.id, ttl: 32)
        XCTAssertFalse(alice.client.isClosed || bob.client.isClosed, "a reload closed a client")
        // Both still talk to their relay.
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [bob.id], id: id))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }?.data["stored"] as? Bool, true)
    }

    // MARK: CONNECT, collisions, the existing client

    func testConnectAcrossRelaysCarriesAddressesObservedByEachNodesRelay() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peers: [r1])
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r2, name: "bob")
        waitForRoute(alice, to: bob.id, ttl: 2)
        func connect(_ src: Any, _ dst: Any, sender: Node) -> [String: Any] {
            Frames.head(
                "CONNECT", ttl: 32, flood: false, sender: sender.address,
                data: ["src_node_id": alice.id, "dst_node_id": bob.id, "src": src, "dst": dst])
        }
        alice.client.send(json: connect("40000", NSNull(), sender: alice))
        let step1 = bob.client.receive(verb: "CONNECT", timeout: expectWithin)
        XCTAssertEqual(step1?.data["src"] as? String, "127.0.0.1:40000", "\(String(describing: step1))")
        bob.client.send(json: connect("127.0.0.1:40000", "41000", sender: bob))
        let step3 = alice.client.receive(verb: "CONNECT", timeout: expectWithin)
        XCTAssertEqual(step3?.data["dst"] as? String, "127.0.0.1:41000", "\(String(describing: step3))")
        XCTAssertEqual(step3?.data["src"] as? String, "127.0.0.1:40000")
    }

    func testHelloForAnIdConnectedToAnotherRelayIsRefused() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peers: [r1])
        let bob = try bind(r2, name: "bob")
        let alice = try bind(r1, name: "alice")
        waitForRoute(alice, to: bob.id, ttl: 2)
        let (twin, _) = try connectAndReadHello(r1, label: "twin")
        twin.send(json: Frames.hello(id: bob.id, name: "twin"))
        let nack = twin.receive(verb: "NACK", timeout: expectWithin)
        XCTAssertEqual(nack?.data["reason"] as? String, "id_in_use", "\(String(describing: nack))")
        XCTAssertTrue(twin.expectClosed(timeout: expectWithin))
    }

    func testExistingClientsOnTwoRelaysMeetAndChat() throws {
        let r1 = try startMeshRelay()
        let r2 = try startMeshRelay(peers: [r1])
        let first = try bindLegacy(r1)
        let second = try bindLegacy(r2)
        // Each is introduced to the other (HELLO under its id, then JOIN for the built-in channel).
        for (node, other) in [(first, second), (second, first)] {
            let join = node.client.receive(timeout: 10) { $0.verb == "JOIN" && ($0["sender_id"] as? String)?.hasSuffix(other.id) == true }
            XCTAssertNotNil(join, "\(node.label) was not introduced to \(other.id)")
        }
        let id = Ids.make()
        first.client.send(text: LegacyFrames.chat(from: first.id, to: [second.id, first.id], messageID: id))
        let chat = second.client.receive(timeout: expectWithin) { $0.dataMessageID?.lowercased() == id }
        XCTAssertNotNil(chat, "the chat did not cross the mesh")
        XCTAssertEqual(chat?["sender_id"] as? String, "LocalNode@\(first.id)")
    }
}

extension Dictionary where Key == String, Value == Any {
    /// A ROUTING frame's entries.
    var routingEntries: [(id: String, ttl: Int)] {
        ((data["nodes"] as? [[String: Any]]) ?? []).compactMap { entry in
            guard let node = entry["node_id"] as? String, let ttl = entry["ttl"] as? Int else { return nil }
            let id = node.split(separator: "@").last.map(String.init)?.lowercased() ?? node
            return (id, ttl)
        }
    }
}
