import Foundation
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import PTPProtocol
import Prometheus
import RelayCore

/// Turns relay snapshots into the stats endpoint's JSON and into Prometheus metrics (swift-metrics
/// with the swift-prometheus backend). Labels are bounded: verbs, reasons, connection kinds; never
/// a node id. Rates are over the last 10 s of samples (one a second).
public final class StatsCollector: Sendable {
    public typealias Source = @Sendable () async throws -> RelaySnapshot

    private struct Sample {
        var at: NIODeadline
        var snapshot: RelaySnapshot
    }

    private struct State {
        var samples: [Sample] = []
        var exported: RelayCounters?
    }

    private let source: Source
    private let routeSource: @Sendable () -> [RouteRow]
    private let readiness: Readiness
    public let registry: PrometheusCollectorRegistry
    private let metrics: RelayMetrics
    private let state = NIOLockedValueBox(State())
    public static let rateWindow: Double = 10

    /// `routes` gives the route table for `/routes` (none by default).
    public init(readiness: Readiness, routes: @escaping @Sendable () -> [RouteRow] = { [] }, source: @escaping Source) {
        self.source = source
        self.routeSource = routes
        self.readiness = readiness
        self.registry = PrometheusCollectorRegistry()
        self.metrics = RelayMetrics(factory: PrometheusMetricsFactory(registry: registry))
    }

    /// Takes a snapshot, keeps it for the rates, and brings the metrics up to date.
    @discardableResult
    public func sample() async throws -> RelaySnapshot {
        let snapshot = try await source()
        let now = NIODeadline.now()
        state.withLockedValue { state in
            state.samples.append(Sample(at: now, snapshot: snapshot))
            let horizon = now - .nanoseconds(Int64((Self.rateWindow + 1.5) * 1e9))
            state.samples.removeAll { $0.at < horizon }
            // Samples can overlap (scrapes and the STATUS reporter): counters only ever move up
            // by what no earlier export has counted.
            state.exported = metrics.update(snapshot, ready: readiness.isReady, since: state.exported)
        }
        return snapshot
    }

    /// Per-second rates between the oldest sample within the window and `snapshot`.
    public func rates(for snapshot: RelaySnapshot, at now: NIODeadline = .now()) -> [String: Double] {
        let oldest = state.withLockedValue { state in
            state.samples.first { now - $0.at <= .nanoseconds(Int64((Self.rateWindow + 1.5) * 1e9)) }
        }
        guard let oldest, now - oldest.at > .milliseconds(100) else {
            return ["messages_relayed_per_s": 0, "bytes_relayed_per_s": 0, "frames_in_per_s": 0, "acks_sent_per_s": 0, "nacks_sent_per_s": 0]
        }
        let seconds = Double((now - oldest.at).nanoseconds) / 1e9
        let before = oldest.snapshot.counters
        let after = snapshot.counters
        func rate(_ value: (RelayCounters) -> Int) -> Double {
            (Double(value(after) - value(before)) / seconds * 10).rounded() / 10
        }
        return [
            "messages_relayed_per_s": rate { $0.relayedByVerb.reduce(0, +) },
            "bytes_relayed_per_s": rate { $0.relayedBytesByVerb.reduce(0, +) },
            "frames_in_per_s": rate { $0.framesIn },
            "acks_sent_per_s": rate { $0.acksSent },
            "nacks_sent_per_s": rate { $0.nacksSent.reduce(0, +) },
        ]
    }

    /// `GET /stats`.
    public func statsJSON() async throws -> [UInt8] {
        let snapshot = try await sample()
        let counters = snapshot.counters
        var relayed: [String: Any] = [:]
        for verb in Verb.allCases where counters.relayed(verb) > 0 {
            relayed[verb.name] = ["messages": counters.relayed(verb), "bytes": counters.relayedBytesByVerb[Int(verb.rawValue)]]
        }
        var nacks: [String: Int] = [:]
        for reason in NackReason.allCases { nacks[reason.rawValue] = counters.count(reason) }
        var drops: [String: Int] = [:]
        for reason in DropReason.allCases { drops[reason.rawValue] = counters.count(reason) }
        let body: [String: Any] = [
            "node_id": snapshot.identity.id.description,
            "name": snapshot.identity.name ?? "relay",
            "version": ProjectVersion.number,
            "state": readiness.current.rawValue,
            "uptime_s": (snapshot.uptime * 10).rounded() / 10,
            "connections": ["clients": snapshot.clients, "handshaking": snapshot.handshaking, "peers": snapshot.mesh.peersUp,
                            "accepted": counters.connectionsAccepted, "closed": counters.connectionsClosed,
                            "moved_at_accept": counters.connectionsMovedAtAccept,
                            "banned_addresses": snapshot.bannedAddresses],
            "event_loops": snapshot.eventLoops.map {
                ["clients": $0.clients, "handshaking": $0.handshaking, "frames_in": $0.framesIn,
                 "commands_from_other_loops": $0.commandsFromOtherLoops]
            },
            "nodes_known": snapshot.nodes,
            "relayed": relayed,
            "messages_relayed": snapshot.messagesRelayed,
            "frames": ["in": counters.framesIn, "out": counters.framesOut],
            "bytes": ["in": counters.bytesIn, "out": counters.bytesOut],
            "acks": ["sent": counters.acksSent, "received": counters.acksReceived],
            "nacks": nacks,
            "drops": drops,
            "legacy_clients": ["connected": snapshot.legacyClients, "introductions": counters.introductions,
                               "delivered_on_write": counters.legacyDelivered],
            "store": ["messages": snapshot.storeMessages, "bytes": snapshot.storeBytes, "max_bytes": snapshot.storeMaxBytes, "stored": counters.stored,
                      "sent": counters.storedSent, "delivered": counters.storedDelivered],
            "connect": ["brokered": counters.connectsBrokered, "discoveries": counters.connectDiscoveries,
                        "punch_succeeded": counters.punchSucceeded, "punch_failed": counters.punchFailed],
            "rates_10s": rates(for: snapshot),
            "mesh": meshJSON(snapshot.mesh),
            "routing_to_clients": ["frames": counters.routingFramesToClients, "bytes": counters.routingBytesToClients],
        ]
        let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        return [UInt8](data) + [0x0A]
    }

    private func meshJSON(_ mesh: MeshStatus) -> [String: Any] {
        let peers: [[String: Any]] = mesh.peers.map { peer in
            var entry: [String: Any] = [
                "state": peer.state, "routes_learned": peer.routesLearned, "invalid_entries": peer.invalidEntries,
                "routing_frames": ["in": peer.routingFramesIn, "out": peer.routingFramesOut],
                "routing_bytes": ["in": peer.routingBytesIn, "out": peer.routingBytesOut],
            ]
            entry["node_id"] = peer.relayID ?? NSNull()
            entry["name"] = peer.name ?? NSNull()
            entry["address"] = peer.address ?? NSNull()
            entry["since"] = peer.since.map { Self.timestamp($0) } ?? NSNull()
            entry["last_routing"] = peer.lastRoutingIn.map { Self.timestamp($0) } ?? NSNull()
            return entry
        }
        return [
            "peers": peers, "routes": mesh.routes,
            "routing_frames": ["in": mesh.routingFramesIn, "out": mesh.routingFramesOut],
        ]
    }

    private static func timestamp(_ unixTime: Double) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: unixTime))
    }

    /// `GET /routes`: the route table, one entry per reachable node: `node` (`name@GUID`), `ttl`
    /// (relay hops), `via` (`local` or the peer relay's id), `legacy`; `count` is every route,
    /// `matched` those `query.match` selects, of which `routes` holds the first `query.limit`.
    public func routesJSON(_ query: RouteQuery = RouteQuery()) throws -> [UInt8] {
        let all = routeSource()
        let (rows, matched) = query.select(all)
        let body: [String: Any] = [
            "count": all.count,
            "matched": matched,
            "routes": rows.map { ["node": $0.node, "ttl": $0.ttl, "via": $0.via, "legacy": $0.legacy] as [String: Any] },
        ]
        return [UInt8](try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) + [0x0A]
    }

    /// `GET /metrics`: the Prometheus text format.
    public func prometheusText() async throws -> [UInt8] {
        try await sample()
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}

/// The relay's metrics, named `ptpchat_…`. deploy/grafana/ptpchat-relay.json and
/// deploy/prometheus/alerts.yml query them by name (MonitoringTests checks every name they use).
final class RelayMetrics: Sendable {
    private let factory: PrometheusMetricsFactory
    /// 1, labelled with the version: lets a dashboard show which build runs.
    private let buildInfo: Metrics.Gauge
    /// 1 while `/readyz` says 200, else 0: the "not ready" alert.
    private let ready: Metrics.Gauge
    /// `store.max_bytes`: the "store filling" alert divides `ptpchat_store_bytes` by it.
    private let storeMaxBytes: Metrics.Gauge
    private let bannedAddresses: Metrics.Gauge
    /// `mesh.peers` entries not connected now: the "peer unreachable" alert.
    private let meshPeersConnecting: Metrics.Gauge
    private let clients: Metrics.Gauge
    private let handshaking: Metrics.Gauge
    private let legacyClients: Metrics.Gauge
    private let introductions: Metrics.Counter
    private let legacyDelivered: Metrics.Counter
    private let nodes: Metrics.Gauge
    private let uptime: Metrics.Gauge
    private let storeMessages: Metrics.Gauge
    private let storeBytes: Metrics.Gauge
    private let relayed: [Metrics.Counter]
    private let relayedBytes: [Metrics.Counter]
    private let nacks: [Metrics.Counter]
    private let drops: [Metrics.Counter]
    private let framesIn: Metrics.Counter
    private let framesOut: Metrics.Counter
    private let bytesIn: Metrics.Counter
    private let bytesOut: Metrics.Counter
    private let acksSent: Metrics.Counter
    private let acksReceived: Metrics.Counter
    private let stored: Metrics.Counter
    private let storedDelivered: Metrics.Counter
    private let accepted: Metrics.Counter
    private let movedAtAccept: Metrics.Counter
    private let meshPeers: Metrics.Gauge
    private let routes: Metrics.Gauge
    private let routingFramesIn: Metrics.Counter
    private let routingFramesOut: Metrics.Counter
    private let connectsBrokered: Metrics.Counter
    private let connectDiscoveries: Metrics.Counter
    private let punchSucceeded: Metrics.Counter
    private let punchFailed: Metrics.Counter

    init(factory: PrometheusMetricsFactory) {
        self.factory = factory
        buildInfo = Metrics.Gauge(label: "ptpchat_build_info", dimensions: [("version", ProjectVersion.number)], factory: factory)
        ready = Metrics.Gauge(label: "ptpchat_ready", factory: factory)
        storeMaxBytes = Metrics.Gauge(label: "ptpchat_store_max_bytes", factory: factory)
        bannedAddresses = Metrics.Gauge(label: "ptpchat_banned_addresses", factory: factory)
        meshPeersConnecting = Metrics.Gauge(label: "ptpchat_mesh_peers_connecting", factory: factory)
        clients = Metrics.Gauge(label: "ptpchat_connections", dimensions: [("kind", "client")], factory: factory)
        handshaking = Metrics.Gauge(label: "ptpchat_connections", dimensions: [("kind", "handshaking")], factory: factory)
        legacyClients = Metrics.Gauge(label: "ptpchat_legacy_clients", factory: factory)
        introductions = Metrics.Counter(label: "ptpchat_introductions_total", factory: factory)
        legacyDelivered = Metrics.Counter(label: "ptpchat_legacy_delivered_on_write_total", factory: factory)
        nodes = Metrics.Gauge(label: "ptpchat_nodes_known", factory: factory)
        uptime = Metrics.Gauge(label: "ptpchat_uptime_seconds", factory: factory)
        storeMessages = Metrics.Gauge(label: "ptpchat_store_messages", factory: factory)
        storeBytes = Metrics.Gauge(label: "ptpchat_store_bytes", factory: factory)
        relayed = Verb.allCases.map { Metrics.Counter(label: "ptpchat_messages_relayed_total", dimensions: [("verb", $0.name)], factory: factory) }
        relayedBytes = Verb.allCases.map { Metrics.Counter(label: "ptpchat_bytes_relayed_total", dimensions: [("verb", $0.name)], factory: factory) }
        nacks = NackReason.allCases.map { Metrics.Counter(label: "ptpchat_nacks_sent_total", dimensions: [("reason", $0.rawValue)], factory: factory) }
        drops = DropReason.allCases.map { Metrics.Counter(label: "ptpchat_drops_total", dimensions: [("reason", $0.rawValue)], factory: factory) }
        framesIn = Metrics.Counter(label: "ptpchat_frames_received_total", factory: factory)
        framesOut = Metrics.Counter(label: "ptpchat_frames_sent_total", factory: factory)
        bytesIn = Metrics.Counter(label: "ptpchat_bytes_received_total", factory: factory)
        bytesOut = Metrics.Counter(label: "ptpchat_bytes_sent_total", factory: factory)
        acksSent = Metrics.Counter(label: "ptpchat_acks_sent_total", factory: factory)
        acksReceived = Metrics.Counter(label: "ptpchat_acks_received_total", factory: factory)
        stored = Metrics.Counter(label: "ptpchat_store_stored_total", factory: factory)
        storedDelivered = Metrics.Counter(label: "ptpchat_store_delivered_total", factory: factory)
        accepted = Metrics.Counter(label: "ptpchat_connections_accepted_total", factory: factory)
        movedAtAccept = Metrics.Counter(label: "ptpchat_connections_moved_at_accept_total", factory: factory)
        meshPeers = Metrics.Gauge(label: "ptpchat_mesh_peers", factory: factory)
        routes = Metrics.Gauge(label: "ptpchat_routes", factory: factory)
        routingFramesIn = Metrics.Counter(label: "ptpchat_routing_frames_total", dimensions: [("direction", "in")], factory: factory)
        routingFramesOut = Metrics.Counter(label: "ptpchat_routing_frames_total", dimensions: [("direction", "out")], factory: factory)
        connectsBrokered = Metrics.Counter(label: "ptpchat_connect_brokered_total", factory: factory)
        connectDiscoveries = Metrics.Counter(label: "ptpchat_connect_discoveries_total", factory: factory)
        punchSucceeded = Metrics.Counter(label: "ptpchat_punch_succeeded_total", factory: factory)
        punchFailed = Metrics.Counter(label: "ptpchat_punch_failed_total", factory: factory)
    }

    /// Counters go up by what is new since `previous` (never down); gauges take the current
    /// value. Returns what has been exported now: the element-wise maximum of both.
    func update(_ snapshot: RelaySnapshot, ready isReady: Bool, since previous: RelayCounters?) -> RelayCounters {
        let before = previous ?? RelayCounters()
        let now = before.maximum(snapshot.counters)
        buildInfo.record(1)
        ready.record(isReady ? 1 : 0)
        storeMaxBytes.record(snapshot.storeMaxBytes)
        bannedAddresses.record(snapshot.bannedAddresses)
        meshPeersConnecting.record(snapshot.mesh.peersConnecting)
        clients.record(snapshot.clients)
        handshaking.record(snapshot.handshaking)
        legacyClients.record(snapshot.legacyClients)
        nodes.record(snapshot.nodes)
        uptime.record(snapshot.uptime)
        storeMessages.record(snapshot.storeMessages)
        storeBytes.record(snapshot.storeBytes)
        func add(_ counter: Metrics.Counter, _ delta: Int) { if delta > 0 { counter.increment(by: delta) } }
        for index in relayed.indices {
            add(relayed[index], now.relayedByVerb[index] - before.relayedByVerb[index])
            add(relayedBytes[index], now.relayedBytesByVerb[index] - before.relayedBytesByVerb[index])
        }
        for index in nacks.indices { add(nacks[index], now.nacksSent[index] - before.nacksSent[index]) }
        for index in drops.indices { add(drops[index], now.drops[index] - before.drops[index]) }
        add(framesIn, now.framesIn - before.framesIn)
        add(framesOut, now.framesOut - before.framesOut)
        add(bytesIn, now.bytesIn - before.bytesIn)
        add(bytesOut, now.bytesOut - before.bytesOut)
        add(acksSent, now.acksSent - before.acksSent)
        add(acksReceived, now.acksReceived - before.acksReceived)
        add(stored, now.stored - before.stored)
        add(storedDelivered, now.storedDelivered - before.storedDelivered)
        add(introductions, now.introductions - before.introductions)
        add(legacyDelivered, now.legacyDelivered - before.legacyDelivered)
        add(accepted, now.connectionsAccepted - before.connectionsAccepted)
        add(movedAtAccept, now.connectionsMovedAtAccept - before.connectionsMovedAtAccept)
        meshPeers.record(snapshot.mesh.peersUp)
        routes.record(snapshot.mesh.routes)
        add(routingFramesIn, now.routingFramesIn - before.routingFramesIn)
        add(routingFramesOut, now.routingFramesOut - before.routingFramesOut)
        add(connectsBrokered, now.connectsBrokered - before.connectsBrokered)
        add(connectDiscoveries, now.connectDiscoveries - before.connectDiscoveries)
        add(punchSucceeded, now.punchSucceeded - before.punchSucceeded)
        add(punchFailed, now.punchFailed - before.punchFailed)
        return now
    }
}
