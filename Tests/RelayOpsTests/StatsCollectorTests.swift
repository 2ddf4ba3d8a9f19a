import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PTPProtocol
import XCTest

@testable import RelayCore
@testable import RelayOps

final class StatsCollectorTests: XCTestCase {
    private func json(_ bytes: [UInt8]) throws -> [String: Any] {
        XCTAssertEqual(bytes.last, 0x0A, "the JSON ends with a newline")
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    func testStatsJSONHasEveryField() async throws {
        let fake = FakeRelay()
        fake.change {
            $0.counters = FakeRelay.busyCounters()
            $0.storeMaxBytes = 4096
            $0.eventLoops = [
                EventLoopLoad(clients: 2, handshaking: 1, framesIn: 30, commandsFromOtherLoops: 7),
                EventLoopLoad(clients: 1, handshaking: 0, framesIn: 10, commandsFromOtherLoops: 9),
            ]
        }
        let readiness = Readiness()
        readiness.set(.serving)
        let collector = StatsCollector(readiness: readiness, source: fake.source())
        let body = try json(try await collector.statsJSON())

        XCTAssertEqual(body["node_id"] as? String, FakeRelay.nodeID.description)
        XCTAssertEqual(body["name"] as? String, "relay")
        XCTAssertEqual(body["state"] as? String, "serving")
        XCTAssertEqual(body["uptime_s"] as? Double, 12.3)
        let connections = try XCTUnwrap(body["connections"] as? [String: Any])
        XCTAssertEqual(connections["clients"] as? Int, 3)
        XCTAssertEqual(connections["handshaking"] as? Int, 1)
        XCTAssertEqual(connections["peers"] as? Int, 0)
        XCTAssertEqual(connections["accepted"] as? Int, 6)
        XCTAssertEqual(connections["closed"] as? Int, 2)
        XCTAssertEqual(body["nodes_known"] as? Int, 3)
        XCTAssertEqual(
            body["event_loops"] as? [[String: Int]],
            [
                ["clients": 2, "handshaking": 1, "frames_in": 30, "commands_from_other_loops": 7],
                ["clients": 1, "handshaking": 0, "frames_in": 10, "commands_from_other_loops": 9],
            ], "one entry per event loop, in order")
        let relayed = try XCTUnwrap(body["relayed"] as? [String: [String: Int]])
        XCTAssertEqual(relayed, ["MESSAGE": ["messages": 4, "bytes": 1000], "JOIN": ["messages": 2, "bytes": 200]], "verbs never relayed are left out")
        XCTAssertEqual(body["messages_relayed"] as? Int, 6)
        XCTAssertEqual(body["frames"] as? [String: Int], ["in": 40, "out": 50])
        XCTAssertEqual(body["bytes"] as? [String: Int], ["in": 4000, "out": 5000])
        XCTAssertEqual(body["acks"] as? [String: Int], ["sent": 3, "received": 4])
        let nacks = try XCTUnwrap(body["nacks"] as? [String: Int])
        XCTAssertEqual(Set(nacks.keys), Set(NackReason.allCases.map(\.rawValue)), "every NACK reason, zero or not")
        XCTAssertEqual(nacks["invalid"], 2)
        XCTAssertEqual(nacks["unreachable"], 1)
        XCTAssertEqual(nacks["queue_full"], 0)
        let drops = try XCTUnwrap(body["drops"] as? [String: Int])
        XCTAssertEqual(Set(drops.keys), Set(DropReason.allCases.map(\.rawValue)), "every drop reason, zero or not")
        XCTAssertEqual(drops["invalid"], 2)
        XCTAssertEqual(drops["slow_consumer"], 1)
        XCTAssertEqual(drops["malformed"], 0)
        XCTAssertEqual(body["store"] as? [String: Int], ["messages": 5, "bytes": 512, "max_bytes": 4096, "stored": 5, "sent": 1, "delivered": 1])
        XCTAssertEqual(body["version"] as? String, ProjectVersion.number)
        let rates = try XCTUnwrap(body["rates_10s"] as? [String: Double])
        XCTAssertEqual(
            Set(rates.keys), ["messages_relayed_per_s", "bytes_relayed_per_s", "frames_in_per_s", "acks_sent_per_s", "nacks_sent_per_s"])
        XCTAssertTrue(rates.values.allSatisfy { $0 == 0 }, "one sample gives no rate: \(rates)")
    }

    /// The gauges the alert rules need: readiness, the store's capacity, unconnected `mesh.peers`
    /// entries; the addresses banned now; and the build's version as a label.
    func testMetricsForTheAlertsFollowReadinessStoreCapacityAndPeers() async throws {
        let fake = FakeRelay()
        let readiness = Readiness()
        let collector = StatsCollector(readiness: readiness, source: fake.source())
        fake.change { snapshot in
            snapshot.storeMaxBytes = 1_000_000
            snapshot.bannedAddresses = 3
            snapshot.mesh.peers = [
                MeshStatus.Peer(relayID: nil, name: "r2", address: "127.0.0.1:9101", state: "up"),
                MeshStatus.Peer(relayID: nil, name: nil, address: "127.0.0.1:9102", state: "connecting"),
                MeshStatus.Peer(relayID: nil, name: nil, address: "127.0.0.1:9103", state: "connecting"),
            ]
        }
        var series = prometheusSeries(String(decoding: try await collector.prometheusText(), as: UTF8.self))
        XCTAssertEqual(series["ptpchat_ready"], 0, "starting is not ready")
        XCTAssertEqual(series["ptpchat_store_max_bytes"], 1_000_000)
        XCTAssertEqual(series["ptpchat_banned_addresses"], 3)
        XCTAssertEqual(series["ptpchat_mesh_peers"], 1)
        XCTAssertEqual(series["ptpchat_mesh_peers_connecting"], 2)
        XCTAssertEqual(series[#"ptpchat_build_info{version="\#(ProjectVersion.number)"}"#], 1, "\(series)")
        readiness.set(.serving)
        fake.change { $0.mesh.peers.removeLast() }
        series = prometheusSeries(String(decoding: try await collector.prometheusText(), as: UTF8.self))
        XCTAssertEqual(series["ptpchat_ready"], 1, "serving is ready")
        XCTAssertEqual(series["ptpchat_mesh_peers_connecting"], 1)
        readiness.set(.stopping)
        series = prometheusSeries(String(decoding: try await collector.prometheusText(), as: UTF8.self))
        XCTAssertEqual(series["ptpchat_ready"], 0, "stopping is not ready")
    }

    func testStateFollowsReadiness() async throws {
        let readiness = Readiness()
        let collector = StatsCollector(readiness: readiness, source: FakeRelay().source())
        for state in [Readiness.State.starting, .serving, .reloading, .stopping] {
            readiness.set(state)
            let body = try json(try await collector.statsJSON())
            XCTAssertEqual(body["state"] as? String, state.rawValue)
        }
    }

    func testRatesAreOverTheSamplesOfTheLastTenSeconds() async throws {
        let fake = FakeRelay()
        let collector = StatsCollector(readiness: Readiness(), source: fake.source())
        try await collector.sample()
        let sampledAt = NIODeadline.now()
        fake.change { snapshot in
            for _ in 0..<20 { snapshot.counters.relayed(.message, bytes: 100) }
            snapshot.counters.framesIn = 40
        }
        let later = fake.snapshot
        let rates = collector.rates(for: later, at: sampledAt + .seconds(2))
        XCTAssertEqual(rates["messages_relayed_per_s"] ?? 0, 10, accuracy: 0.2, "20 messages in 2 s: \(rates)")
        XCTAssertEqual(rates["bytes_relayed_per_s"] ?? 0, 1000, accuracy: 10, "\(rates)")
        XCTAssertEqual(rates["frames_in_per_s"] ?? 0, 20, accuracy: 0.5, "\(rates)")
        XCTAssertEqual(rates["acks_sent_per_s"], 0)
        // Samples older than the window no longer count.
        let stale = collector.rates(for: later, at: sampledAt + .seconds(30))
        XCTAssertTrue(stale.values.allSatisfy { $0 == 0 }, "a sample 30 s old was used for a 10 s rate: \(stale)")
    }

    func testMetricsCarryTheCountersOnceWithBoundedLabels() async throws {
        let fake = FakeRelay()
        fake.change { $0.counters = FakeRelay.busyCounters() }
        let collector = StatsCollector(readiness: Readiness(), source: fake.source())
        let first = String(decoding: try await collector.prometheusText(), as: UTF8.self)
        var series = prometheusSeries(first)
        XCTAssertEqual(series[#"ptpchat_messages_relayed_total{verb="MESSAGE"}"#], 4, first)
        XCTAssertEqual(series[#"ptpchat_bytes_relayed_total{verb="MESSAGE"}"#], 1000)
        XCTAssertEqual(series[#"ptpchat_messages_relayed_total{verb="JOIN"}"#], 2)
        XCTAssertEqual(series[#"ptpchat_drops_total{reason="invalid"}"#], 2)
        XCTAssertEqual(series[#"ptpchat_drops_total{reason="slow_consumer"}"#], 1)
        XCTAssertEqual(series[#"ptpchat_nacks_sent_total{reason="invalid"}"#], 2)
        XCTAssertEqual(series[#"ptpchat_connections{kind="client"}"#], 3)
        XCTAssertEqual(series[#"ptpchat_connections{kind="handshaking"}"#], 1)
        XCTAssertEqual(series["ptpchat_nodes_known"], 3)
        XCTAssertEqual(series["ptpchat_store_messages"], 5)
        XCTAssertEqual(series["ptpchat_store_bytes"], 512)
        XCTAssertEqual(series["ptpchat_acks_sent_total"], 3)
        XCTAssertEqual(series["ptpchat_connections_accepted_total"], 6)
        XCTAssertFalse(first.lowercased().contains(FakeRelay.nodeID.description.lowercased()), "the node id is in the metrics")
        for key in series.keys {
            XCTAssertTrue(key.hasPrefix("ptpchat_"), key)
        }

        // A scrape without new traffic counts nothing twice; new traffic adds exactly its amount.
        series = prometheusSeries(String(decoding: try await collector.prometheusText(), as: UTF8.self))
        XCTAssertEqual(series[#"ptpchat_messages_relayed_total{verb="MESSAGE"}"#], 4)
        fake.change { snapshot in
            snapshot.counters.relayed(.message, bytes: 10)
            snapshot.counters.drop(.invalid)
            snapshot.clients = 1
        }
        series = prometheusSeries(String(decoding: try await collector.prometheusText(), as: UTF8.self))
        XCTAssertEqual(series[#"ptpchat_messages_relayed_total{verb="MESSAGE"}"#], 5)
        XCTAssertEqual(series[#"ptpchat_bytes_relayed_total{verb="MESSAGE"}"#], 1010)
        XCTAssertEqual(series[#"ptpchat_drops_total{reason="invalid"}"#], 3)
        XCTAssertEqual(series[#"ptpchat_connections{kind="client"}"#], 1, "a gauge takes the current value")
    }

    /// The STATUS= reporter samples every second and every scrape samples too: two samples can
    /// overlap, and the one that read the relay first may finish last. The exported counters must
    /// still equal the relay's, never count a difference twice.
    func testOverlappingSamplesNeverCountTwice() async throws {
        let fake = FakeRelay()
        fake.change { $0.counters.relayed(.message, bytes: 100) }
        let early = fake.snapshot
        let calls = NIOLockedValueBox(0)
        let (gate, release) = AsyncStream.makeStream(of: Void.self)
        let collector = StatsCollector(readiness: Readiness()) {
            let call = calls.withLockedValue { value -> Int in
                value += 1
                return value
            }
            guard call == 1 else { return fake.snapshot }
            // Read early, delivered late (a slow store query after the shards answered).
            var iterator = gate.makeAsyncIterator()
            _ = await iterator.next()
            return early
        }
        let slow = Task { try await collector.sample() }
        for _ in 0..<2000 where calls.withLockedValue({ $0 }) < 1 {
            try await Task.sleep(nanoseconds: 1_000_000)
        }
        XCTAssertEqual(calls.withLockedValue { $0 }, 1, "the slow sample did not start")
        fake.change { $0.counters.relayed(.message, bytes: 100) }
        try await collector.sample()
        release.yield(())
        _ = try await slow.value

        let text = String(decoding: try await collector.prometheusText(), as: UTF8.self)
        let series = prometheusSeries(text)
        XCTAssertEqual(series[#"ptpchat_messages_relayed_total{verb="MESSAGE"}"#], 2, "2 MESSAGEs relayed; /metrics says otherwise")
        XCTAssertEqual(series[#"ptpchat_bytes_relayed_total{verb="MESSAGE"}"#], 200)
        let json = try json(try await collector.statsJSON())
        XCTAssertEqual(json["messages_relayed"] as? Int, 2)
    }

    func testEveryMetricLineIsWellFormed() async throws {
        let fake = FakeRelay()
        fake.change { $0.counters = FakeRelay.busyCounters() }
        let collector = StatsCollector(readiness: Readiness(), source: fake.source())
        let text = String(decoding: try await collector.prometheusText(), as: UTF8.self)
        XCTAssertTrue(text.hasSuffix("\n"))
        // Label values: verbs, reasons, kinds, directions, and the version (`ptpchat_build_info`).
        let sample = #"^ptpchat_[a-z_]+(\{[a-z_]+="[A-Za-z0-9_.]+"(,[a-z_]+="[A-Za-z0-9_.]+")*\})? -?[0-9.e+]+$"#
        var typed = Set<String>()
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                XCTAssertEqual(parts.count, 4, String(line))
                XCTAssertTrue(["counter", "gauge"].contains(parts.last ?? ""), String(line))
                XCTAssertTrue(typed.insert(String(parts[2])).inserted, "a second TYPE line: \(line)")
            } else if line.hasPrefix("#") {
                continue
            } else {
                XCTAssertNotNil(line.range(of: sample, options: .regularExpression), "not a sample line: \(line)")
            }
        }
        XCTAssertTrue(typed.contains("ptpchat_drops_total"))
    }
}
