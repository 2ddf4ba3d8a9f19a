import Foundation
import PTPBench
import XCTest

final class BenchSummaryTests: XCTestCase {
    private let shape = BenchShape(connections: 4, pattern: .pair, window: 16, payload: 64, duration: 10, messages: 1_000_000, warmup: 1)

    private func summary(counters: BenchCounters, interrupted: Bool = false) -> BenchSummary {
        var delivery = LatencyHistogram()
        var ack = LatencyHistogram()
        for value in 1...1000 {
            delivery.record(UInt64(value) * 1000)
            ack.record(UInt64(value) * 2000)
        }
        return BenchSummary(
            relay: "127.0.0.1:9001", shape: shape, threads: 2, counters: counters, delivery: delivery, ack: ack, sendSeconds: 5,
            windowSeconds: 4, interrupted: interrupted)
    }

    func testPatternsMatchRelayLoad() {
        XCTAssertEqual((0..<5).map { BenchPattern.pair.peer(of: $0, count: 5) }, [1, 0, 3, 2, nil])
        XCTAssertEqual((0..<4).map { BenchPattern.oneway.peer(of: $0, count: 4) }, [1, nil, 3, nil])
        XCTAssertEqual((0..<4).map { BenchPattern.oneway.sender(to: $0, count: 4) }, [nil, 0, nil, 2])
        XCTAssertEqual((0..<3).map { BenchPattern.ring.peer(of: $0, count: 3) }, [1, 2, 0])
        XCTAssertEqual((0..<3).map { BenchPattern.ring.sender(to: $0, count: 3) }, [2, 0, 1])
        XCTAssertEqual(BenchPattern.pair.senderCount(of: 5), 4)
        XCTAssertEqual(BenchPattern.oneway.senderCount(of: 4), 2)
    }

    func testBudgetsAddUpToTheMessages() {
        for (messages, senders) in [(10 as UInt64, 3), (1, 4), (1_000_000, 7), (5, 5)] {
            let budgets = (0..<senders).map { BenchShape.budget(messages: messages, senders: senders, rank: $0) }
            XCTAssertEqual(budgets.reduce(0, +), messages)
            XCTAssertLessThanOrEqual(budgets.max()! - budgets.min()!, 1)
        }
    }

    func testRatesAndLosses() {
        var counters = BenchCounters()
        counters.sent = 1000
        counters.delivered = 990
        counters.acked = 980
        counters.nacked = 5
        counters.deliveredInWindow = 800
        counters.ackedInWindow = 600
        counters.payloadBytesInWindow = 800 * 64
        let result = summary(counters: counters)
        XCTAssertEqual(result.messagesPerSecond, 200)  // 800 in a 4 s window
        XCTAssertEqual(result.acksPerSecond, 150)
        XCTAssertEqual(result.payloadMegabytesPerSecond, 0.0128, accuracy: 1e-9)
        XCTAssertEqual(result.lost, 10)
        XCTAssertEqual(result.unacked, 20)
        XCTAssertEqual(result.errors, 5)
        XCTAssertFalse(result.isClean)

        var clean = BenchCounters()
        clean.sent = 10
        clean.delivered = 10
        clean.acked = 10
        XCTAssertTrue(summary(counters: clean).isClean)
        // More delivered than sent (a duplicate) never makes a negative loss.
        clean.delivered = 11
        XCTAssertEqual(summary(counters: clean).lost, 0)
    }

    func testCountersAdd() {
        var total = BenchCounters()
        var part = BenchCounters()
        part.sent = 3
        part.acked = 2
        part.connectionErrors = 1
        total += part
        total += part
        XCTAssertEqual(total.sent, 6)
        XCTAssertEqual(total.acked, 4)
        XCTAssertEqual(total.connectionErrors, 2)
    }

    func testTable() {
        var counters = BenchCounters()
        counters.sent = 1_234_567
        counters.delivered = 1_234_567
        counters.acked = 1_234_567
        counters.deliveredInWindow = 1_000_000
        let table = summary(counters: counters, interrupted: true).table()
        XCTAssertTrue(table.contains("pattern pair, 4 connections, window 16, payload 64 B, 2 threads, spec head"), table)
        XCTAssertTrue(table.contains("interrupted"), table)
        let rows = table.split(separator: "\n").map(String.init)
        XCTAssertEqual(rows.first { $0.hasPrefix("msgs/s") }?.split(separator: " ").last, "250,000")
        XCTAssertEqual(rows.first { $0.hasPrefix("sent") }?.split(separator: " ").last, "1,234,567")
        XCTAssertEqual(rows.first { $0.hasPrefix("lost") }?.split(separator: " ").last, "0")
        // p50 p90 p99 p99.9 max mean of 1..1000 µs, one decimal, in increasing order.
        let delivery = rows.first { $0.hasPrefix("send → delivery") }!.split(separator: " ").compactMap { Double($0) }
        XCTAssertEqual(delivery.count, 6)
        XCTAssertEqual(delivery[0], 500, accuracy: 0.6)
        XCTAssertEqual(delivery[2], 990, accuracy: 1)
        XCTAssertEqual(Array(delivery[0..<5]), delivery[0..<5].sorted())
    }

    func testJSON() throws {
        var counters = BenchCounters()
        counters.sent = 10
        counters.delivered = 9
        counters.acked = 8
        counters.deliveredInWindow = 8
        let text = summary(counters: counters).json()
        XCTAssertTrue(text.hasSuffix("}\n"))
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(json["msgs_per_s"] as? Double, 2)
        XCTAssertEqual(json["lost"] as? Int, 1)
        XCTAssertEqual(json["unacked"] as? Int, 2)
        XCTAssertEqual(json["pattern"] as? String, "pair")
        XCTAssertEqual(json["head"] as? String, "spec")
        XCTAssertEqual(json["interrupted"] as? Bool, false)
        let latency = try XCTUnwrap(json["latency"] as? [String: Any])
        let values = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"].compactMap { latency[$0] as? Double }
        XCTAssertEqual(values.count, 5)
        XCTAssertEqual(values, values.sorted())
        XCTAssertEqual(values[0], 500, accuracy: 0.6)
    }

    func testGroupingAndProgress() {
        XCTAssertEqual(BenchSummary.grouped(0), "0")
        XCTAssertEqual(BenchSummary.grouped(999), "999")
        XCTAssertEqual(BenchSummary.grouped(1000), "1,000")
        XCTAssertEqual(BenchSummary.grouped(12_345_678), "12,345,678")
        let half = ProgressLine.render(elapsed: 5, duration: 10, sent: 10, limit: 1_000_000, acked: 5000, width: 10)
        XCTAssertTrue(half.hasPrefix("[#####.....]  50%"), half)
        XCTAssertTrue(half.hasSuffix("1,000 acks/s"), half)
        // The message limit is further along than the clock.
        XCTAssertTrue(ProgressLine.render(elapsed: 1, duration: 10, sent: 900, limit: 1000, acked: 0, width: 10).hasPrefix("[#########.]  90%"))
    }
}
