import Foundation
import Logging
import XCTest

@testable import RelayConfig

final class ConfigurationLoaderTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("relayconfig-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    // MARK: - Helpers

    /// Writes `yaml` to a fresh file in the test directory and returns its path.
    private func write(_ yaml: String, name: String = "relay.yaml") throws -> String {
        let url = directory.appendingPathComponent(name)
        try yaml.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    private func load(_ yaml: String, environment: [String: String] = [:]) async throws -> RelayConfiguration {
        try await ConfigurationLoader.load(file: write(yaml), environment: environment)
    }

    /// The error the load throws; fails the test when it succeeds or throws something else.
    private func loadError(
        file: String?,
        environment: [String: String] = [:],
        overrides: [String: String] = [:],
        line: UInt = #line
    ) async -> ConfigurationError? {
        do {
            let configuration = try await ConfigurationLoader.load(
                file: file, environment: environment, overrides: overrides)
            XCTFail("expected an error, loaded \(configuration)", line: line)
            return nil
        } catch let error as ConfigurationError {
            XCTAssertFalse(error.description.contains("\n"), "not one line: \(error.description)", line: line)
            return error
        } catch {
            XCTFail("expected a ConfigurationError, got \(type(of: error)): \(error)", line: line)
            return nil
        }
    }

    private func loadError(_ yaml: String, environment: [String: String] = [:], line: UInt = #line) async throws
        -> (ConfigurationError, String)?
    {
        let path = try write(yaml)
        guard let error = await loadError(file: path, environment: environment, line: line) else { return nil }
        return (error, path)
    }

    // MARK: - Defaults

    func testDefaultsWithoutFile() async throws {
        let c = try await ConfigurationLoader.load(file: nil, environment: [:])
        XCTAssertEqual(c, RelayConfiguration())
        // The values of PROFILE.md section 11, written out so that a changed default shows here.
        XCTAssertEqual(c.relay.listen, ["0.0.0.0:9001"])
        XCTAssertEqual(c.relay.name, "relay")
        XCTAssertNil(c.relay.nodeID)
        XCTAssertEqual(c.relay.dataDir, "./ptpchat-data")
        XCTAssertEqual(c.relay.threads, 0)
        XCTAssertEqual(c.stats.listen, "127.0.0.1:9002")
        XCTAssertEqual(c.logLevel, .info)
        XCTAssertEqual(c.timeouts.handshake, 10)
        XCTAssertEqual(c.timeouts.idle, 90)
        XCTAssertEqual(c.timeouts.keepalive, 25)
        XCTAssertEqual(c.timeouts.helloRefresh, 60)
        XCTAssertEqual(c.timeouts.ack, 10)
        XCTAssertEqual(c.timeouts.shutdown, 10)
        XCTAssertEqual(c.limits.maxFrameBytes, 1_048_576)
        XCTAssertEqual(c.limits.maxConnections, 100_000)
        XCTAssertEqual(c.limits.perIPConnections, 64)
        XCTAssertEqual(c.limits.perIPNewPerSecond, 20)
        XCTAssertEqual(c.limits.perIPNewBurst, 50)
        XCTAssertEqual(c.limits.acceptRefusalsPerSecond, 1000)
        XCTAssertEqual(c.limits.acceptRefusalsBurst, 2000)
        XCTAssertEqual(c.limits.banAfterRefusals, 100)
        XCTAssertEqual(c.limits.banSeconds, 600)
        XCTAssertEqual(c.limits.nodeMessagesPerSecond, 200)
        XCTAssertEqual(c.limits.nodeMessagesBurst, 1000)
        XCTAssertEqual(c.limits.nodeBytesPerSecond, 1_048_576)
        XCTAssertEqual(c.limits.nodeBytesBurst, 4_194_304)
        XCTAssertEqual(c.limits.floodPerSecond, 5)
        XCTAssertEqual(c.limits.floodBurst, 20)
        XCTAssertEqual(c.limits.connectPerMinute, 10)
        XCTAssertEqual(c.limits.connectPairPerMinute, 10)
        XCTAssertEqual(c.limits.outboundBufferBytes, 1_048_576)
        XCTAssertEqual(c.limits.outboundBufferMaxBytes, 4_194_304)
        XCTAssertEqual(c.flood.window, 600)
        XCTAssertEqual(c.channels.ttl, 600)
        XCTAssertEqual(c.store.sync, .full)
        XCTAssertEqual(c.store.maxAttempts, 5)
        XCTAssertEqual(c.store.perRecipientMessages, 1000)
        XCTAssertEqual(c.store.perRecipientBytes, 10_485_760)
        XCTAssertEqual(c.store.perSenderMessages, 100)
        XCTAssertEqual(c.store.maxBytes, 1_073_741_824)
        XCTAssertEqual(c.store.maxAge, 604_800)
        XCTAssertEqual(c.routing.interval, 0.25)
        XCTAssertEqual(c.routing.refresh, 60)
        XCTAssertTrue(c.routing.toClients)
        XCTAssertEqual(c.mesh.peers, [])
        XCTAssertNil(c.mesh.key)
        XCTAssertEqual(c.tls.listen, [])
        XCTAssertNil(c.tls.cert)
        XCTAssertNil(c.tls.key)
        XCTAssertNil(c.tls.clientCA)
        XCTAssertFalse(c.tls.requireClientCert)
        XCTAssertTrue(c.compat.legacyClients)
    }

    func testKnownKeysAreThoseOfTheProfile() {
        XCTAssertEqual(ConfigurationLoader.keys.count, 52)
        XCTAssertEqual(Set(ConfigurationLoader.keys).count, 52)
        XCTAssertTrue(ConfigurationLoader.keys.contains("compat.legacy_clients"))
        XCTAssertTrue(ConfigurationLoader.keys.contains("limits.max_frame_bytes"))
        XCTAssertTrue(ConfigurationLoader.keys.contains("tls.client_ca"))
        XCTAssertTrue(ConfigurationLoader.keys.contains("log.level"))
    }

    func testEmptyFileAndEmptySectionsGiveDefaults() async throws {
        let commentsOnly = try await load("# nothing set yet\n\n---\n   # indented comment\n")
        XCTAssertEqual(commentsOnly, RelayConfiguration())
        let emptySections = try await load(
            """
            relay:
              name: alpha
            mesh:
              # peers: ["10.0.0.2:9001"]
            tls: ~
            limits: {}
            """)
        var expected = RelayConfiguration()
        expected.relay.name = "alpha"
        XCTAssertEqual(emptySections, expected)
    }

    // MARK: - Every key from a file

    /// Every known key with a value that differs from its default, as YAML text.
    private static let everyKey: [String: String] = [
        "relay.listen": #"["127.0.0.1:7001", "[::1]:7002", ":7003"]"#,
        "relay.name": "alpha7",
        "relay.node_id": "0B370041-CD1E-40AC-AC59-0136BBA850FE",
        "relay.data_dir": "/var/lib/ptpchat",
        "relay.threads": "4",
        "stats.listen": #""0.0.0.0:9102""#,
        "log.level": "debug",
        "timeouts.handshake": "5",
        "timeouts.idle": "120.5",
        "timeouts.keepalive": "15",
        "timeouts.hello_refresh": "0",
        "timeouts.ack": "2.5",
        "timeouts.shutdown": "3",
        "limits.max_frame_bytes": "2_097_152",
        "limits.max_connections": "5000",
        "limits.per_ip_connections": "8",
        "limits.per_ip_new_per_second": "2.5",
        "limits.per_ip_new_burst": "7",
        "limits.accept_refusals_per_second": "0.5",
        "limits.accept_refusals_burst": "9",
        "limits.ban_after_refusals": "40",
        "limits.ban_seconds": "90.5",
        "limits.node_messages_per_second": "50",
        "limits.node_messages_burst": "500",
        "limits.node_bytes_per_second": "65536",
        "limits.node_bytes_burst": "131072",
        "limits.flood_per_second": "1.5",
        "limits.flood_burst": "3",
        "limits.connect_per_minute": "0",
        "limits.connect_pair_per_minute": "4",
        "limits.outbound_buffer_bytes": "65536",
        "limits.outbound_buffer_max_bytes": "262144",
        "flood.window": "300",
        "channels.ttl": "900",
        "store.sync": "normal",
        "store.max_attempts": "9",
        "store.per_recipient_messages": "20",
        "store.per_recipient_bytes": "4096",
        "store.per_sender_messages": "10",
        "store.max_bytes": "1000000",
        "store.max_age": "86400",
        "routing.interval": "0.5",
        "routing.refresh": "30",
        "routing.to_clients": "false",
        "mesh.peers": #"["relay2.example.net:9001", "[2001:db8::7]:9001"]"#,
        "mesh.key": "s3cret-mesh-key-of-the-test",
        "tls.listen": #"[":9443"]"#,
        "tls.cert": "/etc/ptpchat/cert.pem",
        "tls.key": "/etc/ptpchat/key.pem",
        "tls.client_ca": "/etc/ptpchat/ca.pem",
        "tls.require_client_cert": "true",
        "compat.legacy_clients": "false",
    ]

    /// Nested YAML (`section:` then `  key: value`) for dotted keys.
    private static func yaml(_ values: [String: String]) -> String {
        var sections: [String: [String]] = [:]
        for (key, value) in values {
            let parts = key.split(separator: ".", maxSplits: 1).map(String.init)
            sections[parts[0], default: []].append("  \(parts[1]): \(value)")
        }
        return sections.keys.sorted().map { section in
            "\(section):\n" + sections[section]!.sorted().joined(separator: "\n")
        }.joined(separator: "\n") + "\n"
    }

    func testEveryKeyFromFile() async throws {
        XCTAssertEqual(Set(Self.everyKey.keys), Set(ConfigurationLoader.keys), "the test must set every key")
        let c = try await load(Self.yaml(Self.everyKey))

        XCTAssertEqual(c.relay.listen, ["127.0.0.1:7001", "[::1]:7002", ":7003"])
        XCTAssertEqual(c.relay.name, "alpha7")
        XCTAssertEqual(c.relay.nodeID, "0b370041-cd1e-40ac-ac59-0136bba850fe")
        XCTAssertEqual(c.relay.dataDir, "/var/lib/ptpchat")
        XCTAssertEqual(c.relay.threads, 4)
        XCTAssertEqual(c.stats.listen, "0.0.0.0:9102")
        XCTAssertEqual(c.logLevel, .debug)
        XCTAssertEqual(c.timeouts.handshake, 5)
        XCTAssertEqual(c.timeouts.idle, 120.5)
        XCTAssertEqual(c.timeouts.keepalive, 15)
        XCTAssertEqual(c.timeouts.helloRefresh, 0)
        XCTAssertEqual(c.timeouts.ack, 2.5)
        XCTAssertEqual(c.timeouts.shutdown, 3)
        XCTAssertEqual(c.limits.maxFrameBytes, 2_097_152)
        XCTAssertEqual(c.limits.maxConnections, 5000)
        XCTAssertEqual(c.limits.perIPConnections, 8)
        XCTAssertEqual(c.limits.perIPNewPerSecond, 2.5)
        XCTAssertEqual(c.limits.perIPNewBurst, 7)
        XCTAssertEqual(c.limits.acceptRefusalsPerSecond, 0.5)
        XCTAssertEqual(c.limits.acceptRefusalsBurst, 9)
        XCTAssertEqual(c.limits.banAfterRefusals, 40)
        XCTAssertEqual(c.limits.banSeconds, 90.5)
        XCTAssertEqual(c.limits.nodeMessagesPerSecond, 50)
        XCTAssertEqual(c.limits.nodeMessagesBurst, 500)
        XCTAssertEqual(c.limits.nodeBytesPerSecond, 65536)
        XCTAssertEqual(c.limits.nodeBytesBurst, 131_072)
        XCTAssertEqual(c.limits.floodPerSecond, 1.5)
        XCTAssertEqual(c.limits.floodBurst, 3)
        XCTAssertEqual(c.limits.connectPerMinute, 0)
        XCTAssertEqual(c.limits.connectPairPerMinute, 4)
        XCTAssertEqual(c.limits.outboundBufferBytes, 65536)
        XCTAssertEqual(c.limits.outboundBufferMaxBytes, 262_144)
        XCTAssertEqual(c.flood.window, 300)
        XCTAssertEqual(c.channels.ttl, 900)
        XCTAssertEqual(c.store.sync, .normal)
        XCTAssertEqual(c.store.maxAttempts, 9)
        XCTAssertEqual(c.store.perRecipientMessages, 20)
        XCTAssertEqual(c.store.perRecipientBytes, 4096)
        XCTAssertEqual(c.store.perSenderMessages, 10)
        XCTAssertEqual(c.store.maxBytes, 1_000_000)
        XCTAssertEqual(c.store.maxAge, 86400)
        XCTAssertEqual(c.routing.interval, 0.5)
        XCTAssertEqual(c.routing.refresh, 30)
        XCTAssertFalse(c.routing.toClients)
        XCTAssertEqual(c.mesh.peers, ["relay2.example.net:9001", "[2001:db8::7]:9001"])
        XCTAssertEqual(c.mesh.key, "s3cret-mesh-key-of-the-test")
        XCTAssertEqual(c.tls.listen, [":9443"])
        XCTAssertEqual(c.tls.cert, "/etc/ptpchat/cert.pem")
        XCTAssertTrue(c.tls.requireClientCert)
        XCTAssertEqual(c.tls.key, "/etc/ptpchat/key.pem")
        XCTAssertEqual(c.tls.clientCA, "/etc/ptpchat/ca.pem")
        XCTAssertFalse(c.compat.legacyClients)
    }

    func testTLSMeshPeersKeepTheirScheme() async throws {
        let c = try await load(#"mesh: {peers: ["tls://relay2.example.net:9443", "TLS://[2001:db8::7]:9443", "10.0.0.2:9001"]}"# + "\n")
        XCTAssertEqual(c.mesh.peers, ["tls://relay2.example.net:9443", "TLS://[2001:db8::7]:9443", "10.0.0.2:9001"])
        let secure = try ConfigurationLoader.parsePeerAddress("tls://relay2.example.net:9443")
        XCTAssertEqual(secure.host, "relay2.example.net")
        XCTAssertEqual(secure.port, 9443)
        XCTAssertTrue(secure.usesTLS)
        let v6 = try ConfigurationLoader.parsePeerAddress("TLS://[2001:db8::7]:9443")
        XCTAssertEqual(v6.host, "2001:db8::7")
        XCTAssertTrue(v6.usesTLS)
        let plain = try ConfigurationLoader.parsePeerAddress("10.0.0.2:9001")
        XCTAssertEqual(plain.host, "10.0.0.2")
        XCTAssertFalse(plain.usesTLS)
    }

    func testListKeysAcceptASingleString() async throws {
        let c = try await load(
            """
            relay: {listen: "10.1.2.3:9001"}
            mesh:
              peers: peer.example:9001
            tls: {listen: ":9443", cert: c.pem, key: k.pem}
            """)
        XCTAssertEqual(c.relay.listen, ["10.1.2.3:9001"])
        XCTAssertEqual(c.mesh.peers, ["peer.example:9001"])
        XCTAssertEqual(c.tls.listen, [":9443"])
    }

    func testDurationsTakeIntegersOrFractions() async throws {
        let c = try await load("timeouts: {idle: 45, ack: 0.75}\nrouting:\n  interval: 1\n  refresh: 12.5\n")
        XCTAssertEqual(c.timeouts.idle, 45)
        XCTAssertEqual(c.timeouts.ack, 0.75)
        XCTAssertEqual(c.routing.interval, 1)
        XCTAssertEqual(c.routing.refresh, 12.5)
    }

    func testStatsListenOff() async throws {
        let c = try await load("stats:\n  listen: off\n")
        XCTAssertNil(c.stats.listen)
        let quoted = try await load("stats: {listen: \"OFF\"}\n")
        XCTAssertNil(quoted.stats.listen)
        let fromEnvironment = try await ConfigurationLoader.load(file: nil, environment: ["STATS_LISTEN": "off"])
        XCTAssertNil(fromEnvironment.stats.listen)
        let on = try await load("stats: {listen: \"[::1]:9900\"}\n")
        XCTAssertEqual(on.stats.listen, "[::1]:9900")
    }

    func testOptionalValuesCanBeCleared() async throws {
        let c = try await load("relay: {node_id: ~}\nmesh: {key: \"\", peers: []}\n")
        XCTAssertNil(c.relay.nodeID)
        XCTAssertNil(c.mesh.key)
        XCTAssertEqual(c.mesh.peers, [])
    }

    // MARK: - Unknown keys

    func testUnknownKeyIsNamed() async throws {
        guard let (error, path) = try await loadError("limits:\n  max_frame_byte: 2048\n") else { return }
        XCTAssertEqual(error.kind, .unknownKey)
        XCTAssertEqual(error.key, "limits.max_frame_byte")
        XCTAssertTrue(
            error.description.hasPrefix("unknown configuration key 'limits.max_frame_byte' in \(path)"),
            error.description)
        XCTAssertTrue(error.description.contains("did you mean 'limits.max_frame_bytes'?"), error.description)
    }

    func testRoutingToClientsTakesTrueFalseOrChannels() async throws {
        let byDefault = try await load("").routing.clientView
        let all = try await load("routing: {to_clients: true}\n").routing.clientView
        let none = try await load("routing: {to_clients: false}\n").routing.clientView
        let channels = try await load("routing: {to_clients: channels}\n").routing.clientView
        XCTAssertEqual(byDefault, .channels, "channels is the default")
        XCTAssertEqual(all, .all)
        XCTAssertEqual(none, .none)
        XCTAssertEqual(channels, .channels)
    }

    /// PROFILE.md section 9: a mesh key shorter than 16 bytes is refused at start, in one line.
    func testShortMeshKeyRefused() async throws {
        guard let (error, _) = try await loadError("mesh:\n  key: \"fifteen-bytes!!\"\n") else { return }
        XCTAssertEqual(error.kind, .invalidValue)
        XCTAssertEqual(error.key, "mesh.key")
        XCTAssertTrue(error.description.contains("at least 16 bytes (it has 15)"), error.description)
        XCTAssertFalse(error.description.contains("fifteen"), "the secret must not be printed: \(error.description)")
        XCTAssertFalse(error.description.contains("\n"))
        let sixteen = try await load("mesh:\n  key: \"sixteen-bytes!!!\"\n")
        XCTAssertEqual(sixteen.mesh.key, "sixteen-bytes!!!")
    }

    func testUnknownSectionAndSeveralUnknownKeys() async throws {
        guard let (single, _) = try await loadError("relay: {name: a}\nfirewall:\n  enabled: true\n") else { return }
        XCTAssertEqual(single.kind, .unknownKey)
        XCTAssertEqual(single.key, "firewall.enabled")

        guard let (several, _) = try await loadError("relay: {nam: a, port: 5}\n") else { return }
        XCTAssertEqual(several.kind, .unknownKey)
        XCTAssertTrue(several.description.contains("'relay.nam'"), several.description)
        XCTAssertTrue(several.description.contains("'relay.port'"), several.description)
    }

    func testKeysAreCaseSensitive() async throws {
        guard let (error, _) = try await loadError("Relay: {Name: alpha}\n") else { return }
        XCTAssertEqual(error.kind, .unknownKey)
        XCTAssertEqual(error.key, "Relay.Name")
        XCTAssertTrue(error.description.contains("did you mean 'relay.name'?"), error.description)
    }

    func testSectionWithAValueAndValueWithAMap() async throws {
        guard let (section, _) = try await loadError("limits: 5\n") else { return }
        XCTAssertEqual(section.kind, .invalidValue)
        XCTAssertEqual(section.key, "limits")

        guard let (map, _) = try await loadError("relay:\n  name:\n    first: a\n") else { return }
        XCTAssertEqual(map.kind, .invalidValue)
        XCTAssertEqual(map.key, "relay.name")
        XCTAssertTrue(map.description.contains("found a map"), map.description)
    }

    // MARK: - Bad values

    func testBadValuesNameKeyAndValue() async throws {
        let cases: [(yaml: String, key: String, value: String, reason: String)] = [
            ("limits: {max_frame_bytes: -1}", "limits.max_frame_bytes", "-1", "negative"),
            ("limits: {max_connections: lots}", "limits.max_connections", "lots", "whole number"),
            ("limits: {max_frame_bytes: 1.5}", "limits.max_frame_bytes", "1.5", "whole number"),
            ("limits: {flood_per_second: -0.5}", "limits.flood_per_second", "-0.5", "negative"),
            ("relay: {threads: -2}", "relay.threads", "-2", "negative"),
            ("relay: {listen: [\"0.0.0.0:70000\"]}", "relay.listen", "0.0.0.0:70000", "outside 1-65535"),
            ("relay: {listen: [\"0.0.0.0:0\"]}", "relay.listen", "0.0.0.0:0", "outside 1-65535"),
            ("relay: {listen: [\"127.0.0.1:9001\", \"nohost\"]}", "relay.listen", "nohost", "HOST:PORT"),
            ("relay: {listen: \"::1:9001\"}", "relay.listen", "::1:9001", "brackets"),
            ("tls: {listen: [\":99999\"], cert: c, key: k}", "tls.listen", ":99999", "outside 1-65535"),
            ("stats: {listen: \"127.0.0.1:abc\"}", "stats.listen", "127.0.0.1:abc", "or off"),
            ("store: {sync: fast}", "store.sync", "fast", "full or normal"),
            ("store: {max_attempts: 0}", "store.max_attempts", "0", "at least 1"),
            ("store: {max_age: 0}", "store.max_age", "0", "greater than 0"),
            ("log: {level: verbose}", "log.level", "verbose", "trace, debug, info"),
            ("relay: {name: my-relay}", "relay.name", "my-relay", "letters and digits"),
            ("relay: {name: \"\"}", "relay.name", "", "letters and digits"),
            ("relay: {node_id: not-a-guid}", "relay.node_id", "not-a-guid", "GUID"),
            ("relay: {node_id: 00000000-0000-0000-0000-000000000000}", "relay.node_id",
             "00000000-0000-0000-0000-000000000000", "all-zero"),
            ("timeouts: {idle: 10s}", "timeouts.idle", "10s", "number"),
            ("timeouts: {handshake: 0}", "timeouts.handshake", "0", "greater than 0"),
            ("timeouts: {ack: .inf}", "timeouts.ack", ".inf", "number"),
            ("routing: {to_clients: maybe}", "routing.to_clients", "maybe", "true, false or channels"),
            ("relay: {name: [a, b]}", "relay.name", "[a, b]", "not a list"),
            ("mesh: {peers: [\":9001\"]}", "mesh.peers", ":9001", "needs a host"),
            ("mesh: {peers: [\"tls://:9001\"]}", "mesh.peers", "tls://:9001", "needs a host"),
            ("mesh: {peers: [\"tls://peer.example\"]}", "mesh.peers", "tls://peer.example", "HOST:PORT"),
        ]
        for (yaml, key, value, reason) in cases {
            guard let (error, path) = try await loadError(yaml + "\n") else { continue }
            XCTAssertEqual(error.kind, .invalidValue, yaml)
            XCTAssertEqual(error.key, key, yaml)
            XCTAssertEqual(error.value, value, yaml)
            XCTAssertTrue(
                error.description.hasPrefix("invalid value '\(value)' for '\(key)' in \(path): "),
                "\(yaml): \(error.description)")
            XCTAssertTrue(error.description.contains(reason), "\(yaml): \(error.description)")
        }
    }

    func testSecretValueIsNotPrinted() async throws {
        guard let (error, _) = try await loadError("mesh: {key: [hunter2, swordfish]}\n") else { return }
        XCTAssertEqual(error.key, "mesh.key")
        XCTAssertNil(error.value)
        XCTAssertFalse(error.description.contains("hunter2"), error.description)
    }

    func testMalformedYAML() async throws {
        guard let (error, path) = try await loadError("relay:\n  listen: [\"0.0.0.0:9001\"\n  name: x\n") else {
            return
        }
        XCTAssertEqual(error.kind, .malformedFile)
        XCTAssertTrue(error.description.hasPrefix("cannot parse configuration file '\(path)': "), error.description)

        guard let (list, _) = try await loadError("- a\n- b\n") else { return }
        XCTAssertEqual(list.kind, .malformedFile)
    }

    func testInconsistentValues() async throws {
        guard let (noCert, _) = try await loadError("tls: {listen: [\":9443\"]}\n") else { return }
        XCTAssertEqual(noCert.kind, .inconsistent)
        XCTAssertEqual(noCert.key, "tls.cert")

        guard let (noCA, _) = try await loadError("tls: {require_client_cert: true}\n") else { return }
        XCTAssertEqual(noCA.kind, .inconsistent)
        XCTAssertEqual(noCA.key, "tls.require_client_cert")

        guard let (nothing, _) = try await loadError("relay: {listen: []}\n") else { return }
        XCTAssertEqual(nothing.kind, .inconsistent)
        XCTAssertEqual(nothing.key, "relay.listen")

        guard let (buffers, _) = try await loadError(
            "limits: {outbound_buffer_bytes: 9000, outbound_buffer_max_bytes: 8000}\n")
        else { return }
        XCTAssertEqual(buffers.kind, .inconsistent)

        // 0 is unlimited, so no conflict.
        let unlimited = try await load("limits: {outbound_buffer_bytes: 9000, outbound_buffer_max_bytes: 0}\n")
        XCTAssertEqual(unlimited.limits.outboundBufferMaxBytes, 0)
        // TLS only.
        let tlsOnly = try await load("relay: {listen: []}\ntls: {listen: \":9443\", cert: c.pem, key: k.pem}\n")
        XCTAssertEqual(tlsOnly.relay.listen, [])
        XCTAssertEqual(tlsOnly.tls.listen, [":9443"])
    }

    // MARK: - Files that cannot be read

    func testMissingFile() async throws {
        let path = directory.appendingPathComponent("nope.yaml").path
        guard let error = await loadError(file: path) else { return }
        XCTAssertEqual(error.kind, .unreadableFile)
        XCTAssertEqual(error.description, "cannot read configuration file '\(path)': no such file")
    }

    func testDirectoryInsteadOfFile() async throws {
        guard let error = await loadError(file: directory.path) else { return }
        XCTAssertEqual(error.kind, .unreadableFile)
        XCTAssertTrue(error.description.contains("'\(directory.path)'"), error.description)
        XCTAssertTrue(error.description.contains("directory"), error.description)
    }

    // MARK: - Environment and command line

    func testEnvironmentVariableNames() {
        XCTAssertEqual(ConfigurationLoader.environmentVariableName(for: "limits.max_frame_bytes"), "LIMITS_MAX_FRAME_BYTES")
        XCTAssertEqual(ConfigurationLoader.environmentVariableName(for: "relay.listen"), "RELAY_LISTEN")
        XCTAssertEqual(ConfigurationLoader.environmentVariableName(for: "tls.client_ca"), "TLS_CLIENT_CA")
    }

    func testEnvironmentOverridesFile() async throws {
        let path = try write(
            """
            relay: {name: fromfile, listen: ["127.0.0.1:7001"]}
            limits: {max_frame_bytes: 2048, flood_burst: 3}
            timeouts: {idle: 30}
            """)
        let environment = [
            "LIMITS_MAX_FRAME_BYTES": "4096",
            "RELAY_LISTEN": "127.0.0.1:8001, [::1]:8002",
            "TIMEOUTS_ACK": "0.5",
            "ROUTING_TO_CLIENTS": "no",
            "MESH_PEERS": "a.example:9001,b.example:9001",
            "LOG_LEVEL": "WARNING",
            // Unrelated variables, including a near miss, are ignored.
            "PATH": "/usr/bin:/bin",
            "HOME": "/root",
            "LIMITS_MAX_FRAME_BYTE": "garbage",
            "RELAY": "garbage",
        ]
        let c = try await ConfigurationLoader.load(file: path, environment: environment)
        XCTAssertEqual(c.limits.maxFrameBytes, 4096)  // environment wins
        XCTAssertEqual(c.limits.floodBurst, 3)  // file
        XCTAssertEqual(c.relay.name, "fromfile")  // file
        XCTAssertEqual(c.timeouts.idle, 30)  // file
        XCTAssertEqual(c.timeouts.ack, 0.5)  // environment only
        XCTAssertEqual(c.relay.listen, ["127.0.0.1:8001", "[::1]:8002"])
        XCTAssertEqual(c.mesh.peers, ["a.example:9001", "b.example:9001"])
        XCTAssertFalse(c.routing.toClients)
        XCTAssertEqual(c.logLevel, .warning)
        XCTAssertEqual(c.relay.nodeID, nil)
    }

    func testBadEnvironmentValueNamesTheVariable() async throws {
        let path = try write("limits: {max_frame_bytes: 2048}\n")
        guard let error = await loadError(file: path, environment: ["LIMITS_MAX_FRAME_BYTES": "big"]) else { return }
        XCTAssertEqual(error.kind, .invalidValue)
        XCTAssertEqual(error.key, "limits.max_frame_bytes")
        XCTAssertEqual(error.value, "big")
        XCTAssertEqual(
            error.description,
            "invalid value 'big' for 'limits.max_frame_bytes' (environment variable LIMITS_MAX_FRAME_BYTES): expected a whole number"
        )
    }

    func testCommandLineOverridesEnvironmentAndFile() async throws {
        let path = try write("relay: {name: fromfile, threads: 2}\nstore: {sync: normal}\n")
        let c = try await ConfigurationLoader.load(
            file: path,
            environment: ["RELAY_NAME": "fromenv", "RELAY_THREADS": "3"],
            overrides: ["relay.name": "fromcli", "relay.listen": ":7001,:7002", "stats.listen": "off"]
        )
        XCTAssertEqual(c.relay.name, "fromcli")
        XCTAssertEqual(c.relay.threads, 3)
        XCTAssertEqual(c.store.sync, .normal)
        XCTAssertEqual(c.relay.listen, [":7001", ":7002"])
        XCTAssertNil(c.stats.listen)

        guard let unknown = await loadError(file: nil, overrides: ["relay.nme": "x"]) else { return }
        XCTAssertEqual(unknown.kind, .unknownKey)
        XCTAssertEqual(unknown.key, "relay.nme")

        guard let bad = await loadError(file: nil, overrides: ["relay.name": "a b"]) else { return }
        XCTAssertEqual(bad.description, "invalid value 'a b' for 'relay.name' (command line): a relay name is letters and digits only (A-Z, a-z, 0-9)")
    }

    // MARK: - Documentation

    private func documentation() throws -> String {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/configuration.md")
        return try String(contentsOf: url, encoding: .utf8)
    }

    func testDocumentationListsEveryKeyAndVariable() throws {
        let text = try documentation()
        for key in ConfigurationLoader.keys {
            let variable = ConfigurationLoader.environmentVariableName(for: key)
            XCTAssertTrue(text.contains("| `\(key)` | `\(variable)` |"), "docs/configuration.md lacks the row of \(key)")
        }
    }

    func testDocumentationExamplesLoad() async throws {
        let blocks = try documentation().components(separatedBy: "```yaml\n").dropFirst()
            .map { $0.components(separatedBy: "```")[0] }
        XCTAssertGreaterThanOrEqual(blocks.count, 2)
        for (index, block) in blocks.enumerated() {
            let path = try write(block, name: "doc\(index).yaml")
            _ = try await ConfigurationLoader.load(file: path, environment: [:])
        }
        let example = try await load(blocks.last!, environment: ["LOG_LEVEL": "debug", "MESH_KEY": "a-mesh-key-of-16-bytes-or-more"])
        XCTAssertEqual(example.relay.name, "paris1")
        XCTAssertEqual(example.logLevel, .debug)
        XCTAssertEqual(example.store.maxBytes, 10_737_418_240)
        XCTAssertEqual(example.mesh.peers, ["relay2.example.net:9001", "[2001:db8::7]:9001"])
        XCTAssertEqual(example.mesh.key, "a-mesh-key-of-16-bytes-or-more")
    }

    // MARK: - parseHostPort

    func testParseHostPort() throws {
        var r = try ConfigurationLoader.parseHostPort("127.0.0.1:9001")
        XCTAssertEqual(r.host, "127.0.0.1")
        XCTAssertEqual(r.port, 9001)
        r = try ConfigurationLoader.parseHostPort("relay.example.net:1")
        XCTAssertEqual(r.host, "relay.example.net")
        XCTAssertEqual(r.port, 1)
        r = try ConfigurationLoader.parseHostPort("[::1]:65535")
        XCTAssertEqual(r.host, "::1")
        XCTAssertEqual(r.port, 65535)
        r = try ConfigurationLoader.parseHostPort("[fe80::1%eth0]:9001")
        XCTAssertEqual(r.host, "fe80::1%eth0")
        r = try ConfigurationLoader.parseHostPort(":9002")
        XCTAssertEqual(r.host, "0.0.0.0")
        XCTAssertEqual(r.port, 9002)

        for bad in ["", "9001", "host:", "host:0", "host:65536", "host:-1", "host:+80", "::1:9001", "[::1]9001",
            "[::1", "[]:9001", "[hostname]:9001", "ho st:9001", "host:12345678901234567890"]
        {
            XCTAssertThrowsError(try ConfigurationLoader.parseHostPort(bad), "'\(bad)' was accepted") { error in
                guard let error = error as? ConfigurationError else {
                    return XCTFail("not a ConfigurationError: \(error)")
                }
                XCTAssertEqual(error.kind, .invalidValue)
                XCTAssertEqual(error.value, bad)
                XCTAssertTrue(error.description.hasPrefix("invalid address '\(bad)': "), error.description)
            }
        }
    }
}

/// `ConfigurationLoader.check` (`ptpchat-relay check-config`): every problem, not the first.
final class ConfigurationCheckTests: XCTestCase {
    private func file(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("check-\(UUID().uuidString).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testEveryProblemIsListedWhereLoadStopsAtTheFirst() async throws {
        let path = try file("relay:\n  nam: x\n  threads: -3\nlimits:\n  max_frame_byte: 5\ntls:\n  listen: [\"0.0.0.0:9443\"]\n")
        let check = await ConfigurationLoader.check(file: path, environment: ["TIMEOUTS_IDLE": "never"])
        XCTAssertEqual(check.problems.map(\.kind), [.unknownKey, .unknownKey, .invalidValue, .invalidValue, .inconsistent, .inconsistent])
        XCTAssertEqual(check.problems.compactMap(\.key), ["relay.nam", "limits.max_frame_byte", "relay.threads", "timeouts.idle", "tls.cert", "tls.key"])
        do {
            _ = try await ConfigurationLoader.load(file: path, environment: ["TIMEOUTS_IDLE": "never"])
            XCTFail("load accepted it")
        } catch let error as ConfigurationError {
            XCTAssertEqual(error.kind, .unknownKey)
            XCTAssertTrue(error.description.contains("'relay.nam', 'limits.max_frame_byte'"), "load names the unknown keys together: \(error)")
        }
    }

    func testSourcesSayWhereEachValueComesFrom() async throws {
        let path = try file("relay:\n  name: alpha\nlimits:\n  flood_burst: 3\n")
        let check = await ConfigurationLoader.check(file: path, environment: ["LIMITS_FLOOD_BURST": "9"], overrides: ["relay.threads": "2"])
        XCTAssertEqual(check.problems, [])
        XCTAssertEqual(check.sources["relay.name"], "file")
        XCTAssertEqual(check.sources["limits.flood_burst"], "environment LIMITS_FLOOD_BURST")
        XCTAssertEqual(check.configuration.limits.floodBurst, 9)
        XCTAssertEqual(check.sources["relay.threads"], "command line")
        XCTAssertEqual(check.sources["store.max_age"], "default")
    }

    func testAnUnreadableFileIsOneProblemAndTheRestIsStillChecked() async {
        let check = await ConfigurationLoader.check(file: "/nonexistent/relay.yaml", environment: ["LIMITS_MAX_CONNECTIONS": "many"])
        XCTAssertEqual(check.problems.map(\.kind), [.unreadableFile, .invalidValue])
    }

    func testSettingsAreWrittenAsInTheFileAndSecretsAreHidden() {
        var configuration = RelayConfiguration()
        configuration.relay.listen = ["0.0.0.0:9001", "[::]:9001"]
        configuration.routing.interval = 0.25
        configuration.timeouts.idle = 90
        configuration.mesh.key = "0123456789abcdef-secret"
        configuration.routing.clientView = .channels
        let settings = Dictionary(uniqueKeysWithValues: ConfigurationLoader.settings(of: configuration).map { ($0.key, $0) })
        XCTAssertEqual(settings.count, ConfigurationLoader.keys.count)
        XCTAssertEqual(settings["relay.listen"]?.value, "[0.0.0.0:9001, [::]:9001]")
        XCTAssertEqual(settings["relay.listen"]?.appliesOnReload, false)
        XCTAssertEqual(settings["routing.interval"]?.value, "0.25")
        XCTAssertEqual(settings["timeouts.idle"]?.value, "90")
        XCTAssertEqual(settings["timeouts.idle"]?.appliesOnReload, true)
        XCTAssertEqual(settings["routing.to_clients"]?.value, "channels")
        XCTAssertEqual(settings["store.sync"]?.value, "full")
        XCTAssertEqual(settings["tls.cert"]?.value, "~")
        XCTAssertEqual(settings["mesh.key"]?.value, "(set, not shown)")
        configuration.mesh.key = nil
        XCTAssertEqual(ConfigurationLoader.settings(of: configuration).first { $0.key == "mesh.key" }?.value, "~")
    }
}
