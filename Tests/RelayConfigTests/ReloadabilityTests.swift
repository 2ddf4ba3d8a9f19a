import Foundation
import XCTest

@testable import RelayConfig

/// Each configuration key declares whether a reload applies it; the restart list of a reload is
/// derived from the keys whose value changed (`RelayServer.apply`).
final class ReloadabilityTests: XCTestCase {
    /// The keys a reload cannot apply (their sockets, threads, identity or store are made at start).
    static let expectedRestartKeys = [
        "relay.listen", "relay.name", "relay.node_id", "relay.data_dir", "relay.threads",
        "stats.listen",
        "store.sync", "store.max_attempts", "store.per_recipient_messages", "store.per_recipient_bytes",
        "store.per_sender_messages", "store.max_bytes", "store.max_age",
        "tls.listen",
    ]

    /// A change of each key's value, and of nothing else.
    static let changes: [String: @Sendable (inout RelayConfiguration) -> Void] = [
        "relay.listen": { $0.relay.listen = ["127.0.0.1:9100"] },
        "relay.name": { $0.relay.name = "other" },
        "relay.node_id": { $0.relay.nodeID = "0b370041-cd1e-40ac-ac59-0136bba850fe" },
        "relay.data_dir": { $0.relay.dataDir = "/var/lib/other" },
        "relay.threads": { $0.relay.threads = 3 },
        "stats.listen": { $0.stats.listen = nil },
        "log.level": { $0.logLevel = .debug },
        "timeouts.handshake": { $0.timeouts.handshake = 3 },
        "timeouts.idle": { $0.timeouts.idle = 3 },
        "timeouts.keepalive": { $0.timeouts.keepalive = 3 },
        "timeouts.hello_refresh": { $0.timeouts.helloRefresh = 3 },
        "timeouts.ack": { $0.timeouts.ack = 3 },
        "timeouts.shutdown": { $0.timeouts.shutdown = 3 },
        "limits.max_frame_bytes": { $0.limits.maxFrameBytes = 3 },
        "limits.max_connections": { $0.limits.maxConnections = 3 },
        "limits.per_ip_connections": { $0.limits.perIPConnections = 3 },
        "limits.per_ip_new_per_second": { $0.limits.perIPNewPerSecond = 3 },
        "limits.per_ip_new_burst": { $0.limits.perIPNewBurst = 3 },
        "limits.accept_refusals_per_second": { $0.limits.acceptRefusalsPerSecond = 3 },
        "limits.accept_refusals_burst": { $0.limits.acceptRefusalsBurst = 3 },
        "limits.ban_after_refusals": { $0.limits.banAfterRefusals = 3 },
        "limits.ban_seconds": { $0.limits.banSeconds = 3 },
        "limits.node_messages_per_second": { $0.limits.nodeMessagesPerSecond = 3 },
        "limits.node_messages_burst": { $0.limits.nodeMessagesBurst = 3 },
        "limits.node_bytes_per_second": { $0.limits.nodeBytesPerSecond = 3 },
        "limits.node_bytes_burst": { $0.limits.nodeBytesBurst = 3 },
        "limits.flood_per_second": { $0.limits.floodPerSecond = 3 },
        "limits.flood_burst": { $0.limits.floodBurst = 3 },
        "limits.connect_per_minute": { $0.limits.connectPerMinute = 3 },
        "limits.connect_pair_per_minute": { $0.limits.connectPairPerMinute = 3 },
        "limits.outbound_buffer_bytes": { $0.limits.outboundBufferBytes = 3 },
        "limits.outbound_buffer_max_bytes": { $0.limits.outboundBufferMaxBytes = 3 },
        "flood.window": { $0.flood.window = 3 },
        "channels.ttl": { $0.channels.ttl = 3 },
        "store.sync": { $0.store.sync = .normal },
        "store.max_attempts": { $0.store.maxAttempts = 3 },
        "store.per_recipient_messages": { $0.store.perRecipientMessages = 3 },
        "store.per_recipient_bytes": { $0.store.perRecipientBytes = 3 },
        "store.per_sender_messages": { $0.store.perSenderMessages = 3 },
        "store.max_bytes": { $0.store.maxBytes = 3 },
        "store.max_age": { $0.store.maxAge = 3 },
        "routing.interval": { $0.routing.interval = 3 },
        "routing.refresh": { $0.routing.refresh = 3 },
        "routing.to_clients": { $0.routing.clientView = .none },
        "mesh.peers": { $0.mesh.peers = ["127.0.0.1:9300"] },
        "mesh.key": { $0.mesh.key = "a-mesh-key-of-16-bytes-or-more" },
        "tls.listen": { $0.tls.listen = ["127.0.0.1:9443"] },
        "tls.cert": { $0.tls.cert = "/etc/ptpchat/relay.pem" },
        "tls.key": { $0.tls.key = "/etc/ptpchat/relay.key" },
        "tls.client_ca": { $0.tls.clientCA = "/etc/ptpchat/ca.pem" },
        "tls.require_client_cert": { $0.tls.requireClientCert = true },
        "compat.legacy_clients": { $0.compat.legacyClients = false },
    ]

    func testEveryKeyHasAChangeHere() {
        XCTAssertEqual(Set(Self.changes.keys), Set(ConfigurationLoader.keys), "add the new key to `changes`")
    }

    func testRestartKeysAreDeclaredPerKey() {
        XCTAssertEqual(ConfigurationLoader.restartKeys, Self.expectedRestartKeys)
        for key in ConfigurationLoader.keys {
            XCTAssertEqual(ConfigurationLoader.appliesOnReload(key), !Self.expectedRestartKeys.contains(key), key)
        }
        XCTAssertNil(ConfigurationLoader.appliesOnReload("limits.unknown"))
    }

    /// Each key changed alone: a restart key is reported and keeps its old value; a reloadable key
    /// is not reported and takes its new value.
    func testEachKeyChangedAloneIsReportedOnlyWhenItNeedsARestart() {
        let old = RelayConfiguration()
        for key in ConfigurationLoader.keys {
            guard let change = Self.changes[key] else { continue }
            var new = old
            change(&new)
            XCTAssertNotEqual(new, old, "\(key): the change changes nothing")
            let kept = new.keepingRestartKeys(of: old)
            if Self.expectedRestartKeys.contains(key) {
                XCTAssertEqual(new.keysNeedingRestart(comparedTo: old), [key])
                XCTAssertEqual(kept, old, "\(key) keeps its old value until a restart")
            } else {
                XCTAssertEqual(new.keysNeedingRestart(comparedTo: old), [], "\(key) applies on reload")
                XCTAssertEqual(kept, new, "\(key) takes its new value")
            }
        }
    }

    func testSeveralChangesAtOnce() {
        let old = RelayConfiguration()
        var new = old
        for key in ["relay.name", "timeouts.idle", "tls.listen", "tls.cert", "limits.outbound_buffer_bytes", "store.max_age"] {
            Self.changes[key]!(&new)
        }
        XCTAssertEqual(new.keysNeedingRestart(comparedTo: old), ["relay.name", "store.max_age", "tls.listen"])
        let kept = new.keepingRestartKeys(of: old)
        XCTAssertEqual(kept.relay, old.relay)
        XCTAssertEqual(kept.store, old.store)
        XCTAssertEqual(kept.tls.listen, old.tls.listen)
        XCTAssertEqual(kept.tls.cert, new.tls.cert)
        XCTAssertEqual(kept.timeouts, new.timeouts)
        XCTAssertEqual(kept.limits, new.limits)
    }

    /// docs/configuration.md has one row per key in its reload table, saying what a reload does.
    func testDocumentationSaysPerKeyWhetherAReloadAppliesIt() throws {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/configuration.md")
        let text = try String(contentsOf: url, encoding: .utf8)
        let section = try XCTUnwrap(text.components(separatedBy: "## Reloading\n").dropFirst().first, "no Reloading section")
        for key in ConfigurationLoader.keys {
            let expected = ConfigurationLoader.appliesOnReload(key) == true ? "applied" : "restart"
            XCTAssertTrue(section.contains("| `\(key)` | \(expected) |"), "the reload table lacks `| `\(key)` | \(expected) |`")
        }
    }
}
