import Foundation
import XCTest

/// deploy/grafana/ptpchat-relay.json and deploy/prometheus/alerts.yml query the relay's metrics by
/// name: every `ptpchat_*` name they use must be one a running relay exports (a renamed metric
/// would leave a panel empty and an alert silent). promtool checks their syntax in
/// .ci/check-deploy.sh; this checks the names against the real thing.
final class MonitoringTests: RelayTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let files = ["deploy/grafana/ptpchat-relay.json", "deploy/prometheus/alerts.yml"]

    /// The `ptpchat_*` names in `text` (PromQL inside JSON or YAML).
    static func metricNames(in text: String) -> Set<String> {
        let regex = try! NSRegularExpression(pattern: "ptpchat_[a-zA-Z0-9_]*[a-zA-Z0-9]")
        let range = NSRange(text.startIndex..., in: text)
        return Set(regex.matches(in: text, range: range).compactMap { Range($0.range, in: text).map { String(text[$0]) } })
    }

    func testEveryMetricTheDashboardAndTheAlertsQueryIsExported() throws {
        // A relay with a peer, so that the mesh metrics have their values too.
        let statsPort = try Sockets.freePort()
        let key = "monitoring-test-mesh-key-0123456789"
        let r1 = try startRelay(config: "mesh:\n  key: \"\(key)\"\nstats:\n  listen: \"127.0.0.1:\(statsPort)\"\n")
        let r2 = try startRelay(config: "mesh:\n  key: \"\(key)\"\n  peers: [\"\(r1.endpoint)\"]\n")
        _ = try bind(r1, name: "alice")
        _ = try bind(r2, name: "bob")
        var peers = 0
        _ = Deadline.poll(timeout: 10, interval: 0.05) {
            peers = ((try? HTTPProbe.request(port: statsPort, path: "/stats"))?.json?["connections"] as? [String: Any])?["peers"] as? Int ?? 0
            return peers == 1
        }
        XCTAssertEqual(peers, 1, "the peer relay did not come up")

        let metrics = try PrometheusText(parsing: try HTTPProbe.request(port: statsPort, path: "/metrics").text)
        let exported = Set(metrics.samples.map(\.name))
        XCTAssertEqual(metrics.value("ptpchat_mesh_peers"), 1)
        XCTAssertEqual(metrics.value("ptpchat_ready"), 1, "a serving relay is ready")
        XCTAssertGreaterThan(metrics.value("ptpchat_store_max_bytes") ?? 0, 0)
        XCTAssertEqual(metrics.value("ptpchat_mesh_peers_connecting"), 0)

        var used: Set<String> = []
        for file in Self.files {
            let text = try String(contentsOf: Self.repository.appendingPathComponent(file), encoding: .utf8)
            let names = Self.metricNames(in: text)
            XCTAssertGreaterThan(names.count, 3, "\(file) queries almost nothing: \(names.sorted())")
            for name in names.sorted() where !exported.contains(name) {
                XCTFail("\(file) queries \(name), which the relay does not export; it exports \(exported.sorted())")
            }
            used.formUnion(names)
        }
        // The five alerts of issue 12 each have their metric.
        for name in ["ptpchat_ready", "ptpchat_drops_total", "ptpchat_store_bytes", "ptpchat_store_max_bytes", "ptpchat_mesh_peers"] {
            XCTAssertTrue(used.contains(name), "nothing queries \(name)")
        }
        print("monitoring: \(used.count) metric names queried, all among the \(exported.count) exported")
    }

    /// The check above can fail: a name the relay does not export is found.
    func testTheNameCheckFindsAnUnknownName() {
        let names = Self.metricNames(in: #"{"expr": "sum(rate(ptpchat_messages_relayd_total{instance=~\"$instance\"}[5m]))"}"#)
        XCTAssertEqual(names, ["ptpchat_messages_relayd_total"])
    }
}
