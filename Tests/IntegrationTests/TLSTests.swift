import Foundation
import RelayTLS
import XCTest

/// PROFILE.md sections 1 and 3 with real TLS: certificates made by `openssl` for each test, the
/// real relay binary, TLS clients on NIOSSL (RelayTLS's client side) bridged to `TestClient`.
final class TLSTests: RelayTestCase {
    private var pki: TestCertificates!
    private var relayPair: TestCertificates.Pair!

    override func setUpWithError() throws {
        try super.setUpWithError()
        pki = try TestCertificates(in: try directory.appendingPathComponent("pki"))
        relayPair = try pki.relay()
    }

    /// A relay with a plaintext listener (`relay.port`) and a TLS one (the returned port).
    private func startTLSRelay(
        clientCA: Bool = false, requireClientCert: Bool = false, extra: String = "", stats: UInt16? = nil
    ) throws -> (RelayProcess, UInt16) {
        let tlsPort = try Sockets.freePort()
        var config = """
            tls:
              listen: ["127.0.0.1:\(tlsPort)"]
              cert: "\(relayPair.cert)"
              key: "\(relayPair.key)"
              require_client_cert: \(requireClientCert)

            """
        if clientCA { config = config.replacingOccurrences(of: "  require_client_cert", with: "  client_ca: \"\(pki.ca)\"\n  require_client_cert") }
        if let stats { config += "stats:\n  listen: \"127.0.0.1:\(stats)\"\n" }
        config += extra
        let relay = try startRelay(config: config)
        XCTAssertTrue(
            Deadline.poll(timeout: expectWithin) { relay.log.contains("tls=true") }, "the TLS listener is not up:\n\(relay.logTail())")
        return (relay, tlsPort)
    }

    /// A TLS connection to `port` trusting this test's CA (or `files`), tracked for tearDown.
    private func connectTLS(
        _ port: UInt16, label: String, files: ClientTLSFiles? = nil
    ) throws -> (TestClient, TLSTestConnection) {
        let (client, connection) = try TLSTestConnection.connect(port: port, files: files ?? ClientTLSFiles(trustRoots: pki.ca), label: label)
        track(client)
        return (client, connection)
    }

    /// Reads the relay's HELLO, says HELLO as `id`, waits for ROUTING.
    private func bindOver(_ client: TestClient, id: String = Ids.make(), name: String, file: StaticString = #filePath, line: UInt = #line) throws -> Node {
        let hello = try XCTUnwrap(client.receive(timeout: expectWithin), "\(client.label): no HELLO over TLS (\(client.closeReason ?? "open"))", file: file, line: line)
        XCTAssertEqual(hello.verb, "HELLO", file: file, line: line)
        client.send(json: Frames.hello(id: id, name: name))
        _ = try XCTUnwrap(
            client.receive(verb: "ROUTING", timeout: expectWithin), "\(client.label): no ROUTING (\(client.closeReason ?? "open"))", file: file, line: line)
        return Node(client: client, id: id, name: name)
    }

    /// `from` sends a MESSAGE to `to`, which receives it and ACKs; `from` gets the ACK.
    private func exchange(_ from: Node, _ to: Node, file: StaticString = #filePath, line: UInt = #line) {
        let id = Ids.make()
        from.client.send(json: Frames.message(from: from, to: [to.id], id: id))
        let delivered = to.client.receive(timeout: expectWithin) { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id }
        XCTAssertNotNil(delivered, "\(to.label): no MESSAGE from \(from.label) (\(to.client.closeReason ?? "open"))", file: file, line: line)
        to.client.send(json: Frames.ack(from: to, acknowledging: id))
        let answer = from.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        XCTAssertEqual(answer?.verb, "ACK", "\(from.label): no ACK (\(from.client.closeReason ?? "open"))", file: file, line: line)
    }

    private func drops(_ statsPort: UInt16, _ reason: String) throws -> Int {
        let stats = try HTTPProbe.request(port: statsPort, path: "/stats").json
        return ((stats?["drops"] as? [String: Any])?[reason] as? Int) ?? -1
    }

    /// The counter reaches `value` within the wait (counters are read from the shards: poll).
    private func waitForDrops(_ statsPort: UInt16, _ reason: String, atLeast value: Int, file: StaticString = #filePath, line: UInt = #line) {
        var last = -1
        let reached = Deadline.poll(timeout: expectWithin) {
            last = (try? self.drops(statsPort, reason)) ?? -1
            return last >= value
        }
        XCTAssertTrue(reached, "drops.\(reason) is \(last), expected at least \(value)", file: file, line: line)
    }

    // MARK: Handshakes

    func testTLS12AndTLS13CarryAMessage() throws {
        let (_, port) = try startTLSRelay()
        let (old, oldTLS) = try connectTLS(port, label: "tls12", files: ClientTLSFiles(trustRoots: pki.ca, maximumVersion: .tls12))
        let (new, newTLS) = try connectTLS(port, label: "tls13", files: ClientTLSFiles(trustRoots: pki.ca, minimumVersion: .tls13))
        let alice = try bindOver(old, name: "alice")
        let bob = try bindOver(new, name: "bob")
        XCTAssertEqual(oldTLS.outcome, .completed(.tls12))
        XCTAssertEqual(newTLS.outcome, .completed(.tls13))
        exchange(alice, bob)
        exchange(bob, alice)
    }

    /// A relay with two event loops put on one CPU (`taskset -a -p`, as an operator or a cpuset
    /// would): new connections, TLS and plaintext, are moved at accept to the first loop and work
    /// there (HELLO, TLS handshake, MESSAGE and ACK), each move counted in /stats.
    func testConnectionsMovedToTheFirstLoopOfARelayOnOneCPUWork() throws {
        let statsPort = try Sockets.freePort()
        let (relay, port) = try startTLSRelay(extra: "relay:\n  threads: 2\n", stats: statsPort)
        let cpu = try TestCertificates.shell("grep Cpus_allowed_list /proc/self/status | sed 's/.*:[[:space:]]*//; s/[-,].*//'", in: directory)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try TestCertificates.shell("taskset -a -p -c \(cpu) \(relay.child.process.processIdentifier) > /dev/null", in: directory)
        let openedBefore = relay.log.components(separatedBy: "connection opened").count - 1

        var nodes: [Node] = []
        for index in 0..<6 {
            let (client, _) = try connectTLS(port, label: "tls\(index)")
            nodes.append(try bindOver(client, name: "tls\(index)"))
        }
        for index in 0..<2 { nodes.append(try bind(relay, name: "plain\(index)")) }
        for (from, to) in zip(nodes, nodes.dropFirst() + [nodes[0]]) { exchange(from, to) }

        let opened = relay.log.split(separator: "\n").filter { $0.contains("connection opened") }.dropFirst(openedBefore)
        XCTAssertEqual(opened.count, nodes.count, "connection opened lines:\n\(opened.joined(separator: "\n"))")
        for line in opened { XCTAssertTrue(line.contains("loop=0"), "a connection served on another loop: \(line)") }
        XCTAssertTrue(relay.log.contains("fewer usable CPUs than event loops"), "no line about the placement:\n\(relay.logTail())")
        let stats = try XCTUnwrap(try HTTPProbe.request(port: statsPort, path: "/stats").json)
        let moved = try XCTUnwrap((stats["connections"] as? [String: Any])?["moved_at_accept"] as? Int, "\(stats)")
        XCTAssertLessThanOrEqual(moved, nodes.count)
        let movedLines = relay.log.components(separatedBy: "connection moved").count - 1
        XCTAssertEqual(movedLines, moved, "one debug line per move")
        let loops = try XCTUnwrap(stats["event_loops"] as? [[String: Int]], "\(stats)")
        XCTAssertEqual(loops.map { $0["clients"] }, [nodes.count, 0], "clients per event loop: \(loops)")
        XCTAssertGreaterThan(loops[0]["frames_in"] ?? 0, 0, "\(loops)")
        XCTAssertEqual(loops[1]["frames_in"], 0, "\(loops)")
    }

    func testPlaintextAndTLSListenersAtOnce() throws {
        let (relay, port) = try startTLSRelay()
        let plain = try bind(relay, name: "plain")
        let (client, _) = try connectTLS(port, label: "secure")
        let secure = try bindOver(client, name: "secure")
        exchange(plain, secure)
        exchange(secure, plain)
    }

    func testWrongCAFailsOnTheClientSide() throws {
        let (_, port) = try startTLSRelay()
        let other = try TestCertificates(in: try directory.appendingPathComponent("other"), name: "other")
        let (client, connection) = try connectTLS(port, label: "distrustful", files: ClientTLSFiles(trustRoots: other.ca))
        guard case .failed? = connection.waitForOutcome(timeout: expectWithin) else {
            return XCTFail("a relay certificate of another CA was accepted: \(String(describing: connection.outcome))")
        }
        XCTAssertTrue(client.expectClosed(timeout: expectWithin))
    }

    /// `timeouts.handshake` runs from the TCP accept: a client that never finishes TLS is closed
    /// and counted `handshake_timeout` (not `tls_handshake_failed`).
    func testHandshakeTimeoutCoversTLS() throws {
        let statsPort = try Sockets.freePort()
        let (_, port) = try startTLSRelay(extra: "timeouts:\n  handshake: 0.5\n", stats: statsPort)
        let silent = try TestClient(port: port, label: "silent")
        track(silent)
        let started = Date()
        XCTAssertTrue(silent.expectClosed(timeout: expectWithin), "a connection that never started TLS stayed open")
        XCTAssertLessThan(Date().timeIntervalSince(started), 4)
        // A client that sends half a ClientHello and stops.
        let stalled = try TestClient(port: port, label: "stalled")
        track(stalled)
        stalled.sendRaw([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])
        XCTAssertTrue(stalled.expectClosed(timeout: expectWithin), "a connection stalled in the TLS handshake stayed open")
        waitForDrops(statsPort, "handshake_timeout", atLeast: 2)
        XCTAssertEqual(try drops(statsPort, "tls_handshake_failed"), 0, "the relay's own close is not a failed handshake")
    }

    // MARK: Client certificates and proven identity

    func testRequireClientCertRefusesAClientWithout() throws {
        let statsPort = try Sockets.freePort()
        let (_, port) = try startTLSRelay(clientCA: true, requireClientCert: true, stats: statsPort)
        let (anonymous, _) = try connectTLS(port, label: "no-cert")
        XCTAssertTrue(anonymous.expectClosed(timeout: expectWithin), "a client without a certificate got in")
        waitForDrops(statsPort, "tls_handshake_failed", atLeast: 1)
        let id = Ids.make()
        let pair = try pki.node(id)
        let (client, _) = try connectTLS(port, label: "with-cert", files: ClientTLSFiles(trustRoots: pki.ca, certificateChain: pair.cert, privateKey: pair.key))
        _ = try bindOver(client, id: id, name: "alice")
    }

    func testUntrustedClientCertificateRefused() throws {
        let statsPort = try Sockets.freePort()
        let (_, port) = try startTLSRelay(clientCA: true, stats: statsPort)
        let other = try TestCertificates(in: try directory.appendingPathComponent("other"), name: "other")
        let pair = try other.node(Ids.make())
        let (client, _) = try connectTLS(port, label: "untrusted", files: ClientTLSFiles(trustRoots: pki.ca, certificateChain: pair.cert, privateKey: pair.key))
        XCTAssertNil(client.receive(timeout: 1), "a client with an untrusted certificate was greeted")
        XCTAssertTrue(client.expectClosed(timeout: expectWithin))
        waitForDrops(statsPort, "tls_handshake_failed", atLeast: 1)
        // Optional: a client without a certificate still gets in.
        let (anonymous, _) = try connectTLS(port, label: "anonymous")
        _ = try bindOver(anonymous, name: "anon")
    }

    func testClientCertificateProvesItsIDAndTakesOver() throws {
        let statsPort = try Sockets.freePort()
        let (relay, port) = try startTLSRelay(clientCA: true, stats: statsPort)
        let id = Ids.make()
        let pair = try pki.node(id)
        let files = ClientTLSFiles(trustRoots: pki.ca, certificateChain: pair.cert, privateKey: pair.key)
        let bob = try bind(relay, name: "bob")

        // An unproven connection holds the id first; the proven one takes it over at once.
        let squatter = try bind(relay, name: "squatter", id: id)
        let (client, _) = try connectTLS(port, label: "alice", files: files)
        let alice = try bindOver(client, id: id, name: "alice")
        XCTAssertTrue(squatter.client.expectClosed(timeout: expectWithin), "the unproven holder of the id was not closed")
        waitForDrops(statsPort, "taken_over", atLeast: 1)
        exchange(bob, alice)

        // An unproven connection cannot take it back.
        let (impostor, _) = try connectAndReadHello(relay, label: "impostor")
        let helloID = Ids.make()
        impostor.send(json: Frames.hello(id: id, name: "impostor", messageID: helloID))
        assertNack(impostor.receive(timeout: expectWithin), for: helloID, reason: "id_in_use", relay: relay)
        XCTAssertTrue(impostor.expectClosed(timeout: expectWithin))
        exchange(bob, alice)

        // The certificate proves one id only.
        let (other, _) = try connectTLS(port, label: "alice-as-carol", files: files)
        _ = try XCTUnwrap(other.receive(timeout: expectWithin), "no HELLO")
        let spoofID = Ids.make()
        other.send(json: Frames.hello(id: Ids.make(), name: "carol", messageID: spoofID))
        assertNack(other.receive(timeout: expectWithin), for: spoofID, reason: "spoofed_sender", relay: relay)
        XCTAssertTrue(other.expectClosed(timeout: expectWithin))
        exchange(bob, alice)
    }

    func testUnusableCertificateFilesStopTheStartNamingTheFile() throws {
        let node = try pki.node(Ids.make())
        let cases: [(cert: String, key: String, expected: String)] = [
            (try directory.appendingPathComponent("missing.pem").path, relayPair.key, "missing.pem: no such file"),
            (relayPair.cert, node.key, "not the key of \(relayPair.cert)"),
        ]
        for (index, (cert, key, expected)) in cases.enumerated() {
            let configFile = try directory.appendingPathComponent("bad-\(index).yaml")
            try "tls:\n  listen: [\"127.0.0.1:\(try Sockets.freePort())\"]\n  cert: \"\(cert)\"\n  key: \"\(key)\"\n"
                .write(to: configFile, atomically: true, encoding: .utf8)
            let child = try runRelayBinary(
                ["--config", configFile.path, "--listen", "127.0.0.1:\(try Sockets.freePort())", "--data-dir",
                 try directory.appendingPathComponent("data-\(index)").path, "--stats", "off"],
                name: "bad-\(index)")
            XCTAssertEqual(child.waitForExit(timeout: 15), 1, "the relay started with \(expected): \(child.stderr)")
            XCTAssertTrue(child.stderr.contains(expected), "the start-up error does not say \(expected): \(child.stderr)")
        }
    }

    // MARK: Reload

    func testReloadWithANewCertificateKeepsOpenConnections() throws {
        let (relay, port) = try startTLSRelay()
        let (first, _) = try connectTLS(port, label: "before")
        let before = try bindOver(first, name: "before")
        let plain = try bind(relay, name: "plain")

        // The new certificate is from another CA, so a client can tell which one it got.
        let next = try TestCertificates(in: try directory.appendingPathComponent("next"), name: "next")
        let renewed = try next.relay("renewed")
        try replace(relayPair.cert, with: renewed.cert)
        try replace(relayPair.key, with: renewed.key)
        let lines = relay.child.stderrLines.count
        relay.child.signal(SIGHUP)
        XCTAssertNotNil(relay.child.waitForStderrLine(containing: "TLS certificate loaded", after: lines, timeout: expectWithin), relay.logTail())

        let (fresh, _) = try connectTLS(port, label: "after", files: ClientTLSFiles(trustRoots: next.ca))
        let after = try bindOver(fresh, name: "after")
        let (stale, staleTLS) = try connectTLS(port, label: "old-ca")
        guard case .failed? = staleTLS.waitForOutcome(timeout: expectWithin) else {
            return XCTFail("a new connection still got the old certificate: \(String(describing: staleTLS.outcome))")
        }
        XCTAssertTrue(stale.expectClosed(timeout: expectWithin))
        XCTAssertFalse(before.client.isClosed, "the reload closed a connection")
        exchange(before, after)
        exchange(plain, before)
    }

    func testReloadWithABrokenCertificateKeepsTheOldOne() throws {
        let (relay, port) = try startTLSRelay()
        let (first, _) = try connectTLS(port, label: "before")
        let before = try bindOver(first, name: "before")
        try "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n".write(
            toFile: relayPair.cert, atomically: true, encoding: .utf8)
        let lines = relay.child.stderrLines.count
        relay.child.signal(SIGHUP)
        let refused = relay.child.waitForStderrLine(containing: "TLS certificate reload refused", after: lines, timeout: expectWithin)
        XCTAssertNotNil(refused, relay.logTail())
        XCTAssertTrue(refused?.contains("level=error") ?? false, "not logged as an error: \(refused ?? "")")
        XCTAssertTrue(relay.child.isRunning)
        let (fresh, _) = try connectTLS(port, label: "after")
        let after = try bindOver(fresh, name: "after")
        exchange(before, after)
    }

    private func replace(_ path: String, with source: String) throws {
        try Data(contentsOf: URL(fileURLWithPath: source)).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    // MARK: Mesh and the command-line client

    func testTwoRelaysPeerOverTLS() throws {
        let key = "integration-tls-mesh-key-0123456789"
        let (r1, port1) = try startTLSRelay(clientCA: true, requireClientCert: true, extra: "mesh:\n  key: \"\(key)\"\nrouting:\n  interval: 0.05\n  to_clients: true\n")
        let r2Pair = try pki.relay("relay2")
        let config = """
            tls:
              cert: "\(r2Pair.cert)"
              key: "\(r2Pair.key)"
              client_ca: "\(pki.ca)"
            mesh:
              key: "\(key)"
              peers: ["tls://127.0.0.1:\(port1)"]
            routing:
              interval: 0.05
              to_clients: true
            """
        let r2 = try startRelay(config: config)
        XCTAssertTrue(
            Deadline.poll(timeout: 10) { r1.log.contains("peer relay up") && r2.log.contains("peer relay up") },
            "no peering over TLS:\n\(r1.logTail())\n----\n\(r2.logTail())")
        let alice = try bind(r1, name: "alice")
        let bob = try bind(r2, name: "bob")
        // Bob's relay learns Alice's route through the TLS peering, then carries the message.
        let route = bob.client.receive(timeout: 10) { frame in
            frame.verb == "ROUTING" && frame.routingEntries.contains { $0.id.lowercased() == alice.id.lowercased() }
        }
        XCTAssertNotNil(route, "no route to Alice over the TLS peering:\n\(r2.logTail())")
        // And Alice's relay knows Bob's (each relay learns the other's clients on its own batch).
        let back = alice.client.receive(timeout: 10) { frame in
            frame.verb == "ROUTING" && frame.routingEntries.contains { $0.id.lowercased() == bob.id.lowercased() }
        }
        XCTAssertNotNil(back, "no route to Bob over the TLS peering:\n\(r1.logTail())")
        exchange(bob, alice)
        exchange(alice, bob)
    }

    func testTLSPeerOfAnotherCAIsNotPeered() throws {
        let key = "integration-tls-mesh-key-0123456789"
        let statsPort = try Sockets.freePort()
        let (r1, port1) = try startTLSRelay(extra: "mesh:\n  key: \"\(key)\"\n")
        // Relay 2 trusts another CA: relay 1's certificate does not verify on its side.
        let other = try TestCertificates(in: try directory.appendingPathComponent("other"), name: "other")
        let r2Pair = try other.relay("relay2")
        let r2 = try startRelay(
            config: """
                tls:
                  cert: "\(r2Pair.cert)"
                  key: "\(r2Pair.key)"
                  client_ca: "\(other.ca)"
                mesh:
                  key: "\(key)"
                  peers: ["tls://127.0.0.1:\(port1)"]
                stats:
                  listen: "127.0.0.1:\(statsPort)"
                """)
        waitForDrops(statsPort, "tls_handshake_failed", atLeast: 1)
        XCTAssertFalse(r1.log.contains("peer relay up") || r2.log.contains("peer relay up"), "peered with an untrusted certificate")
    }

    func testPtpchatSendsOverTLS() throws {
        let (relay, port) = try startTLSRelay()
        let alice = try bind(relay, name: "alice")
        let sender = try startPtpchat(
            ["send", "--relay", "127.0.0.1:\(port)", "--tls", "--ca", pki.ca, "--to", alice.id, "--timeout", "10", "over tls"], name: "send")
        let delivered = alice.client.receive(timeout: expectWithin) { $0.verb == "MESSAGE" }
        let messageID = try XCTUnwrap(delivered?.dataMessageID, "no MESSAGE from ptpchat over TLS: \(sender.stderr)")
        alice.client.send(json: Frames.ack(from: alice, acknowledging: messageID))
        XCTAssertEqual(sender.waitForExit(timeout: 15), 0, "ptpchat send over TLS failed: \(sender.stderr)")
        let encoded = delivered?.data["message"] as? String
        XCTAssertEqual(encoded.flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) }, "over tls")
    }

    func testPtpchatListensOverTLS() throws {
        let (relay, port) = try startTLSRelay()
        let listenerID = Ids.make()
        let listener = try startPtpchat(
            ["listen", "--relay", "127.0.0.1:\(port)", "--tls", "--ca", pki.ca, "--node-id", listenerID, "--json"], name: "listen")
        XCTAssertEqual(listener.waitForStderrLine(containing: "ready", timeout: 10), "ready \(listenerID)", listener.stderr)
        // Sent over plaintext, received over TLS: one relay, both listeners.
        let sender = try startPtpchat(["send", "--relay", relay.endpoint, "--to", listenerID, "--timeout", "10", "to a tls listener"], name: "send")
        XCTAssertEqual(sender.waitForExit(timeout: 15), 0, "ptpchat send failed: \(sender.stderr)")
        let line = try XCTUnwrap(listener.waitForStdoutLines(1, timeout: expectWithin).first, "listen over TLS printed nothing: \(listener.stderr)")
        let frame = try XCTUnwrap(JSON.object(Array(line.utf8)), line)
        let encoded = frame.data["message"] as? String
        XCTAssertEqual(encoded.flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) }, "to a tls listener")
    }

    func testPtpchatWithANodeCertificateProvesItsID() throws {
        let (relay, port) = try startTLSRelay(clientCA: true)
        let alice = try bind(relay, name: "alice")
        let id = Ids.make()
        let pair = try pki.node(id)
        let common = ["--relay", "127.0.0.1:\(port)", "--tls", "--ca", pki.ca, "--cert", pair.cert, "--key", pair.key, "--to", alice.id, "--timeout", "10"]
        let proven = try startPtpchat(["send", "--node-id", id] + common + ["proven"], name: "send-proven")
        let delivered = alice.client.receive(timeout: expectWithin) { $0.verb == "MESSAGE" }
        let messageID = try XCTUnwrap(delivered?.dataMessageID, "no MESSAGE from the proven ptpchat: \(proven.stderr)")
        alice.client.send(json: Frames.ack(from: alice, acknowledging: messageID))
        XCTAssertEqual(proven.waitForExit(timeout: 15), 0, proven.stderr)

        // The same certificate with another --node-id: the relay refuses the HELLO.
        let spoofed = try startPtpchat(["send", "--node-id", Ids.make()] + common + ["spoofed"], name: "send-spoofed")
        XCTAssertNotEqual(spoofed.waitForExit(timeout: 15), 0)
        XCTAssertTrue(spoofed.stderr.contains("spoofed_sender"), spoofed.stderr)
    }

    func testPtpchatRefusesARelayOfAnotherCA() throws {
        let (_, port) = try startTLSRelay()
        let other = try TestCertificates(in: try directory.appendingPathComponent("other"), name: "other")
        let sender = try startPtpchat(
            ["send", "--relay", "127.0.0.1:\(port)", "--tls", "--ca", other.ca, "--to", Ids.make(), "--timeout", "5", "no"], name: "send")
        let status = try XCTUnwrap(sender.waitForExit(timeout: 15), "ptpchat send did not end")
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(sender.stderr.contains("TLS handshake failed"), sender.stderr)
    }

    // MARK: The operator's CA (docs/security.md)

    /// Runs the commands of docs/security.md "Running a small CA for node certificates" as
    /// written, then uses what they made for a real handshake that proves the node id.
    func testSecurityDocCACommands() throws {
        let doc = try String(contentsOf: Self.repositoryRoot.appendingPathComponent("docs/security.md"), encoding: .utf8)
        let marker = "<!-- checked by Tests/IntegrationTests/TLSTests.swift (testSecurityDocCACommands) -->\n```sh\n"
        let start = try XCTUnwrap(doc.range(of: marker), "docs/security.md has no checked sh block").upperBound
        let end = try XCTUnwrap(doc.range(of: "\n```", range: start..<doc.endIndex)).lowerBound
        let script = String(doc[start..<end])
        let nodeID = try XCTUnwrap(
            script.split(separator: "\n").first { $0.hasPrefix("NODE_ID=") }.map { String($0.dropFirst("NODE_ID=".count)) },
            "the doc's commands set no NODE_ID")
        let folder = try directory.appendingPathComponent("doc-ca")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try TestCertificates.shell(script, in: folder)

        let file = { (name: String) in folder.appendingPathComponent(name).path }
        let tlsPort = try Sockets.freePort()
        let relay = try startRelay(
            config: """
                tls:
                  listen: ["127.0.0.1:\(tlsPort)"]
                  cert: "\(file("relay.pem"))"
                  key: "\(file("relay.key"))"
                  client_ca: "\(file("ca.pem"))"
                """)
        XCTAssertTrue(Deadline.poll(timeout: expectWithin) { relay.log.contains("tls=true") })
        let squatter = try bind(relay, name: "squatter", id: nodeID)
        let (client, _) = try connectTLS(
            tlsPort, label: "doc-node", files: ClientTLSFiles(trustRoots: file("ca.pem"), certificateChain: file("node.pem"), privateKey: file("node.key")))
        _ = try bindOver(client, id: nodeID, name: "node")
        XCTAssertTrue(squatter.client.expectClosed(timeout: expectWithin), "the doc's node certificate did not prove \(nodeID)")
    }

    static var repositoryRoot: URL {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }
}

/// Socket activation with a socket named `tls` (deploy/ptpchat-relay-tls.socket): the relay puts
/// TLS in front of it and serves the socket named `relay` in plaintext.
final class TLSSocketActivationTests: OpsTestCase {
    func testSocketNamedTLSGetsTLS() throws {
        let activator = try OperationsTests.socketActivate()
        let pki = try TestCertificates(in: try folder("pki"))
        let pair = try pki.relay()
        let relayPort = try Sockets.freePort()
        let tlsPort = try Sockets.freePort()
        let config = try folder("config").appendingPathComponent("relay.yaml")
        try "tls:\n  cert: \"\(pair.cert)\"\n  key: \"\(pair.key)\"\n".write(to: config, atomically: true, encoding: .utf8)
        let child = try launch(
            activator,
            [
                "-l", "127.0.0.1:\(relayPort)", "-l", "127.0.0.1:\(tlsPort)", "--fdname=relay:tls",
                try Binaries.path("ptpchat-relay").path, "--config", config.path, "--data-dir", try folder("data").path,
                "--stats", "off", "--log-level", "debug",
            ],
            name: "activated")

        // The first connection starts the relay; it waits in the backlog meanwhile.
        var secure: (TestClient, TLSTestConnection)?
        _ = Deadline.poll(timeout: 5) {
            secure = try? TLSTestConnection.connect(port: tlsPort, files: ClientTLSFiles(trustRoots: pki.ca), label: "secure")
            return secure != nil || !child.isRunning
        }
        let (client, connection) = try XCTUnwrap(secure, "systemd-socket-activate did not listen on \(tlsPort):\n\(child.outputTail())")
        defer { client.close() }
        let hello = client.receive(timeout: RelayProcess.startTimeout)
        XCTAssertEqual(hello?.verb, "HELLO", "no HELLO over TLS on the socket named tls: \(child.outputTail())")
        guard case .completed? = connection.outcome else {
            return XCTFail("no TLS handshake on the socket named tls: \(String(describing: connection.outcome))")
        }
        let plain = try connect(port: relayPort, label: "plain")
        XCTAssertEqual(plain.receive(timeout: expectWithin)?.verb, "HELLO", "the socket named relay is not plaintext")
        XCTAssertNotNil(child.waitForStderrLine(containing: ["listening on socket from systemd", "\(tlsPort)", "tls=true"], timeout: 1),
            "the log does not say the TLS socket came from systemd:\n\(child.outputTail(20))")
        child.signal(SIGTERM)
        XCTAssertEqual(child.waitForEnding(timeout: 5), "exit 0")
    }
}
