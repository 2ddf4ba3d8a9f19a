#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest

/// PROFILE.md section 10 with real sockets: a client that stops reading while others send to it
/// (outbound buffer soft and hard limits), and limits and timeouts reloaded for open connections.
final class OutboundBufferTests: OpsTestCase {
    /// A small soft limit (the kernel's socket buffers, several MiB on loopback, fill first), roomy
    /// store bounds (everything the slow client misses is stored), by default no ACK timeout during
    /// the test (a short one makes what a closed connection awaited due again soon).
    private static func config(hardLimit: Int = 4_194_304, ackTimeout: Int = 120) -> String {
        """
        limits:
          outbound_buffer_bytes: 65536
          outbound_buffer_max_bytes: \(hardLimit)
          flood_per_second: 1000
          flood_burst: 1000
        timeouts:
          ack: \(ackTimeout)
        store:
          sync: normal
          per_recipient_messages: 100000
          per_recipient_bytes: 1073741824
          per_sender_messages: 100000

        """
    }

    private let bigText = String(repeating: "x", count: 24_000)

    /// Answers the relay sent a sender, by the message id they answer.
    private struct Answers {
        var slowConsumerStored: Set<String> = []
        var unreachableStored: Set<String> = []
        var other: [String: String] = [:]
        var all: Set<String> { slowConsumerStored.union(unreachableStored).union(other.keys) }

        mutating func take(_ frame: [String: Any]) {
            guard let verb = frame.verb, verb == "ACK" || verb == "NACK", let id = frame.dataMessageID?.lowercased() else { return }
            let stored = frame.data["stored"] as? Bool ?? false
            let reason = frame.data["reason"] as? String ?? ""
            if verb == "NACK" && stored && reason == "slow_consumer" {
                slowConsumerStored.insert(id)
            } else if verb == "NACK" && stored && reason == "unreachable" {
                unreachableStored.insert(id)
            } else {
                other[id] = "\(verb) \(reason) stored=\(stored)"
            }
        }
    }

    /// Reads what came for `node` within `timeout` (at least a millisecond: a zero deadline reads nothing).
    private func readAnswers(_ node: Node, into answers: inout Answers, timeout: Double = 0.001) {
        let deadline = Deadline(max(timeout, 0.001))
        while let frame = node.client.receiveFrame(timeout: deadline.remaining) { answers.take(frame.json) }
    }

    /// Seconds from sending a MESSAGE to its ACK, the recipient ACKing it as soon as it arrives.
    private func roundTrip(_ from: Node, _ to: Node, file: StaticString = #filePath, line: UInt = #line) -> Double? {
        let id = Ids.make()
        let started = DispatchTime.now().uptimeNanoseconds
        from.client.send(json: Frames.message(from: from, to: [to.id], id: id))
        guard to.client.receive(timeout: expectWithin, where: { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id }) != nil else {
            XCTFail("\(to.label): message \(id) did not arrive", file: file, line: line)
            return nil
        }
        to.client.send(json: Frames.ack(from: to, acknowledging: id))
        guard let answer = from.client.receive(timeout: expectWithin, where: { self.isAnswer($0, to: id) }), answer.verb == "ACK" else {
            XCTFail("\(from.label): no ACK for \(id)", file: file, line: line)
            return nil
        }
        return Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
    }

    private static func p99(_ samples: [Double]) -> Double {
        let sorted = samples.sorted()
        return sorted[Int((Double(sorted.count - 1) * 0.99).rounded())]
    }

    private func drops(_ relay: LaunchedRelay, _ reason: String) -> Int {
        guard let port = relay.statsPort, let json = try? HTTPProbe.request(port: port, path: "/stats").json else { return -1 }
        return (json["drops"] as? [String: Any])?[reason] as? Int ?? -1
    }

    /// Sends big messages from `sender` to `slow` (which does not read) until the relay answers
    /// with NACK `slow_consumer`, then ten more that must all be answered so: the kernel's buffers
    /// and then the relay's soft limit are full (not only one read burst's output).
    private func fill(_ slow: Node, from sender: Node, sent: inout [String], answers: inout Answers) {
        func sendBig() -> String {
            let id = Ids.make()
            sent.append(id)
            XCTAssertTrue(sender.client.send(json: Frames.message(from: sender, to: [slow.id], id: id, text: bigText)))
            return id
        }
        while sent.count < 3000 {
            _ = sendBig()
            readAnswers(sender, into: &answers)
            guard !answers.slowConsumerStored.isEmpty else { continue }
            let batch = Set((0..<10).map { _ in sendBig() })
            let deferred = Deadline.poll(timeout: expectWithin) {
                self.readAnswers(sender, into: &answers, timeout: 0.05)
                return batch.isSubset(of: answers.slowConsumerStored)
            }
            if deferred {
                print("fill: \(sent.count) messages sent, \(answers.slowConsumerStored.count) answered slow_consumer")
                return
            }
        }
        XCTFail("\(sent.count) messages of 32 kB to a client that does not read: \(answers.slowConsumerStored.count) slow_consumer NACKs")
    }

    /// Reads as `node` (ACKing every MESSAGE) until every id in `expected` arrived.
    private func receiveAll(_ node: Node, _ expected: Set<String>, timeout: Double = 60) -> (messages: Set<String>, joins: Set<String>) {
        var received: Set<String> = []
        var joins: Set<String> = []
        let deadline = Deadline(timeout)
        while !expected.isSubset(of: received), let frame = node.client.receiveFrame(timeout: deadline.remaining) {
            guard let id = frame.json.dataMessageID?.lowercased() else { continue }
            if frame.json.verb == "MESSAGE" {
                received.insert(id)
                node.client.send(json: Frames.ack(from: node, acknowledging: id))
            } else if frame.json.verb == "JOIN" {
                joins.insert(id)
            }
        }
        return (received, joins)
    }

    private func reload(_ relay: LaunchedRelay, _ config: String) throws {
        try relay.writeConfig(config)
        let lines = relay.child.stderrLines.count
        relay.child.signal(SIGHUP)
        XCTAssertNotNil(
            relay.child.waitForStderrLine(containing: "configuration reloaded", after: lines, timeout: expectWithin), "no reload")
    }

    /// The soft limit: the slow client's senders hear `slow_consumer` with `stored: true`, floods to
    /// it are dropped and counted, it gets every message once it reads again, and a well-behaved
    /// pair on the same relay keeps its round-trip latency meanwhile.
    func testSlowConsumerOverTheSoftLimitLosesNothingAndOthersKeepTheirLatency() throws {
        let relay = try launchRelay(config: Self.config(), stats: true)
        try relay.waitUntilListening()
        let slow = try bind(port: relay.port, name: "slow")
        let sender = try bind(port: relay.port, name: "sender")
        let ping = try bind(port: relay.port, name: "ping")
        let pong = try bind(port: relay.port, name: "pong")

        let baseline = (0..<200).compactMap { _ in roundTrip(ping, pong) }
        XCTAssertEqual(baseline.count, 200)

        var sent: [String] = []
        var answers = Answers()
        fill(slow, from: sender, sent: &sent, answers: &answers)

        // Over the soft limit: more messages and floods to the slow client while the pair talks.
        var during: [Double] = []
        var later: [String] = []
        var floods: [String] = []
        for index in 0..<150 {
            let id = Ids.make()
            later.append(id)
            sender.client.send(json: Frames.message(from: sender, to: [slow.id], id: id, text: "small \(index)"))
            if index % 10 == 0 {
                let floodID = Ids.make()
                floods.append(floodID)
                sender.client.send(json: Frames.membership("JOIN", from: sender, id: floodID, headID: Ids.make(), channelID: Ids.make()))
            }
            if let seconds = roundTrip(ping, pong) { during.append(seconds) }
            readAnswers(sender, into: &answers)
        }
        sent += later
        let answered = Deadline.poll(timeout: expectWithin) {
            self.readAnswers(sender, into: &answers, timeout: 0.05)
            return Set(later).isSubset(of: answers.slowConsumerStored)
        }
        XCTAssertTrue(answered, "messages to the slow client not answered slow_consumer/stored: \(Set(later).subtracting(answers.slowConsumerStored).count)")
        XCTAssertTrue(answers.other.isEmpty, "unexpected answers: \(answers.other)")
        XCTAssertTrue(answers.unreachableStored.isEmpty)
        let expectedDrops = answers.slowConsumerStored.count + floods.count
        XCTAssertTrue(
            Deadline.poll(timeout: expectWithin) { self.drops(relay, "slow_consumer") == expectedDrops },
            "drops.slow_consumer \(drops(relay, "slow_consumer")), expected \(answers.slowConsumerStored.count) stored messages + \(floods.count) floods")

        let base = Self.p99(baseline)
        let loaded = Self.p99(during)
        print(String(format: "round trip p99: %.3f ms alone, %.3f ms beside a slow consumer (%d samples)", base * 1000, loaded * 1000, during.count))
        XCTAssertEqual(during.count, 150)
        XCTAssertLessThan(loaded, base * 5 + 0.005, "the well-behaved pair's latency suffered from the slow consumer")

        // The slow client reads again: everything, from its buffer and from the store; no flood
        // sent while it was over the limit.
        let (received, joins) = receiveAll(slow, Set(sent))
        print("the slow client received \(received.count) of \(sent.count) (closed: \(slow.client.isClosed))")
        XCTAssertEqual(Set(sent).subtracting(received).count, 0, "messages lost for the slow client")
        XCTAssertTrue(joins.isDisjoint(with: floods), "a flood reached the client over its soft limit")
        XCTAssertFalse(slow.client.isClosed)
        // And it is an ordinary client again.
        let after = Ids.make()
        sender.client.send(json: Frames.message(from: sender, to: [slow.id], id: after))
        XCTAssertNotNil(slow.client.receive(timeout: expectWithin) { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == after })
    }

    /// The hard limit, lowered by a reload: the slow client is closed at its next flush, what
    /// awaited its ACK is stored, and it gets everything when it comes back.
    func testSlowConsumerOverTheReloadedHardLimitIsClosedAndWhatAwaitedItsAckIsStored() throws {
        let relay = try launchRelay(config: Self.config(ackTimeout: 2), stats: true)
        try relay.waitUntilListening()
        let slow = try bind(port: relay.port, name: "slow")
        let sender = try bind(port: relay.port, name: "sender")
        var sent: [String] = []
        var answers = Answers()
        fill(slow, from: sender, sent: &sent, answers: &answers)
        let dropsBefore = drops(relay, "slow_consumer")

        let reloadLines = relay.child.stderrLines.count
        try reload(relay, Self.config(hardLimit: 65536, ackTimeout: 2))
        XCTAssertNil(
            relay.child.waitForStderrLine(containing: "closing slow consumer", after: reloadLines, timeout: quietPeriod),
            "lowering the hard limit closed a connection by itself")
        let lines = relay.child.stderrLines.count
        // Its next flush: the ACK of a message to itself.
        slow.client.send(json: Frames.message(from: slow, to: [slow.id]))
        XCTAssertNotNil(
            relay.child.waitForStderrLine(containing: "closing slow consumer", after: lines, timeout: expectWithin),
            "over the reloaded hard limit the slow client stays open")
        XCTAssertTrue(slow.client.expectClosed(timeout: expectWithin))
        XCTAssertEqual(drops(relay, "slow_consumer"), dropsBefore + 1)

        // Every message is answered stored: slow_consumer (over the soft limit) or unreachable
        // (awaited its ACK when it was closed).
        let answered = Deadline.poll(timeout: expectWithin) {
            self.readAnswers(sender, into: &answers, timeout: 0.05)
            return Set(sent).isSubset(of: answers.all)
        }
        XCTAssertTrue(answered, "\(Set(sent).subtracting(answers.all).count) of \(sent.count) messages unanswered")
        XCTAssertTrue(answers.other.isEmpty, "unexpected answers: \(answers.other)")
        XCTAssertFalse(answers.unreachableStored.isEmpty, "nothing awaited the closed client's ACK")

        let back = try bind(port: relay.port, name: "slow", id: slow.id)
        let (received, _) = receiveAll(back, Set(sent))
        XCTAssertEqual(Set(sent).subtracting(received).count, 0, "messages lost for the closed client")
    }

    /// `timeouts.idle` lowered by a reload closes an idle open connection within the new bound;
    /// one that keeps sending keepalives stays.
    func testReloadedIdleTimeoutClosesAnIdleOpenConnection() throws {
        let relay = try launchRelay(config: "timeouts:\n  idle: 60\n")
        try relay.waitUntilListening()
        let idle = try bind(port: relay.port, name: "idle")
        let busy = try bind(port: relay.port, name: "busy")

        try relay.writeConfig("timeouts:\n  idle: 1\n")
        let lines = relay.child.stderrLines.count
        relay.child.signal(SIGHUP)
        XCTAssertNotNil(relay.child.waitForStderrLine(containing: "configuration reloaded", after: lines, timeout: expectWithin))
        let reloaded = Date()
        let deadline = Deadline(5)
        while !idle.client.isClosed && !deadline.hasPassed {
            busy.client.sendKeepalive()
            _ = idle.client.expectClosed(timeout: 0.2)
        }
        let elapsed = Date().timeIntervalSince(reloaded)
        XCTAssertTrue(idle.client.isClosed, "an idle connection stayed open 5 s after timeouts.idle became 1 s")
        // Idle since it bound: closed at most the new bound plus two sweeps (1/8 s each) after the
        // reload; a second of slack for a loaded machine.
        XCTAssertLessThan(elapsed, 1 + 2 * 0.125 + 1)
        XCTAssertNotNil(relay.child.waitForStderrLine(containing: "nothing received for 1", after: lines, timeout: expectWithin))
        for _ in 0..<6 {
            busy.client.sendKeepalive()
            XCTAssertFalse(busy.client.expectClosed(timeout: 0.25), "a connection sending keepalives was closed")
        }
    }
}
