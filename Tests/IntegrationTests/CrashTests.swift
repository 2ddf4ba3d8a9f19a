import Foundation
import PTPProtocol
import XCTest

/// PROFILE.md section 6: "A restart, including `kill -9`, loses no message that was ACKed or NACKed
/// `stored: true`." Several senders load the relay with messages for recipients that are offline;
/// the relay is killed with SIGKILL at random moments and restarted on the same data directory;
/// at the end the recipients connect and must get every acknowledged message exactly once.
///
/// The schedule is random; the seed is printed and can be replayed with `PTPCHAT_CRASH_SEED=N`.
final class CrashTests: RelayTestCase {
    /// Rounds of load then SIGKILL, with the `store.sync` of each.
    let rounds: [String] = ["full", "full", "normal", "full", "full"]
    let senderCount = 4
    let recipientCount = 6
    /// Messages a sender may have unanswered at once.
    let window = 32
    /// A safety bound on the messages of one round (the load time bounds it first).
    let maxMessagesPerRound = 20_000

    private struct Sent {
        var sender: Int
        /// Position in the sender's sequence over the whole test (for the order check).
        var sequence: Int
        var round: Int
        var recipients: [String]
    }

    /// What a sender was told about one (message, recipient).
    private enum Answer: Equatable {
        case stored
        case acked
        case refused(String)
    }

    private func config(sync: String) -> String {
        """
        store:
          sync: \(sync)
          per_recipient_messages: 1000000
          per_recipient_bytes: 1000000000
          per_sender_messages: 1000000
        """
    }

    func testKill9UnderLoadLosesAndDuplicatesNoAcknowledgedMessage() throws {
        let started = Date()
        let seed = ProcessInfo.processInfo.environment["PTPCHAT_CRASH_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64(UInt32.max))
        print("crash test seed: \(seed) (replay with PTPCHAT_CRASH_SEED=\(seed))")
        var random = SeededRandom(seed: seed)

        let dataDirectory = try directory.appendingPathComponent("data")
        let relayID = Ids.make()
        let senderIDs = (0..<senderCount).map { _ in Ids.make() }
        let recipientIDs = (0..<recipientCount).map { _ in Ids.make() }

        var sent: [String: Sent] = [:]
        var answers: [String: [String: Answer]] = [:]  // msg id -> recipient -> answer
        var sequences = Array(repeating: 0, count: senderCount)
        var roundSummaries: [String] = []

        for (round, sync) in rounds.enumerated() {
            let relay = try startRelay(
                config: config(sync: sync), arguments: ["--log-level", "info"], dataDirectory: dataDirectory, nodeID: relayID)
            let senders = try senderIDs.enumerated().map { index, id in try bind(relay, name: "sender\(index)", id: id) }
            var unanswered: [[String: Set<String>]] = Array(repeating: [:], count: senderCount)
            let loadTime = Double.random(in: 0.2...1.5, using: &random)
            let killAt = Date(timeIntervalSinceNow: loadTime)
            var roundSent = 0

            func handle(_ frame: [String: Any], sender: Int) {
                guard frame.verb == "NACK" || frame.verb == "ACK", let id = frame.dataMessageID?.lowercased(),
                    let message = sent[id], message.sender == sender
                else { return }
                var named = frame.recipientIDs
                if named.isEmpty { named = message.recipients }
                let answer: Answer
                if frame.verb == "ACK" {
                    answer = .acked
                    named = message.recipients
                } else if frame.data["stored"] as? Bool == true {
                    answer = .stored
                } else {
                    answer = .refused(frame.data["reason"] as? String ?? "?")
                }
                for recipient in named {
                    if let earlier = answers[id]?[recipient], earlier != answer {
                        XCTFail("\(id) for \(recipient): answered \(earlier), then \(answer)")
                    }
                    answers[id, default: [:]][recipient] = answer
                    unanswered[sender][id]?.remove(recipient)
                }
                if unanswered[sender][id]?.isEmpty == true { unanswered[sender][id] = nil }
            }

            while roundSent < maxMessagesPerRound {
                for (index, sender) in senders.enumerated() {
                    while unanswered[index].count < window && roundSent < maxMessagesPerRound {
                        let id = Ids.make()
                        var targets = [recipientIDs[Int.random(in: 0..<recipientCount, using: &random)]]
                        if Int.random(in: 0..<4, using: &random) == 0 {
                            targets.append(recipientIDs.filter { $0 != targets[0] }.randomElement(using: &random)!)
                        }
                        sent[id] = Sent(sender: index, sequence: sequences[index], round: round, recipients: targets)
                        sequences[index] += 1
                        unanswered[index][id] = Set(targets)
                        roundSent += 1
                        sender.client.send(json: Frames.message(from: sender, to: targets, id: id, text: "r\(round) #\(sequences[index])"))
                    }
                }
                // Kill right after a burst, so that messages are in every stage: unread, being
                // committed, committed but not yet answered; a random delay of up to 3 ms moves the
                // kill within the relay's commit cycle (a 2 ms group commit, then fsync).
                if Date() >= killAt {
                    usleep(UInt32.random(in: 0...3000, using: &random))
                    break
                }
                for (index, sender) in senders.enumerated() {
                    while let frame = sender.client.receiveFrame(timeout: 0.0005) { handle(frame.json, sender: index) }
                }
            }
            XCTAssertTrue(relay.kill9(), "round \(round): the relay did not die")
            // Answers already on the way before the kill still count.
            for (index, sender) in senders.enumerated() {
                while let frame = sender.client.receiveFrame(timeout: 0.2) { handle(frame.json, sender: index) }
                sender.client.close()
            }
            let open = unanswered.reduce(0) { $0 + $1.count }
            roundSummaries.append(
                "round \(round) (sync \(sync)): \(String(format: "%.2f", loadTime)) s of load, \(roundSent) messages sent, \(open) unanswered at the kill")
        }

        // The recipients come; everything stored goes out to them.
        let deliveryStart = Date()
        let relay = try startRelay(config: config(sync: "full"), arguments: ["--log-level", "info"], dataDirectory: dataDirectory, nodeID: relayID)
        let recipients = try recipientIDs.enumerated().map { index, id in try bind(relay, name: "recipient\(index)", id: id) }
        var deliveries: [String: [String: Int]] = [:]  // recipient -> msg id -> times
        var order: [String: [String]] = [:]  // recipient -> msg ids in delivery order
        var lastDelivery = Date()
        var storeEmptyAt: Date?
        let deadline = Deadline(40)
        while !deadline.hasPassed {
            var got = false
            for recipient in recipients {
                var acks: [UInt8] = []
                while let frame = recipient.client.receiveFrame(timeout: 0.0005) {
                    guard frame.json.verb == "MESSAGE", let id = frame.json.dataMessageID?.lowercased() else { continue }
                    deliveries[recipient.id, default: [:]][id, default: 0] += 1
                    order[recipient.id, default: []].append(id)
                    let ack = JSON.data(Frames.ack(from: recipient, acknowledging: id))
                    acks += TestClient.lengthPrefix(ack.count) + ack
                    got = true
                }
                if !acks.isEmpty { recipient.client.sendRaw(acks) }
            }
            if got {
                lastDelivery = Date()
                storeEmptyAt = nil
                continue
            }
            let quiet = Date().timeIntervalSince(lastDelivery)
            if let storeEmptyAt {
                // Empty store, and a further while without any (duplicate) delivery: done.
                if Date().timeIntervalSince(storeEmptyAt) > 1.5 { break }
            } else if quiet > 0.5 {
                if storeStats(dataDirectory)?.messages == 0 { storeEmptyAt = Date() }
            }
        }
        let deliveryTime = Date().timeIntervalSince(deliveryStart)

        // Check.
        var mustArrive = 0
        var lost: [String] = []
        var refusedButDelivered: [String] = []
        var unansweredDelivered = 0
        var unansweredTotal = 0
        for (id, message) in sent {
            for recipient in message.recipients {
                let times = deliveries[recipient]?[id] ?? 0
                switch answers[id]?[recipient] {
                case .stored?, .acked?:
                    mustArrive += 1
                    if times == 0 {
                        lost.append("\(id) for \(recipient.prefix(8)) (round \(message.round), sync \(rounds[message.round]), \(answers[id]![recipient]!))")
                    }
                case .refused(let reason)?:
                    if times > 0 { refusedButDelivered.append("\(id) (\(reason))") }
                case nil:
                    unansweredTotal += 1
                    if times > 0 { unansweredDelivered += 1 }
                }
            }
        }
        let duplicates = deliveries.flatMap { recipient, counts in
            counts.filter { $0.value > 1 }.map { "\($0.key) x\($0.value) to \(recipient.prefix(8))" }
        }
        let strangers = deliveries.flatMap { recipient, counts in
            counts.keys.filter { sent[$0]?.recipients.contains(recipient) != true }.map { "\($0) to \(recipient.prefix(8))" }
        }
        // Per sender, a recipient gets the messages in the order they were sent.
        var outOfOrder: [String] = []
        for (recipient, ids) in order {
            var last = Array(repeating: -1, count: senderCount)
            for id in ids {
                guard let message = sent[id] else { continue }
                if message.sequence < last[message.sender] {
                    outOfOrder.append("\(id) (sender \(message.sender) #\(message.sequence) after #\(last[message.sender])) to \(recipient.prefix(8))")
                }
                last[message.sender] = max(last[message.sender], message.sequence)
            }
        }
        let refusedCount = answers.values.reduce(0) { $0 + $1.values.filter { if case .refused = $0 { true } else { false } }.count }
        let remaining = storeStats(dataDirectory)?.messages

        let summary = roundSummaries.joined(separator: "\n") + "\n"
            + "sent \(sent.count) messages (\(sent.values.reduce(0) { $0 + $1.recipients.count }) deliveries due); "
            + "acknowledged (ACK or NACK stored:true) \(mustArrive), refused \(refusedCount), unanswered \(unansweredTotal) "
            + "of which delivered \(unansweredDelivered); delivered \(deliveries.values.reduce(0) { $0 + $1.count }) distinct "
            + "in \(String(format: "%.1f", deliveryTime)) s; left in the store \(remaining.map(String.init) ?? "?"); "
            + "whole test \(String(format: "%.1f", Date().timeIntervalSince(started))) s"
        print(summary)

        XCTAssertGreaterThan(mustArrive, 100, "test premise: the load produced few acknowledged messages\n\(summary)")
        XCTAssertTrue(lost.isEmpty, "\(lost.count) acknowledged message(s) never delivered (seed \(seed)): \(lost.prefix(10))\n\(summary)")
        XCTAssertTrue(duplicates.isEmpty, "\(duplicates.count) message(s) delivered more than once (seed \(seed)): \(duplicates.prefix(10))\n\(summary)")
        XCTAssertTrue(refusedButDelivered.isEmpty, "NACKed stored:false yet delivered: \(refusedButDelivered.prefix(10))")
        XCTAssertTrue(strangers.isEmpty, "delivered to a node it was not for: \(strangers.prefix(10))")
        XCTAssertTrue(outOfOrder.isEmpty, "\(outOfOrder.count) message(s) out of their sender's order: \(outOfOrder.prefix(10))")
        XCTAssertEqual(remaining, 0, "messages left in the store after every recipient ACKed everything\n\(summary)")
    }
}
