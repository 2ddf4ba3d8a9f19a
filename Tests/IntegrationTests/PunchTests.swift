#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import XCTest

/// `ptpchat punch` and `ptpchat listen --accept-punch` as real processes against the real relay
/// on 127.0.0.1: the CONNECT exchange, address discovery, the direct link and its message, the
/// fallback to the relay, and the probe on a second relay port. (Across real NATs: the NAT lab.)
final class PunchTests: RelayTestCase {
    /// Starts a responder and waits until it knows its public address (`ready`).
    func startResponder(_ relay: RelayProcess, id: String, extra: [String] = []) throws -> ChildProcess {
        let responder = try startPtpchat(
            ["listen", "--relay", relay.endpoint, "--node-id", id, "--accept-punch", "--json"] + extra, name: "responder")
        XCTAssertNotNil(
            responder.waitForStderrLine(containing: "ready \(id)", timeout: 20), "the responder never got ready:\n\(responder.outputTail())")
        return responder
    }

    /// Runs `ptpchat punch` to its end and returns its JSON object.
    func punch(_ relay: RelayProcess, to peer: String, from id: String, extra: [String] = [], text: String) throws -> [String: Any] {
        let child = try startPtpchat(
            ["punch", "--relay", relay.endpoint, "--to", peer, "--node-id", id, "--json"] + extra + [text], name: "punch-\(id.prefix(8))")
        let status = child.waitForExit(timeout: 30)
        XCTAssertEqual(status, 0, "ptpchat punch did not exit 0:\n\(child.outputTail())")
        let lines = child.stdoutLines
        XCTAssertEqual(lines.count, 1, "one JSON object on stdout:\n\(child.outputTail())")
        return try XCTUnwrap(JSON.object(Array((lines.first ?? "").utf8)), "not JSON:\n\(child.outputTail())")
    }

    /// The responder's stdout objects: its punch reports (`role`) and the messages it printed.
    func responderOutput(_ responder: ChildProcess, reports: Int, messages: Int) -> (reports: [[String: Any]], messages: [[String: Any]]) {
        var result: (reports: [[String: Any]], messages: [[String: Any]]) = ([], [])
        _ = Deadline.poll(timeout: 15) {
            let objects = responder.stdoutLines.compactMap { JSON.object(Array($0.utf8)) }
            result = (objects.filter { $0["role"] != nil }, objects.filter { $0["msg_type"] as? String == "MESSAGE" })
            return result.reports.count >= reports && result.messages.count >= messages
        }
        return result
    }

    /// The relay's counter `name` (a key anywhere in `/stats`).
    func relayCounter(_ name: String, statsPort: UInt16) throws -> Int? {
        func find(_ value: Any) -> Int? {
            if let object = value as? [String: Any] {
                if let count = object[name] as? Int { return count }
                return object.values.lazy.compactMap(find).first
            }
            return nil
        }
        let response = try HTTPProbe.request(port: statsPort, path: "/stats")
        return try find(XCTUnwrap(response.json, "\(response)"))
    }

    func testAResponderWithoutJSONShowsEachMessageReadablyWithItsPathAndEachPunchOnStderr() throws {
        let relay = try startRelay()
        let a = Ids.make()
        let b = Ids.make()
        let responder = try startPtpchat(["listen", "--relay", relay.endpoint, "--node-id", b, "--accept-punch"], name: "responder-readable")
        XCTAssertNotNil(responder.waitForStderrLine(containing: "ready \(b)", timeout: 20), responder.outputTail())

        let report = try punch(relay, to: b, from: a, text: "readable \u{1b}[1mbold")
        XCTAssertEqual(report["path"] as? String, "direct", "\(report)")
        let line = try XCTUnwrap(responder.waitForStdoutLines(1, timeout: 15).first, responder.outputTail())
        XCTAssertTrue(line.hasSuffix(" ptpchat (\(a)) [direct]: readable \\u{1b}[1mbold"), line)
        XCTAssertEqual(responder.stdoutLines.count, 1, "only the message on stdout: \(responder.stdout)")
        XCTAssertNotNil(responder.waitForStderrLine(containing: "punch from \(a): direct", timeout: 5), responder.outputTail())
    }

    func testLoopbackPunchGoesDirectAndTheMessageTakesTheDirectLink() throws {
        let statsPort = try Sockets.freePort()
        let relay = try startRelay(arguments: ["--stats", "127.0.0.1:\(statsPort)"])
        let a = Ids.make()
        let b = Ids.make()
        let responder = try startResponder(relay, id: b)

        let report = try punch(relay, to: b, from: a, text: "over the hole")
        XCTAssertEqual(report["result"] as? String, "direct", "\(report)")
        XCTAssertTrue(report["reason"] is NSNull, "\(report)")
        XCTAssertEqual(report["nat"] as? String, "endpoint-independent", "no NAT on loopback: the relay sees the local address")
        let localPort = try XCTUnwrap(report["local_port"] as? Int)
        XCTAssertEqual(report["observed"] as? String, "127.0.0.1:\(localPort)", "discovery over the connection from the punching port")
        XCTAssertTrue((report["peer"] as? String)?.hasPrefix("127.0.0.1:") == true, "\(report)")
        XCTAssertNotNil(report["time_to_direct_ms"] as? Int, "\(report)")
        XCTAssertNotNil(report["attempts"] as? Int)
        XCTAssertNotNil(report["rtt_hint_ms"] as? Int, "the relay's RTT hint in step 4: \(report)")
        XCTAssertEqual(report["path"] as? String, "direct", "\(report)")
        XCTAssertEqual(report["outcome_reported"] as? Bool, true, "the relay ACKs the outcome report")

        let seen = responderOutput(responder, reports: 1, messages: 1)
        let answered = try XCTUnwrap(seen.reports.first, "no punch report from the responder:\n\(responder.outputTail())")
        XCTAssertEqual(answered["role"] as? String, "responder")
        XCTAssertEqual(answered["result"] as? String, "direct", "\(answered)")
        XCTAssertEqual(answered["peer_node_id"] as? String, a)
        XCTAssertEqual(answered["dial_delay_ms"] as? Int, answered["rtt_hint_ms"] as? Int, "the responder waited the hint: \(answered)")
        XCTAssertEqual(answered["peer"] as? String, report["observed"] as? String, "the responder dialed the initiator's observed address")
        XCTAssertEqual(report["peer"] as? String, answered["observed"] as? String, "the initiator dialed the responder's observed address")
        let message = try XCTUnwrap(seen.messages.first, "the responder printed no message:\n\(responder.outputTail())")
        XCTAssertEqual(message["text"] as? String, "over the hole")
        XCTAssertEqual(message["path"] as? String, "direct")
        XCTAssertFalse(relay.log.contains("over the hole"), "the direct message never crossed the relay")
        XCTAssertEqual(try relayCounter("punch_succeeded", statsPort: statsPort), 1, "the outcome report was counted")
        XCTAssertEqual(try relayCounter("punch_failed", statsPort: statsPort), 0)
    }

    func testABlockedResponderPortStaysOnTheRelayAndTheMessageGoesThroughIt() throws {
        let relay = try startRelay()
        let a = Ids.make()
        let b = Ids.make()
        let responder = try startResponder(relay, id: b, extra: ["--punch-no-direct", "--punch-deadline", "1.5"])

        let started = Date()
        let report = try punch(relay, to: b, from: a, extra: ["--deadline", "1.5"], text: "through the relay")
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "the deadline holds")
        XCTAssertEqual(report["result"] as? String, "relay", "\(report)")
        XCTAssertTrue((report["reason"] as? String)?.contains("no direct connection before the deadline") == true, "\(report)")
        XCTAssertGreaterThanOrEqual(report["attempts"] as? Int ?? 0, 2, "refused dials are tried again: \(report)")
        XCTAssertTrue(report["time_to_direct_ms"] is NSNull)
        XCTAssertEqual(report["path"] as? String, "relay")
        XCTAssertEqual(report["stored"] as? Bool, false, "delivered, not stored")
        XCTAssertEqual(report["outcome_reported"] as? Bool, true, "a failed punch is reported too")

        let seen = responderOutput(responder, reports: 1, messages: 1)
        XCTAssertEqual(seen.reports.first?["result"] as? String, "relay", "\(seen.reports)")
        let message = try XCTUnwrap(seen.messages.first, "the responder printed no message:\n\(responder.outputTail())")
        XCTAssertEqual(message["text"] as? String, "through the relay")
        XCTAssertEqual(message["path"] as? String, "relay")
    }

    func testAProbeOnASecondRelayPortSeesTheSameMapping() throws {
        let secondPort = try Sockets.freePort()
        let relay = try startRelay(arguments: ["--listen", "127.0.0.1:\(secondPort)"])
        let a = Ids.make()
        let b = Ids.make()
        let responder = try startResponder(relay, id: b, extra: ["--probe", "127.0.0.1:\(secondPort)"])

        let report = try punch(relay, to: b, from: a, extra: ["--probe", "127.0.0.1:\(secondPort)"], text: "probed")
        XCTAssertEqual(report["probe_observed"] as? String, report["observed"] as? String, "\(report)")
        XCTAssertEqual(report["nat"] as? String, "endpoint-independent")
        XCTAssertEqual(report["result"] as? String, "direct", "\(report)")
        XCTAssertTrue(report["peer_nat"] is NSNull, "the responder is not behind a symmetric NAT")

        let answered = try XCTUnwrap(responderOutput(responder, reports: 1, messages: 1).reports.first, responder.outputTail())
        XCTAssertEqual(answered["probe_observed"] as? String, answered["observed"] as? String, "the responder probed from its punching port")
        XCTAssertEqual(answered["nat"] as? String, "endpoint-independent")
        XCTAssertEqual(answered["result"] as? String, "direct", "\(answered)")
    }

    func testPunchOverIPv6Loopback() throws {
        let port = try Sockets.freePort()
        _ = try startRelay(arguments: ["--listen", "[::1]:\(port)"])
        let a = Ids.make()
        let b = Ids.make()
        let responder = try startPtpchat(
            ["listen", "--relay", "[::1]:\(port)", "--node-id", b, "--accept-punch", "--json"], name: "responder")
        XCTAssertNotNil(responder.waitForStderrLine(containing: "ready \(b)", timeout: 20), responder.outputTail())
        let child = try startPtpchat(["punch", "--relay", "[::1]:\(port)", "--to", b, "--node-id", a, "--json", "over v6"], name: "punch")
        XCTAssertEqual(child.waitForExit(timeout: 30), 0, child.outputTail())
        let report = try XCTUnwrap(child.stdoutLines.first.flatMap { JSON.object(Array($0.utf8)) }, child.outputTail())
        XCTAssertEqual(report["result"] as? String, "direct", "\(report)")
        XCTAssertEqual(report["observed"] as? String, "[::1]:\(report["local_port"] as? Int ?? 0)", "IPv6 written in brackets")
        XCTAssertTrue((report["peer"] as? String)?.hasPrefix("[::1]:") == true, "\(report)")
        let message = try XCTUnwrap(responderOutput(responder, reports: 1, messages: 1).messages.first, responder.outputTail())
        XCTAssertEqual(message["path"] as? String, "direct")
    }

    func testPunchOverTLSToTheRelay() throws {
        let pki = try TestCertificates(in: try directory.appendingPathComponent("pki"))
        let pair = try pki.relay()
        let tlsPort = try Sockets.freePort()
        let relay = try startRelay(config: "tls:\n  listen: [\"127.0.0.1:\(tlsPort)\"]\n  cert: \"\(pair.cert)\"\n  key: \"\(pair.key)\"\n")
        XCTAssertTrue(Deadline.poll(timeout: expectWithin) { relay.log.contains("tls=true") }, "the TLS listener is not up:\n\(relay.logTail())")
        let tls = ["--tls", "--ca", pki.ca]
        let a = Ids.make()
        let b = Ids.make()
        let responder = try startPtpchat(
            ["listen", "--relay", "127.0.0.1:\(tlsPort)", "--node-id", b, "--accept-punch", "--json"] + tls, name: "responder")
        XCTAssertNotNil(responder.waitForStderrLine(containing: "ready \(b)", timeout: 20), responder.outputTail())
        let child = try startPtpchat(
            ["punch", "--relay", "127.0.0.1:\(tlsPort)", "--to", b, "--node-id", a, "--json"] + tls + ["over tls, then direct"], name: "punch")
        XCTAssertEqual(child.waitForExit(timeout: 30), 0, child.outputTail())
        let report = try XCTUnwrap(child.stdoutLines.first.flatMap { JSON.object(Array($0.utf8)) }, child.outputTail())
        XCTAssertEqual(report["result"] as? String, "direct", "\(report)")
        XCTAssertEqual(report["observed"] as? String, "127.0.0.1:\(report["local_port"] as? Int ?? 0)", "discovery over the TLS connection")
        let message = try XCTUnwrap(responderOutput(responder, reports: 1, messages: 1).messages.first, responder.outputTail())
        XCTAssertEqual(message["text"] as? String, "over tls, then direct")
        XCTAssertEqual(message["path"] as? String, "direct")
    }

    func testAPeerThatIsNotOnlineStaysOnTheRelayAndTheMessageIsStored() throws {
        let relay = try startRelay()
        let report = try punch(relay, to: Ids.make(), from: Ids.make(), text: "for later")
        XCTAssertEqual(report["result"] as? String, "relay")
        XCTAssertEqual(report["reason"] as? String, "the peer is not reachable through the relay (NACK unreachable)")
        XCTAssertEqual(report["attempts"] as? Int, 0)
        XCTAssertEqual(report["path"] as? String, "relay")
        XCTAssertEqual(report["stored"] as? Bool, true)
    }

    func testASymmetricNATSeenByTheProbeStaysOnTheRelayWithinTheDeadline() throws {
        let relay = try startRelay()
        let a = Ids.make()
        let b = Ids.make()
        let responder = try startResponder(relay, id: b)
        let probe = try SymmetricProbe()

        let started = Date()
        let report = try punch(relay, to: b, from: a, extra: ["--probe", "127.0.0.1:\(probe.port)"], text: "symmetric here")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "detected and on the relay within 5 s")
        XCTAssertEqual(report["nat"] as? String, "symmetric", "\(report)")
        XCTAssertNotEqual(report["probe_observed"] as? String, report["observed"] as? String)
        XCTAssertEqual(report["result"] as? String, "relay")
        XCTAssertTrue((report["reason"] as? String)?.hasPrefix("symmetric NAT") == true, "\(report)")
        XCTAssertEqual(report["attempts"] as? Int, 0, "not punched")
        XCTAssertEqual(report["path"] as? String, "relay")

        let seen = responderOutput(responder, reports: 0, messages: 1)
        XCTAssertEqual(seen.messages.first?["path"] as? String, "relay", responder.outputTail())
        XCTAssertTrue(seen.reports.isEmpty, "no CONNECT reached the responder: \(seen.reports)")
    }

    func testAResponderBehindASymmetricNATSaysSoAndTheInitiatorDoesNotDial() throws {
        let relay = try startRelay()
        let a = Ids.make()
        let b = Ids.make()
        let probe = try SymmetricProbe()
        let responder = try startResponder(relay, id: b, extra: ["--probe", "127.0.0.1:\(probe.port)"])

        let started = Date()
        let report = try punch(relay, to: b, from: a, text: "to a symmetric peer")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "on the relay at once, not at the deadline")
        XCTAssertEqual(report["peer_nat"] as? String, "symmetric", "\(report)")
        XCTAssertEqual(report["result"] as? String, "relay")
        XCTAssertEqual(report["attempts"] as? Int, 0)
        XCTAssertEqual(report["path"] as? String, "relay")

        let seen = responderOutput(responder, reports: 1, messages: 1)
        let answered = try XCTUnwrap(seen.reports.first, responder.outputTail())
        XCTAssertEqual(answered["nat"] as? String, "symmetric")
        XCTAssertEqual(answered["result"] as? String, "relay")
        XCTAssertEqual(answered["attempts"] as? Int, 0, "a symmetric responder does not dial")
        XCTAssertEqual(seen.messages.first?["path"] as? String, "relay")
    }
}

/// A stand-in for a relay's second address behind a symmetric NAT: it accepts one connection,
/// answers its HELLO with a ROUTING, and answers address discovery with the connection's address
/// but another port, as a NAT that maps per destination would make the relay see it.
final class SymmetricProbe {
    let port: UInt16
    private let listener: Int32
    private let id = Ids.make()

    init() throws {
        port = try Sockets.freePort()
        listener = try Sockets.listening(port: port)
        let listener = listener
        let id = id
        Thread.detachNewThread {
            var pollDescriptor = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&pollDescriptor, 1, 10_000) == 1 else { return }
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let fd = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener, $0, &length) }
            }
            guard fd >= 0 else { return }
            let client = TestClient(descriptor: fd, label: "symmetric probe")
            defer { client.close() }
            guard client.receive(verb: "HELLO", timeout: 5) != nil else { return }
            client.send(
                json: Frames.head(
                    "ROUTING", ttl: 1, flood: false, sender: "probe@\(id)", data: ["nodes": [["node_id": "probe@\(id)", "ttl": 1]]]))
            guard let connect = client.receive(verb: "CONNECT", timeout: 5), let source = connect.data["src_node_id"] as? String else { return }
            let otherPort = UInt16(bigEndian: address.sin_port) == 65535 ? 1 : Int(UInt16(bigEndian: address.sin_port)) + 1
            client.send(
                json: Frames.head(
                    "CONNECT", ttl: 1, flood: false, sender: "probe@\(id)",
                    data: ["src_node_id": source, "dst_node_id": id, "src": "127.0.0.1:\(otherPort)", "dst": NSNull()]))
            _ = client.drain(timeout: 2)
        }
    }

    deinit { Sockets.closeSocket(listener) }
}
