#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import XCTest

/// CONNECT (PROFILE.md section 8, issue 11) against the real relay binary over loopback: addresses
/// over a dual-stack listener, address discovery, the round-trip hints, the per-pair limit, the
/// counters, and that a CONNECT never makes the relay open a connection.
final class ConnectRendezvousTests: RelayTestCase {
    // MARK: Helpers

    /// A relay with a stats endpoint and `config` lines, also listening on `[::]:PORT` when
    /// `dualStack` (the returned port; else the relay's own 127.0.0.1 port).
    private func startRelay(dualStack: Bool = false, config: String = "") throws -> (RelayProcess, port: UInt16, stats: UInt16) {
        let statsPort = try Sockets.freePort()
        let wildcardPort = try Sockets.freePort()
        let relay = try startRelay(
            config: "stats:\n  listen: 127.0.0.1:\(statsPort)\n" + config,
            arguments: dualStack ? ["--listen", "[::]:\(wildcardPort)"] : [])
        _ = try HTTPProbe.waitForAnswer(port: statsPort, timeout: expectWithin)
        return (relay, dualStack ? wildcardPort : relay.port, statsPort)
    }

    /// A node bound over its own socket to 127.0.0.1:`port`, with that socket's local port (what
    /// the relay observes).
    private func bindNode(port: UInt16, name: String, file: StaticString = #filePath, line: UInt = #line) throws -> (Node, localPort: UInt16) {
        let fd = try Sockets.connected(port: port)
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let client = TestClient(descriptor: fd, label: name)
        track(client)
        XCTAssertEqual(named, 0, "getsockname", file: file, line: line)
        XCTAssertEqual(client.receive(timeout: expectWithin)?.verb, "HELLO", "\(name): no HELLO", file: file, line: line)
        let id = Ids.make()
        client.send(json: Frames.hello(id: id, name: name))
        XCTAssertNotNil(client.receive(verb: "ROUTING", timeout: expectWithin), "\(name): no ROUTING", file: file, line: line)
        return (Node(client: client, id: id, name: name), UInt16(bigEndian: address.sin_port))
    }

    private func connect(from node: Node, id: String = Ids.make(), _ data: [String: Any]) {
        node.client.send(json: Frames.head("CONNECT", id: id, ttl: 32, flood: false, sender: node.address, data: data))
    }

    private func stats(_ port: UInt16, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        try XCTUnwrap(try HTTPProbe.request(port: port, path: "/stats").json, "/stats is not JSON", file: file, line: line)
    }

    /// Waits until `/stats` `connect.<key>` is `value`.
    private func waitForConnectCounter(_ port: UInt16, _ key: String, _ value: Int, file: StaticString = #filePath, line: UInt = #line) {
        var seen: Int?
        let reached = Deadline.poll(timeout: expectWithin) {
            seen = ((try? stats(port))?["connect"] as? [String: Any])?[key] as? Int
            return seen == value
        }
        XCTAssertTrue(reached, "connect.\(key) is \(seen.map(String.init) ?? "missing"), expected \(value)", file: file, line: line)
    }

    /// The hint `key` of a received frame when the frame's text has it as a JSON integer.
    private func rtt(_ frame: ReceivedFrame, _ key: String) -> Int? {
        let text = String(decoding: frame.bytes, as: UTF8.self)
        guard let range = text.range(of: #""\#(key)":[0-9]+[,}]"#, options: .regularExpression) else { return nil }
        return Int(text[range].dropFirst(key.count + 3).dropLast())
    }

    // MARK: Dual-stack listener and the round-trip hints

    /// IPv4 clients of a `[::]` listener are seen as `::ffff:127.0.0.1`: the addresses the relay
    /// fills in are written `127.0.0.1:PORT`, and steps 2 and 4 carry both round-trip hints as
    /// integers read from the kernel.
    func testRendezvousOverADualStackListenerWritesPlainIPv4AndCarriesRoundTripHints() throws {
        let (_, port, statsPort) = try startRelay(dualStack: true)
        let (alice, _) = try bindNode(port: port, name: "alice")
        let (bob, _) = try bindNode(port: port, name: "bob")

        connect(from: alice, ["src": ":40000", "dst": NSNull(), "src_node_id": alice.id, "dst_node_id": bob.id, "src_rtt_ms": 99999])
        let step2 = try XCTUnwrap(bob.client.receiveFrame(verb: "CONNECT", timeout: expectWithin))
        let data2 = try XCTUnwrap(step2.json["msg_data"] as? [String: Any])
        XCTAssertEqual(data2["src"] as? String, "127.0.0.1:40000")
        let srcRTT = try XCTUnwrap(rtt(step2, "src_rtt_ms"), "step 2 without an integer src_rtt_ms: \(data2)")
        let dstRTT = try XCTUnwrap(rtt(step2, "dst_rtt_ms"), "step 2 without an integer dst_rtt_ms: \(data2)")
        XCTAssertTrue((0..<1000).contains(srcRTT), "loopback src_rtt_ms \(srcRTT): the forged 99999 was not replaced")
        XCTAssertTrue((0..<1000).contains(dstRTT), "loopback dst_rtt_ms \(dstRTT)")

        connect(from: bob, ["src": "127.0.0.1:40000", "dst": ":40001", "src_node_id": alice.id, "dst_node_id": bob.id])
        let step4 = try XCTUnwrap(alice.client.receiveFrame(verb: "CONNECT", timeout: expectWithin))
        let data4 = try XCTUnwrap(step4.json["msg_data"] as? [String: Any])
        XCTAssertEqual(data4["src"] as? String, "127.0.0.1:40000")
        XCTAssertEqual(data4["dst"] as? String, "127.0.0.1:40001")
        XCTAssertNotNil(rtt(step4, "src_rtt_ms"), "step 4 without an integer src_rtt_ms: \(data4)")
        XCTAssertNotNil(rtt(step4, "dst_rtt_ms"), "step 4 without an integer dst_rtt_ms: \(data4)")
        waitForConnectCounter(statsPort, "brokered", 2)
    }

    /// Two relays of a mesh, Alice on one and Bob on the other: each relay writes the hint of its
    /// own client and the other's passes through, so steps 2 and 4 still carry both.
    func testRoundTripHintsAcrossTwoRelays() throws {
        let key = "integration-mesh-key-0123456789"
        let first: RelayProcess = try startRelay(config: "mesh:\n  key: \"\(key)\"\nrouting:\n  interval: 0.05\n  to_clients: true\n")
        let second: RelayProcess = try startRelay(config: "mesh:\n  key: \"\(key)\"\n  peers: [\"\(first.endpoint)\"]\nrouting:\n  interval: 0.05\n  to_clients: true\n")
        let (alice, _) = try bindNode(port: first.port, name: "alice")
        let (bob, _) = try bindNode(port: second.port, name: "bob")
        XCTAssertNotNil(
            alice.client.receive(timeout: 10) { $0.verb == "ROUTING" && $0.routingEntries.contains { $0.id == bob.id } },
            "no route to Bob through the mesh")

        connect(from: alice, ["src": ":40000", "dst": NSNull(), "src_node_id": alice.id, "dst_node_id": bob.id])
        let step2 = try XCTUnwrap(bob.client.receiveFrame(verb: "CONNECT", timeout: expectWithin))
        XCTAssertEqual(step2.json.data["src"] as? String, "127.0.0.1:40000")
        XCTAssertNotNil(rtt(step2, "src_rtt_ms"), "Alice's hint from her relay: \(step2.json.data)")
        XCTAssertNotNil(rtt(step2, "dst_rtt_ms"), "Bob's hint from his relay: \(step2.json.data)")

        connect(from: bob, ["src": "127.0.0.1:40000", "dst": ":40001", "src_node_id": alice.id, "dst_node_id": bob.id])
        let step4 = try XCTUnwrap(alice.client.receiveFrame(verb: "CONNECT", timeout: expectWithin))
        XCTAssertEqual(step4.json.data["dst"] as? String, "127.0.0.1:40001")
        XCTAssertNotNil(rtt(step4, "src_rtt_ms"), "Alice's hint from her relay: \(step4.json.data)")
        XCTAssertNotNil(rtt(step4, "dst_rtt_ms"), "Bob's hint from his relay: \(step4.json.data)")
    }

    // MARK: Address discovery

    /// `src` empty, null or missing: the answer is the observed IP and the TCP source port of the
    /// connection it came on (over the dual-stack listener too).
    func testAddressDiscoveryWithoutAPortAnswersTheObservedAddress() throws {
        let (relay, port, statsPort) = try startRelay(dualStack: true)
        let forms: [(String, Any?)] = [("empty", ""), ("null", NSNull()), ("missing", nil)]
        for (label, src) in forms {
            let (node, localPort) = try bindNode(port: port, name: "n-\(label)")
            var data: [String: Any] = ["dst": NSNull(), "src_node_id": node.id, "dst_node_id": relay.nodeID]
            if let src { data["src"] = src }
            connect(from: node, data)
            let answer = try XCTUnwrap(node.client.receive(verb: "CONNECT", timeout: expectWithin), "src \(label): no answer")
            assertRelayHead(answer, verb: "CONNECT", flood: false, sender: relay.address)
            let answered = try XCTUnwrap(answer["msg_data"] as? [String: Any])
            XCTAssertEqual(answered["src"] as? String, "127.0.0.1:\(localPort)", "src \(label)")
            XCTAssertNil(node.client.receive(verb: "NACK", timeout: 0), "src \(label) was refused")
        }
        waitForConnectCounter(statsPort, "discoveries", forms.count)
        XCTAssertEqual((try stats(statsPort)["drops"] as? [String: Any])?["invalid"] as? Int, 0)
    }

    // MARK: Per-pair limit

    func testAPairOverItsBudgetIsNackedRateLimited() throws {
        let (_, port, statsPort) = try startRelay(config: "limits:\n  connect_per_minute: 0\n  connect_pair_per_minute: 2\n")
        let (alice, _) = try bindNode(port: port, name: "alice")
        let (bob, _) = try bindNode(port: port, name: "bob")
        connect(from: alice, ["src": ":40000", "dst": NSNull(), "src_node_id": alice.id, "dst_node_id": bob.id])
        XCTAssertNotNil(bob.client.receive(verb: "CONNECT", timeout: expectWithin))
        connect(from: bob, ["src": "127.0.0.1:40000", "dst": ":40001", "src_node_id": alice.id, "dst_node_id": bob.id])
        XCTAssertNotNil(alice.client.receive(verb: "CONNECT", timeout: expectWithin))

        let third = Ids.make()
        connect(from: alice, id: third, ["src": ":40002", "dst": NSNull(), "src_node_id": alice.id, "dst_node_id": bob.id])
        let nack = try XCTUnwrap(alice.client.receive(verb: "NACK", timeout: expectWithin))
        let data = try XCTUnwrap(nack["msg_data"] as? [String: Any])
        XCTAssertEqual(data["reason"] as? String, "rate_limited")
        XCTAssertEqual(data["msg_id"] as? String, third)
        XCTAssertNil(bob.client.receive(verb: "CONNECT", timeout: quietPeriod), "the pair's third CONNECT was forwarded")
        XCTAssertEqual((try stats(statsPort)["drops"] as? [String: Any])?["connect_pair_rate"] as? Int, 1)
        XCTAssertEqual((try stats(statsPort)["drops"] as? [String: Any])?["connect_rate"] as? Int, 0)
    }

    // MARK: Counters and outcome reports

    func testCountersOfBrokeredConnectsDiscoveriesAndReportedOutcomes() throws {
        let (relay, port, statsPort) = try startRelay()
        let (alice, _) = try bindNode(port: port, name: "alice")
        let (bob, _) = try bindNode(port: port, name: "bob")
        connect(from: alice, ["src": NSNull(), "dst": NSNull(), "src_node_id": alice.id, "dst_node_id": relay.nodeID])
        XCTAssertNotNil(alice.client.receive(verb: "CONNECT", timeout: expectWithin))
        connect(from: alice, ["src": ":40000", "dst": NSNull(), "src_node_id": alice.id, "dst_node_id": bob.id])
        XCTAssertNotNil(bob.client.receive(verb: "CONNECT", timeout: expectWithin))
        connect(from: bob, ["src": "127.0.0.1:40000", "dst": ":40001", "src_node_id": alice.id, "dst_node_id": bob.id])
        XCTAssertNotNil(alice.client.receive(verb: "CONNECT", timeout: expectWithin))

        for (result, reason) in [("direct", nil), ("failed", "deadline"), ("failed", nil)] as [(String, String?)] {
            let id = Ids.make()
            var data: [String: Any] = ["src_node_id": alice.id, "dst_node_id": relay.nodeID, "result": result]
            if let reason { data["reason"] = reason }
            connect(from: alice, id: id, data)
            let ack = try XCTUnwrap(alice.client.receive(verb: "ACK", timeout: expectWithin), "report \(result) not ACKed")
            XCTAssertEqual((ack["msg_data"] as? [String: Any])?["msg_id"] as? String, id)
        }
        XCTAssertNil(alice.client.receive(verb: "CONNECT", timeout: quietPeriod), "a report was answered as a discovery")
        XCTAssertNil(bob.client.receive(verb: "CONNECT", timeout: 0), "a report was forwarded")

        let connect = try XCTUnwrap(try stats(statsPort)["connect"] as? [String: Any], "/stats has no connect object")
        XCTAssertEqual(connect["brokered"] as? Int, 2)
        XCTAssertEqual(connect["discoveries"] as? Int, 1)
        XCTAssertEqual(connect["punch_succeeded"] as? Int, 1)
        XCTAssertEqual(connect["punch_failed"] as? Int, 2)
        let metrics = try PrometheusText(parsing: String(decoding: try HTTPProbe.request(port: statsPort, path: "/metrics").body, as: UTF8.self))
        XCTAssertEqual(metrics.value("ptpchat_punch_failed_total"), 2)
        XCTAssertEqual(metrics.value("ptpchat_connect_brokered_total"), 2)
    }

    // MARK: The relay dials nothing

    /// PROFILE.md section 8: "The relay never opens a connection to an address taken from a
    /// message". Every CONNECT form names a port the test listens on; nothing connects to it.
    func testConnectNeverMakesTheRelayOpenAConnection() throws {
        let (relay, port, statsPort) = try startRelay(config: "limits:\n  connect_per_minute: 0\n")
        let trapPort = try Sockets.freePort()
        let trap = try Sockets.listening(port: trapPort)
        defer { Sockets.closeSocket(trap) }
        let (alice, _) = try bindNode(port: port, name: "alice")
        let (bob, _) = try bindNode(port: port, name: "bob")
        let named = "127.0.0.1:\(trapPort)"
        connect(from: alice, ["src": named, "dst": NSNull(), "src_node_id": alice.id, "dst_node_id": bob.id])
        XCTAssertEqual(
            ((bob.client.receive(verb: "CONNECT", timeout: expectWithin))?["msg_data"] as? [String: Any])?["src"] as? String, named)
        connect(from: bob, ["src": named, "dst": named, "src_node_id": alice.id, "dst_node_id": bob.id])
        XCTAssertNotNil(alice.client.receive(verb: "CONNECT", timeout: expectWithin))
        connect(from: alice, ["src": named, "dst": NSNull(), "src_node_id": alice.id, "dst_node_id": relay.nodeID])
        XCTAssertNotNil(alice.client.receive(verb: "CONNECT", timeout: expectWithin))
        connect(from: alice, ["src": named, "dst": NSNull(), "src_node_id": alice.id, "dst_node_id": Ids.make()])
        XCTAssertNotNil(alice.client.receive(verb: "NACK", timeout: expectWithin), "CONNECT to an unknown node")
        waitForConnectCounter(statsPort, "brokered", 2)

        // Whatever the relay did, it did it before answering; give it a while more all the same.
        var pending = pollfd(fd: trap, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pending, 1, 1000)
        XCTAssertEqual(ready, 0, "something connected to the address named in the CONNECTs")
    }

    // MARK: A host whose only IPv6 address is ::1

    /// `--listen [::]:PORT` (and `--stats [::]:PORT`) on a host whose only IPv6 address is `::1`:
    /// a fresh network namespace with IPv4 on an interface and IPv6 on loopback only. Before, the relay's resolver lookup
    /// of `::` failed there ("Address family for hostname not supported"); now the literal is
    /// bound as it is, dual-stack, and an IPv4 client inside the namespace gets the relay's HELLO.
    func testWildcardListenerServesIPv4WhereTheOnlyIPv6AddressIsLoopback() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to create a network namespace (CI runs as root)") }
        let unshare = ["/usr/bin/unshare", "/bin/unshare"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let unshare, let ip else { throw XCTSkip("unshare or ip (util-linux, iproute2) not installed") }
        let relayBinary = try Binaries.path("ptpchat-relay").path
        let data = try directory.appendingPathComponent("ns-data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        // Inside the namespace: loopback up and an IPv4 address on a veth pair with IPv6 off (so
        // the resolver's AI_ADDRCONFIG sees IPv4 and no IPv6 but ::1; with loopback alone it
        // filters nothing), the relay on [::]:9001 and [::]:9002 (stats), then a bash /dev/tcp
        // client over IPv4 reads the relay's first frame and the stats health.
        let script = """
            set -u
            export PATH="$PATH:/usr/sbin:/sbin"
            \(ip) link set lo up || exit 3
            sysctl -qw net.ipv6.conf.default.disable_ipv6=1 || exit 9
            \(ip) link add ptp0 type veth peer name ptp1 || exit 8
            \(ip) addr add 198.18.0.1/24 dev ptp0 && \(ip) link set ptp0 up && \(ip) link set ptp1 up || exit 8
            \(ip) -6 addr show | grep -q 'inet6 ::1/128' || exit 4
            ! \(ip) -6 addr show | grep inet6 | grep -vq 'inet6 ::1/128' || exit 5
            '\(relayBinary)' --listen '[::]:9001' --stats '[::]:9002' --data-dir '\(data.path)' --node-id \(Ids.make()) --log-level info &
            relay=$!
            trap 'kill $relay 2>/dev/null; wait $relay' EXIT
            deadline=$((SECONDS + 20))
            until (exec 3<>/dev/tcp/127.0.0.1/9001) 2>/dev/null; do
              kill -0 $relay 2>/dev/null || { echo "relay ended"; exit 6; }
              [ $SECONDS -lt $deadline ] || { echo "relay not listening"; exit 7; }
              sleep 0.05
            done
            exec 3<>/dev/tcp/127.0.0.1/9001
            timeout 5 head -c 60 <&3 | tr -c '[:print:]' '.' ; echo
            exec 4<>/dev/tcp/127.0.0.1/9002
            printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&4
            timeout 5 head -n 1 <&4
            """
        let child = try ChildProcess(
            executable: URL(fileURLWithPath: unshare), arguments: ["--net", "--", "/bin/bash", "-c", script], directory: try directory,
            name: "netns")
        defer { child.stop() }
        let status = child.waitForExit(timeout: 40)
        XCTAssertNotNil(status, "the namespace script did not end")
        if status == 1 && child.stdout.isEmpty {
            throw XCTSkip("cannot create a network namespace here: \(child.stderr)")
        }
        XCTAssertEqual(status, 0, "stdout: \(child.stdout)\nstderr: \(child.stderr)")
        XCTAssertTrue(
            child.stdout.contains("\"msg_type\":\"HELLO\""), "no HELLO over IPv4 from the [::] listener: \(child.stdout)\n\(child.stderr)")
        XCTAssertTrue(child.stdout.contains(" 200 "), "stats on [::] not reached over IPv4: \(child.stdout)")
        XCTAssertFalse(child.stderr.contains("not supported"), child.stderr)
    }
}
