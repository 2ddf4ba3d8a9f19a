#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import XCTest

/// Issue "Operations": the relay under a service manager. sd_notify (READY, STATUS, WATCHDOG,
/// RELOADING, STOPPING) to a notification socket the test binds, SIGHUP reloads, SIGTERM/SIGINT
/// shutdown, socket activation through `systemd-socket-activate`, and the log line format.
final class OperationsTests: OpsTestCase {
    /// How long a start may take before READY=1 (a debug build on a busy machine).
    let startWithin: Double = RelayProcess.startTimeout

    // MARK: READY, STATUS, WATCHDOG

    func testReadyIsSentOnlyOnceListeningWithMainPIDAndStatusKeepsComing() throws {
        let notify = try makeNotifySocket()
        let relay = try launchRelay(stats: true, environment: ["NOTIFY_SOCKET": notify.path])
        let ready = notify.waitFor(timeout: startWithin) { $0.has("READY", "1") }
        // Checked the moment READY=1 is seen: both listeners must already accept connections.
        let relayPortAccepts = relay.isListening
        let readyz = try? HTTPProbe.request(port: relay.statsPort!, path: "/readyz", timeout: 3)
        let found = try XCTUnwrap(ready, "no READY=1 within \(startWithin) s; notifications:\n\(notify.transcript)")

        XCTAssertTrue(relayPortAccepts, "READY=1 was sent before the relay port \(relay.endpoint) accepted connections")
        XCTAssertEqual(readyz?.status, 200, "/readyz when READY=1 was sent: \(String(describing: readyz))")
        XCTAssertEqual(found.message.fields["MAINPID"], "\(relay.child.pid)", "READY=1 must carry MAINPID= of the relay: \(found.message)")
        XCTAssertNotNil(found.message.fields["STATUS"], "READY=1 should carry a STATUS=: \(found.message)")
        XCTAssertEqual(notify.messages.filter { $0.has("READY") }.count, 1, "READY=1 sent more than once at start:\n\(notify.transcript)")

        // The relay answers a node at once.
        let client = try connect(port: relay.port, label: "probe")
        XCTAssertEqual(client.receive(timeout: expectWithin)?.verb, "HELLO", "no HELLO from the relay after READY=1")

        // STATUS= refreshed every second: three more within a few seconds, about a second apart.
        var statuses: [NotifySocket.Message] = []
        var from = found.index + 1
        for _ in 0..<3 {
            guard let next = notify.waitFor(from: from, timeout: 4, where: { $0.has("STATUS") && !$0.has("READY") }) else { break }
            statuses.append(next.message)
            from = next.index + 1
        }
        XCTAssertEqual(statuses.count, 3, "STATUS= did not keep coming after READY=1:\n\(notify.transcript)")
        if statuses.count == 3 {
            let span = statuses[2].at.timeIntervalSince(statuses[0].at)
            XCTAssertTrue((1.2...4.5).contains(span), "two STATUS= intervals took \(span) s, expected about 2 s:\n\(notify.transcript)")
        }
        for status in statuses {
            let text = status.fields["STATUS"] ?? ""
            XCTAssertFalse(text.isEmpty, "empty STATUS=: \(status)")
            XCTAssertFalse(text.contains("\n"), "STATUS= must be one line: \(status)")
            XCTAssertTrue(text.contains("clients"), "STATUS= should summarise the relay (clients, nodes, rate): \(status)")
        }
        XCTAssertFalse(notify.messages.contains { $0.has("WATCHDOG") }, "WATCHDOG=1 sent without WATCHDOG_USEC:\n\(notify.transcript)")
    }

    func testWatchdogIsPingedEveryHalfPeriod() throws {
        let notify = try makeNotifySocket()
        let relay = try launchRelay(environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])
        let ready = try XCTUnwrap(
            notify.waitFor(timeout: startWithin) { $0.has("READY", "1") }, "no READY=1; notifications:\n\(notify.transcript)")
        let first = try XCTUnwrap(
            notify.waitFor(from: ready.index, timeout: 3) { $0.has("WATCHDOG", "1") },
            "no WATCHDOG=1 within 3 s of READY=1 with WATCHDOG_USEC=1000000:\n\(notify.transcript)")
        // Count the pings in the 2 s from the first one; any notification after the window ends it.
        let windowEnd = first.message.at.addingTimeInterval(2)
        _ = notify.waitFor(from: first.index + 1, timeout: 5) { $0.at >= windowEnd }
        let pings = notify.messages.filter { $0.has("WATCHDOG", "1") && $0.at >= first.message.at && $0.at < windowEnd }
        XCTAssertTrue((2...6).contains(pings.count), "\(pings.count) WATCHDOG=1 in 2 s with a 1 s period (expected about 4):\n\(notify.transcript)")
        print("WATCHDOG=1 in 2 s with WATCHDOG_USEC=1000000: \(pings.count)")
        let gaps = zip(pings.dropFirst(), pings).map { $0.at.timeIntervalSince($1.at) }
        XCTAssertTrue(gaps.allSatisfy { $0 < 1.0 }, "a gap between pings reached the whole watchdog period: \(gaps)")
        XCTAssertNotNil(relay.child.waitForStderrLine(containing: "watchdog", timeout: 1), "no log line about the watchdog")
    }

    // MARK: Reload

    func testReloadNotifiesReloadingThenReadyAndDropsNoConnection() throws {
        let notify = try makeNotifySocket()
        let relay = try launchRelay(config: "log:\n  level: debug\n", logLevel: nil, environment: ["NOTIFY_SOCKET": notify.path])
        let ready = try XCTUnwrap(
            notify.waitFor(timeout: startWithin) { $0.has("READY", "1") }, "no READY=1; notifications:\n\(notify.transcript)")
        let alice = try bind(port: relay.port, name: "alice")
        let bob = try bind(port: relay.port, name: "bob")
        exchange(alice, bob)

        try relay.writeConfig("log:\n  level: debug\nlimits:\n  node_messages_per_second: 500\ntimeouts:\n  idle: 200\n")
        let linesBefore = relay.child.stderrLines.count
        let before = Self.monotonicMicroseconds()
        relay.child.signal(SIGHUP)
        let reloading = try XCTUnwrap(
            notify.waitFor(from: ready.index + 1, timeout: expectWithin) { $0.has("RELOADING", "1") },
            "no RELOADING=1 after SIGHUP:\n\(notify.transcript)")
        let after = Self.monotonicMicroseconds()
        let stamp = reloading.message.fields["MONOTONIC_USEC"]
        let microseconds = try XCTUnwrap(stamp.flatMap(UInt64.init), "RELOADING=1 must carry MONOTONIC_USEC=<number>: \(reloading.message)")
        XCTAssertTrue(
            (before...after).contains(microseconds),
            "MONOTONIC_USEC=\(microseconds) is not CLOCK_MONOTONIC between SIGHUP (\(before)) and its arrival (\(after))")
        let readyAgain = notify.waitFor(from: reloading.index + 1, timeout: expectWithin) { $0.has("READY", "1") }
        XCTAssertNotNil(readyAgain, "no READY=1 after RELOADING=1:\n\(notify.transcript)")
        XCTAssertNotNil(
            relay.child.waitForStderrLine(containing: "configuration reloaded", after: linesBefore, timeout: expectWithin),
            "no log line for the reload")

        // Nothing was dropped: the bound nodes still talk, both ways, and new nodes get in.
        XCTAssertFalse(alice.client.isClosed || bob.client.isClosed, "a connection was closed by the reload")
        exchange(alice, bob, text: "after the reload")
        exchange(bob, alice, text: "and back")
        let carol = try bind(port: relay.port, name: "carol")
        exchange(carol, alice)
        XCTAssertTrue(relay.child.isRunning)
    }

    func testReloadAppliesLimitsAndTimeoutsToNewConnectionsButNotRestartOnlyKeys() throws {
        let notify = try makeNotifySocket()
        let relay = try launchRelay(config: "timeouts:\n  handshake: 30\n", environment: ["NOTIFY_SOCKET": notify.path])
        let ready = try XCTUnwrap(notify.waitFor(timeout: startWithin) { $0.has("READY", "1") }, "no READY=1:\n\(notify.transcript)")
        let alice = try bind(port: relay.port, name: "alice")
        let bob = try bind(port: relay.port, name: "bob")
        // A connection still in its handshake, under the 30 s handshake timeout.
        let silentBefore = try connect(port: relay.port, label: "silent-before")
        XCTAssertEqual(silentBefore.receive(timeout: expectWithin)?.verb, "HELLO")

        try relay.writeConfig("relay:\n  name: renamed\ntimeouts:\n  handshake: 0.5\nlimits:\n  max_frame_bytes: 1024\n")
        let lines = relay.child.stderrLines.count
        relay.child.signal(SIGHUP)
        let reloading = try XCTUnwrap(
            notify.waitFor(from: ready.index + 1, timeout: expectWithin) { $0.has("RELOADING", "1") }, "no RELOADING=1:\n\(notify.transcript)")
        XCTAssertNotNil(notify.waitFor(from: reloading.index + 1, timeout: expectWithin) { $0.has("READY", "1") }, "no READY=1 after the reload")
        let reloaded = relay.child.waitForStderrLine(containing: "configuration reloaded", after: lines, timeout: expectWithin)
        XCTAssertTrue(reloaded?.contains("relay.name") ?? false, "the reload log line should name relay.name as needing a restart: \(reloaded ?? "none")")

        // New connections get the new timeouts and limits.
        let silentAfter = try connect(port: relay.port, label: "silent-after")
        let hello = silentAfter.receive(timeout: expectWithin)
        XCTAssertEqual((hello?["sender_id"] as? String)?.lowercased(), relay.address, "relay.name changed without a restart: \(String(describing: hello))")
        XCTAssertTrue(silentAfter.expectClosed(timeout: 3), "timeouts.handshake 0.5 after the reload: a silent new connection stayed open")
        let carol = try bind(port: relay.port, name: "carol")
        let large = Frames.message(from: carol, to: [bob.id], text: String(repeating: "x", count: 2000))
        carol.client.send(json: large)
        XCTAssertTrue(carol.client.expectClosed(timeout: expectWithin), "limits.max_frame_bytes 1024 after the reload: a 2.7 kB frame was accepted")

        // Connections from before the reload are not dropped by it.
        XCTAssertFalse(silentBefore.expectClosed(timeout: quietPeriod), "the reload closed a connection in its handshake (it had 30 s)")
        exchange(alice, bob, text: "after the reload")
    }

    func testReloadOfAnInvalidConfigurationIsRefusedAndTheRelayKeepsServing() throws {
        let notify = try makeNotifySocket()
        let relay = try launchRelay(config: "log:\n  level: debug\n", logLevel: nil, environment: ["NOTIFY_SOCKET": notify.path])
        _ = try XCTUnwrap(notify.waitFor(timeout: startWithin) { $0.has("READY", "1") }, "no READY=1:\n\(notify.transcript)")
        let alice = try bind(port: relay.port, name: "alice")
        let bob = try bind(port: relay.port, name: "bob")

        let broken: [(String, String)] = [
            ("not YAML", "relay: [unclosed\n  ::: {{{\n\t- ]\n"),
            ("an unknown key", "log:\n  level: debug\nlimits:\n  max_frame_bytez: 10\n"),
            ("an invalid value", "log:\n  level: loud\n"),
        ]
        for (what, text) in broken {
            try relay.writeConfig(text)
            let mark = notify.messages.count
            let lines = relay.child.stderrLines.count
            relay.child.signal(SIGHUP)
            let reloading = notify.waitFor(from: mark, timeout: expectWithin) { $0.has("RELOADING", "1") }
            XCTAssertNotNil(reloading, "\(what): no RELOADING=1 after SIGHUP:\n\(notify.transcript)")
            let refused = relay.child.waitForStderrLine(containing: "refused", after: lines, timeout: expectWithin)
            XCTAssertNotNil(refused, "\(what): no log line saying the reload was refused; log:\n\(relay.child.outputTail(20))")
            if let refused {
                XCTAssertTrue(refused.contains("level=error") || refused.contains("level=warning"), "\(what): refusal not logged as an error: \(refused)")
            }
            XCTAssertNil(
                relay.child.waitForStderrLine(containing: "configuration reloaded", after: lines, timeout: 0),
                "\(what): the relay says it reloaded an invalid file")
            let readyAgain = notify.waitFor(from: (reloading?.index ?? mark) + 1, timeout: expectWithin) { $0.has("READY", "1") }
            XCTAssertNotNil(readyAgain, "\(what): no READY=1 after the refused reload:\n\(notify.transcript)")
            XCTAssertTrue(relay.child.isRunning, "\(what): the relay ended (\(relay.child.ending ?? "")) after a reload of a bad file")
            exchange(alice, bob, text: "still serving after \(what)")
        }

        // The settings in force stayed: debug lines still come (the refused file said `loud`).
        let lines = relay.child.stderrLines.count
        let invalidID = Ids.make()
        alice.client.send(json: Self.invalidMessage(from: alice, to: bob, id: invalidID))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: invalidID) }?.verb, "NACK")
        XCTAssertNotNil(
            relay.child.waitForStderrLine(containing: ["level=debug", "invalid message"], after: lines, timeout: expectWithin),
            "after refused reloads the log level is no longer debug")
        let carol = try bind(port: relay.port, name: "carol")
        exchange(carol, bob)
    }

    func testReloadChangingTheLogLevelFromInfoToDebugBringsDebugLines() throws {
        let notify = try makeNotifySocket()
        let relay = try launchRelay(config: "log:\n  level: info\n", logLevel: nil, environment: ["NOTIFY_SOCKET": notify.path])
        let ready = try XCTUnwrap(notify.waitFor(timeout: startWithin) { $0.has("READY", "1") }, "no READY=1:\n\(notify.transcript)")
        let alice = try bind(port: relay.port, name: "alice")
        let bob = try bind(port: relay.port, name: "bob")

        // At info, an invalid message (a debug event) leaves no line.
        let first = Ids.make()
        alice.client.send(json: Self.invalidMessage(from: alice, to: bob, id: first))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: first) }?.verb, "NACK")
        exchange(alice, bob)
        XCTAssertNil(
            relay.child.waitForStderrLine(containing: "level=debug", timeout: quietPeriod),
            "a debug line at log.level info:\n\(relay.child.outputTail(20))")
        XCTAssertFalse(relay.child.stderrLines.isEmpty, "no log lines at all at info")

        try relay.writeConfig("log:\n  level: debug\n")
        let lines = relay.child.stderrLines.count
        relay.child.signal(SIGHUP)
        let reloading = try XCTUnwrap(
            notify.waitFor(from: ready.index + 1, timeout: expectWithin) { $0.has("RELOADING", "1") }, "no RELOADING=1:\n\(notify.transcript)")
        XCTAssertNotNil(
            notify.waitFor(from: reloading.index + 1, timeout: expectWithin) { $0.has("READY", "1") }, "no READY=1 after the reload")

        let second = Ids.make()
        alice.client.send(json: Self.invalidMessage(from: alice, to: bob, id: second))
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: second) }?.verb, "NACK")
        XCTAssertNotNil(
            relay.child.waitForStderrLine(containing: ["level=debug", "invalid message"], after: lines, timeout: expectWithin),
            "no debug line after reloading with log.level debug:\n\(relay.child.outputTail(20))")
    }

    // MARK: Shutdown

    func testSIGTERMNotifiesStoppingClosesConnectionsAndExitsZero() throws {
        let notify = try makeNotifySocket()
        let relay = try launchRelay(stats: true, environment: ["NOTIFY_SOCKET": notify.path])
        let ready = try XCTUnwrap(notify.waitFor(timeout: startWithin) { $0.has("READY", "1") }, "no READY=1:\n\(notify.transcript)")
        let alice = try bind(port: relay.port, name: "alice")

        relay.child.signal(SIGTERM)
        let stopping = notify.waitFor(from: ready.index + 1, timeout: expectWithin) { $0.has("STOPPING", "1") }
        XCTAssertNotNil(stopping, "no STOPPING=1 after SIGTERM:\n\(notify.transcript)")
        let ending = relay.child.waitForEnding(timeout: 5)
        XCTAssertEqual(ending, "exit 0", "after SIGTERM the relay must exit 0 within 5 s (timeouts.shutdown is 10 s); it: \(ending ?? "still runs")")
        XCTAssertTrue(alice.client.expectClosed(timeout: expectWithin), "the connection stayed open after the relay stopped")
        XCTAssertFalse(relay.isListening, "the relay port still accepts connections after the exit")
        let log = relay.child.stderr
        XCTAssertTrue(log.contains("signal=SIGTERM"), "the stop is not logged with its signal:\n\(relay.child.outputTail(10))")
        XCTAssertNotNil(relay.child.stderrLines.last { $0.contains("msg=stopped") }, "no final 'stopped' line:\n\(relay.child.outputTail(10))")
    }

    /// docs/configuration.md: `timeouts.shutdown` may be 0, "0 closes them at once". A stop with
    /// it is still a clean stop: exit 0, the store committed.
    func testShutdownTimeoutZeroStillStopsCleanly() throws {
        let relay = try launchRelay(config: "timeouts:\n  shutdown: 0\n")
        try relay.waitUntilListening()
        let alice = try bind(port: relay.port, name: "alice")
        relay.child.signal(SIGTERM)
        let ending = relay.child.waitForEnding(timeout: 5)
        XCTAssertTrue(alice.client.expectClosed(timeout: expectWithin), "the connection stayed open")
        let complaint = relay.child.stderrLines.first { $0.contains("level=error") }
        XCTAssertEqual(
            ending, "exit 0",
            "with timeouts.shutdown 0 (valid: close connections at once) SIGTERM must still exit 0; it: \(ending ?? "still runs"), \(complaint ?? "")")
        XCTAssertNil(complaint, "an error line for a normal stop with timeouts.shutdown 0")
        XCTAssertNotNil(relay.child.stderrLines.last { $0.contains("msg=stopped") }, "no final 'stopped' line: the stop did not finish")
    }

    func testSIGINTAlsoStopsWithStatusZero() throws {
        let notify = try makeNotifySocket()
        let relay = try launchRelay(environment: ["NOTIFY_SOCKET": notify.path])
        let ready = try XCTUnwrap(notify.waitFor(timeout: startWithin) { $0.has("READY", "1") }, "no READY=1:\n\(notify.transcript)")
        let alice = try bind(port: relay.port, name: "alice")
        relay.child.signal(SIGINT)
        XCTAssertNotNil(
            notify.waitFor(from: ready.index + 1, timeout: expectWithin) { $0.has("STOPPING", "1") }, "no STOPPING=1 after SIGINT")
        let ending = relay.child.waitForEnding(timeout: 5)
        XCTAssertEqual(ending, "exit 0", "after SIGINT the relay must exit 0; it: \(ending ?? "still runs after 5 s")")
        XCTAssertTrue(alice.client.expectClosed(timeout: expectWithin), "the connection stayed open after the relay stopped")
        XCTAssertTrue(relay.child.stderr.contains("signal=SIGINT"), "the stop is not logged with its signal")
    }

    func testASecondSignalDuringShutdownEndsTheProcessAtOnce() throws {
        // A slow shutdown is hard to provoke: many connections give the second signal a chance to
        // arrive while the first is handled. Either way the process must end promptly, with 0 (the
        // stop finished first) or 1 after a log line about the second signal, never by a crash.
        let notify = try makeNotifySocket()
        let relay = try launchRelay(config: Self.manyConnectionsFromOneAddress, environment: ["NOTIFY_SOCKET": notify.path])
        _ = try XCTUnwrap(notify.waitFor(timeout: startWithin) { $0.has("READY", "1") }, "no READY=1:\n\(notify.transcript)")
        let nodes = try (0..<100).map { try bind(port: relay.port, name: "n\($0)") }
        relay.child.signal(SIGTERM)
        relay.child.signal(SIGINT)
        let ending = relay.child.waitForEnding(timeout: 5)
        print("SIGTERM then SIGINT: \(ending ?? "still running")")
        XCTAssertTrue(["exit 0", "exit 1"].contains(ending), "after two signals the relay must end at once with 0 or 1; it: \(ending ?? "still runs")")
        if ending == "exit 1" {
            XCTAssertTrue(relay.child.stderr.contains("second signal"), "exit 1 without a line about the second signal")
        }
        XCTAssertTrue(nodes.allSatisfy { $0.client.expectClosed(timeout: 2) }, "a connection outlived the relay")
    }

    func testAMessageStoredBeforeSIGTERMIsDeliveredAfterTheRestart() throws {
        let first = try launchRelay()
        try first.waitUntilListening()
        let alice = try bind(port: first.port, name: "alice")
        let offline = Ids.make()
        let id = Ids.make()
        alice.client.send(json: Frames.message(from: alice, to: [offline], id: id, text: "kept across a restart"))
        let nack = try XCTUnwrap(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }, "no answer for a message to an offline node")
        XCTAssertEqual(nack.data["stored"] as? Bool, true, "the message to an offline node was not stored: \(nack)")
        first.child.signal(SIGTERM)
        XCTAssertEqual(first.child.waitForEnding(timeout: 5), "exit 0")

        let second = try launchRelay(dataDirectory: first.dataDirectory, nodeID: first.nodeID)
        try second.waitUntilListening()
        let late = try bind(port: second.port, name: "late", id: offline)
        let delivered = late.client.receive(timeout: expectWithin) { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id }
        XCTAssertNotNil(delivered, "the stored message was lost by the shutdown (store not flushed?)")
    }

    // MARK: Socket activation

    func testListenersPassedBySystemdSocketActivationAreUsed() throws {
        let activator = try Self.socketActivate()
        let relayPort = try Sockets.freePort()
        let statsPort = try Sockets.freePort()
        let configuredPort = try Sockets.freePort()
        let nodeID = Ids.make()
        let data = try folder("activated-data")
        let relayBinary = try Binaries.path("ptpchat-relay")
        let child = try launch(
            activator,
            [
                "-l", "127.0.0.1:\(relayPort)", "-l", "127.0.0.1:\(statsPort)", "--fdname=relay:stats",
                relayBinary.path, "--listen", "127.0.0.1:\(configuredPort)", "--data-dir", data.path, "--node-id", nodeID,
                "--stats", "127.0.0.1:\(statsPort)", "--log-level", "debug",
            ],
            name: "activated")

        // systemd-socket-activate starts the relay on the first connection to one of its sockets;
        // that connection waits in the backlog and must get the relay's HELLO.
        var client: TestClient?
        _ = Deadline.poll(timeout: 5) {
            client = try? connect(port: relayPort, label: "activated")
            return client != nil || !child.isRunning
        }
        let connected = try XCTUnwrap(client, "systemd-socket-activate did not listen on \(relayPort):\n\(child.outputTail())")
        let hello = connected.receive(timeout: startWithin)
        XCTAssertEqual(hello?.verb, "HELLO", "no HELLO on the socket passed by systemd: \(String(describing: hello)); \(child.outputTail())")
        XCTAssertEqual((hello?["sender_id"] as? String)?.lowercased(), "relay@\(nodeID)")
        connected.send(json: Frames.hello(id: Ids.make(), name: "activated"))
        XCTAssertNotNil(connected.receive(verb: "ROUTING", timeout: expectWithin), "the handshake on the passed socket did not finish")

        let health = try? HTTPProbe.waitForAnswer(port: statsPort, path: "/healthz", timeout: expectWithin)
        XCTAssertEqual(health?.status, 200, "/healthz on the stats socket passed by systemd: \(String(describing: health))")
        let stats = try? HTTPProbe.request(port: statsPort, path: "/stats")
        XCTAssertEqual((stats?.json?["connections"] as? [String: Any])?["clients"] as? Int, 1, "/stats on the passed socket: \(String(describing: stats))")

        XCTAssertNotNil(child.waitForStderrLine(containing: ["listening on socket from systemd", "\(relayPort)"], timeout: 1),
            "the log does not say the relay port came from systemd:\n\(child.outputTail(20))")
        XCTAssertNotNil(child.waitForStderrLine(containing: ["socket from systemd", "\(statsPort)"], timeout: 1),
            "the log does not say the stats socket came from systemd:\n\(child.outputTail(20))")
        if let fd = try? Sockets.connected(port: configuredPort) {
            Sockets.closeSocket(fd)
            XCTFail("the relay also bound relay.listen (\(configuredPort)) although systemd passed its socket")
        }
        XCTAssertNil(child.stderrLines.first { $0.contains("msg=listening ") }, "a 'listening' line for a bound port: the relay bound relay.listen")

        child.signal(SIGTERM)
        XCTAssertEqual(child.waitForEnding(timeout: 5), "exit 0", "the socket-activated relay did not stop cleanly")
    }

    // MARK: Log format

    func testLogLinesUnderJournaldStartWithThePriorityAndHaveNoTimestamp() throws {
        let relay = try launchRelay(environment: ["JOURNAL_STREAM": "8:4242"])
        let lines = try exerciseAndStop(relay)
        var priorities = Set<String>()
        for line in lines {
            guard line.hasPrefix("<"), let close = line.firstIndex(of: ">") else {
                XCTFail("under journald a line must start with <N>: \(line)")
                continue
            }
            let priority = String(line[line.index(after: line.startIndex)..<close])
            priorities.insert(priority)
            let rest = String(line[line.index(after: close)...])
            XCTAssertFalse(Self.startsWithTimestamp(rest), "under journald a line must have no timestamp: \(line)")
            XCTAssertTrue(rest.hasPrefix("level="), "under journald <N> is followed by level=: \(line)")
            let fields = Self.assertKeyValueLine(rest, line: line)
            if let level = fields?["level"] {
                XCTAssertEqual(priority, Self.syslogPriority[level], "priority <\(priority)> does not match level=\(level): \(line)")
            }
        }
        XCTAssertTrue(priorities.contains("6"), "no info line (<6>) under journald")
        XCTAssertTrue(priorities.contains("7"), "no debug line (<7>) under journald at --log-level debug")
    }

    func testLogLinesWithoutJournaldStartWithAnISOTimestamp() throws {
        let relay = try launchRelay()
        let lines = try exerciseAndStop(relay)
        for line in lines {
            XCTAssertTrue(Self.startsWithTimestamp(line), "without JOURNAL_STREAM a line must start with an ISO 8601 timestamp: \(line)")
            XCTAssertFalse(line.hasPrefix("<"), "a syslog priority without JOURNAL_STREAM: \(line)")
            guard let space = line.firstIndex(of: " ") else { continue }
            let rest = String(line[line.index(after: space)...])
            XCTAssertTrue(rest.hasPrefix("level="), "the timestamp must be followed by level=: \(line)")
            _ = Self.assertKeyValueLine(rest, line: line)
        }
    }

    /// Starts nodes, sends a valid and an invalid message (with quotes, spaces and a newline in
    /// values that reach the log), reloads, stops the relay; returns its stderr lines after
    /// checking for ANSI escapes.
    private func exerciseAndStop(_ relay: LaunchedRelay) throws -> [String] {
        try relay.waitUntilListening()
        let alice = try bind(port: relay.port, name: "alice")
        let bob = try bind(port: relay.port, name: "bob")
        exchange(alice, bob, text: "a \"quoted\"\nline")
        let id = Ids.make()
        var frame = Self.invalidMessage(from: alice, to: bob, id: id)
        frame["msg_data"] = frame.data.merging(["channel": "two words \"quoted\"\nand a newline"]) { $1 }
        alice.client.send(json: frame)
        XCTAssertEqual(alice.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }?.verb, "NACK")
        // A malformed frame: its reason reaches a debug line.
        alice.client.send(text: "{\"msg_type\": \"MESSAGE\", \"broken\n")
        relay.child.signal(SIGHUP)
        XCTAssertNotNil(relay.child.waitForStderrLine(containing: "reload", timeout: expectWithin))
        relay.child.signal(SIGTERM)
        XCTAssertEqual(relay.child.waitForEnding(timeout: 5), "exit 0")
        let bytes = relay.child.stderrBytes
        XCTAssertFalse(bytes.contains(0x1B), "an ANSI escape byte in the log")
        XCTAssertEqual(bytes.last, 0x0A, "the log does not end with a complete line")
        let lines = relay.child.stderrLines
        XCTAssertGreaterThan(lines.count, 5, "too few log lines:\n\(relay.child.stderr)")
        XCTAssertTrue(lines.contains { $0.contains("level=debug") }, "no debug line at --log-level debug")
        let listening = lines.first { $0.contains("msg=listening ") }
        XCTAssertTrue(listening?.contains(" address=127.0.0.1:\(relay.port) ") ?? false, "the listen address as HOST:PORT: \(listening ?? "no listening line")")
        return lines
    }

    /// The key=value checker used above rejects what it must.
    func testTheLogLineCheckerRejectsMalformedLines() {
        XCTAssertEqual(
            try? Self.parseKeyValueLine(#"level=info msg="a \"b\"\nc" k=v x="\u001b""#).get(),
            ["level": "info", "msg": "a \"b\"\nc", "k": "v", "x": "\u{1B}"])
        for bad in [
            "msg=hi level=info", "level=info", "level=info msg=two words", #"level=info msg="open"#, "level=info msg=a k=v k=w",
            "level=info msg=a  k=v", "level=info msg=a ", "level=loud msg=a", "level=info msg=a k=\u{1B}[31m", #"level=info msg="a\qb""#,
        ] {
            XCTAssertThrowsError(try Self.parseKeyValueLine(bad).get(), "accepted: \(bad.debugDescription)")
        }
    }

    // MARK: Helpers

    /// A MESSAGE without its recipient list: the relay NACKs it `invalid` and logs it at debug.
    static func invalidMessage(from: Node, to: Node, id: String) -> [String: Any] {
        var frame = Frames.message(from: from, to: [to.id], id: id)
        var data = frame.data
        data.removeValue(forKey: "recipient")
        frame["msg_data"] = data
        return frame
    }

    static let syslogPriority = [
        "trace": "7", "debug": "7", "info": "6", "notice": "5", "warning": "4", "error": "3", "critical": "2",
    ]

    /// `2025-01-02T03:04:05.678Z ` (or with an offset) at the start.
    static func startsWithTimestamp(_ line: String) -> Bool {
        line.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2}) "#, options: .regularExpression) != nil
    }

    struct LineProblem: Error, CustomStringConvertible {
        var description: String
    }

    /// Fails the test unless `text` is a key=value line (see `parseKeyValueLine`).
    @discardableResult
    static func assertKeyValueLine(_ text: String, line: String, file: StaticString = #filePath, lineNumber: UInt = #line) -> [String: String]? {
        switch parseKeyValueLine(text) {
        case .success(let fields):
            return fields
        case .failure(let problem):
            XCTFail("not a key=value log line (\(problem)): \(line)", file: file, line: lineNumber)
            return nil
        }
    }

    /// Parses `key=value key="quoted \"value\"" ...` to the end of the line: keys plain words,
    /// values bare (no space, quote, `=` or backslash) or double-quoted with `\"`, `\\`, `\n`,
    /// `\r`, `\t`, `\uXXXX` escapes. Fails on anything else, on a repeated key, and when `level=`
    /// (a swift-log level) and `msg=` are not the first two keys.
    static func parseKeyValueLine(_ text: String) -> Result<[String: String], LineProblem> {
        var fields: [String: String] = [:]
        var order: [String] = []
        var rest = Substring(text)
        func fail(_ why: String) -> Result<[String: String], LineProblem> { .failure(LineProblem(description: why)) }
        while !rest.isEmpty {
            guard let equals = rest.firstIndex(of: "=") else { return fail("a token without '='") }
            let key = String(rest[..<equals])
            guard !key.isEmpty, key.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_.-".unicodeScalars.contains($0)) })
            else { return fail("bad key '\(key)'") }
            rest = rest[rest.index(after: equals)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var closed = false
                while let character = rest.first {
                    rest = rest.dropFirst()
                    if character == "\"" {
                        closed = true
                        break
                    }
                    if character == "\\" {
                        guard let escaped = rest.first else { return fail("a dangling backslash") }
                        rest = rest.dropFirst()
                        switch escaped {
                        case "\"", "\\": value.append(escaped)
                        case "n": value.append("\n")
                        case "r": value.append("\r")
                        case "t": value.append("\t")
                        case "u":
                            let hex = rest.prefix(4)
                            guard hex.count == 4, let code = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(code) else { return fail("a bad \\u escape") }
                            value.unicodeScalars.append(scalar)
                            rest = rest.dropFirst(4)
                        default: return fail("an unknown escape \\\(escaped)")
                        }
                    } else {
                        guard character.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else { return fail("a control character in a quoted value") }
                        value.append(character)
                    }
                }
                guard closed else { return fail("an unterminated quoted value") }
            } else {
                let end = rest.firstIndex(of: " ") ?? rest.endIndex
                value = String(rest[..<end])
                guard !value.isEmpty else { return fail("an empty bare value for \(key)") }
                guard value.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F && $0 != "\"" && $0 != "=" && $0 != "\\" })
                else { return fail("a bare value that needed quotes: \(value.debugDescription)") }
                rest = rest[end...]
            }
            guard fields.updateValue(value, forKey: key) == nil else { return fail("the key \(key) twice") }
            order.append(key)
            if rest.first == " " {
                rest = rest.dropFirst()
                if rest.isEmpty { return fail("a trailing space") }
            } else if !rest.isEmpty {
                return fail("no space after the value of \(key)")
            }
        }
        guard order.count >= 2, order[0] == "level", order[1] == "msg" else { return fail("level= and msg= must come first") }
        guard syslogPriority[fields["level"]!] != nil else { return fail("unknown level \(fields["level"]!)") }
        return .success(fields)
    }

    /// `systemd-socket-activate`, or a skip when it is not installed.
    static func socketActivate() throws -> URL {
        for path in ["/usr/bin/systemd-socket-activate", "/bin/systemd-socket-activate", "/usr/local/bin/systemd-socket-activate"]
        where FileManager.default.isExecutableFile(atPath: path) {
            return URL(fileURLWithPath: path)
        }
        throw XCTSkip("systemd-socket-activate is not installed (Debian: apt-get install systemd)")
    }
}
