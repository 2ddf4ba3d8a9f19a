// swift-tools-version: 6.2
import PackageDescription

// The relay's hot path is single-threaded per event loop by construction; dynamic exclusivity
// checks cost about 6 % of relay CPU under load (perf, Benchmarks/compare.sh), so release builds
// of the hot-path modules turn them off. Debug builds and tests keep them. The relay is built for
// use by scripts/swift-build-release, which turns them off in every module (SwiftNIO's too).
let hotPathSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let package = Package(
    name: "ptpchat-relay",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ptpchat-relay", targets: ["ptpchat-relay"]),
        .executable(name: "ptpchat", targets: ["ptpchat"]),
        .library(name: "PTPProtocol", targets: ["PTPProtocol"]),
        .library(name: "RelayCore", targets: ["RelayCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: ["YAML"]),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // Wire protocol: framing, JSON scanning and writing, message model, validation. No I/O.
        .target(
            name: "PTPProtocol",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: hotPathSettings
        ),
        // Relay configuration: PROFILE.md section 11 keys, YAML file, environment, defaults.
        .target(
            name: "RelayConfig",
            dependencies: [
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The offline buffer: store-and-forward queues in SQLite (WAL), one writer with group commit.
        .target(
            name: "RelayStore",
            dependencies: [
                "PTPProtocol",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The relay mesh as pure values: the distance-vector route table and the peering proof. No I/O.
        .target(
            name: "RelayMesh",
            dependencies: [
                "PTPProtocol",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // TLS (PROFILE.md sections 1 and 3): the only module that imports NIOSSL. Server and client
        // contexts from PEM files, reloadable; the node id a verified client certificate proves.
        .target(
            name: "RelayTLS",
            dependencies: [
                "PTPProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The relay: connections, node registry, forwarding, ACK/NACK, floods, channel directory.
        .target(
            name: "RelayCore",
            dependencies: [
                "PTPProtocol",
                "RelayConfig",
                "RelayStore",
                "RelayMesh",
                "RelayTLS",
                "CSocketFilter",
                "CPrefetch",
                "CLinuxExtras",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: hotPathSettings
        ),
        // Linux's socket filter definitions (linux/filter.h): the ban list at the listening sockets.
        .systemLibrary(name: "CSocketFilter"),
        // A cache prefetch hint (__builtin_prefetch): the de-duplication table's lookup.
        .systemLibrary(name: "CPrefetch"),
        // Linux calls the Glibc module lacks: sched_getaffinity (where accepted connections are
        // placed), malloc_usable_size (ChannelSocket's scan), mallopt (ProcessHeap).
        .target(name: "CLinuxExtras"),
        // The system's libsystemd (libsystemd-dev): sd_notify, watchdog, socket activation.
        .systemLibrary(
            name: "CSystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // Operations: systemd integration, the stats endpoint (JSON, Prometheus, the live dashboard), log format.
        .target(
            name: "RelayOps",
            dependencies: [
                "RelayCore",
                "CSystemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                // SHA-256 of the dashboard's inline script and style, for its Content-Security-Policy.
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "ptpchat-relay",
            dependencies: [
                "RelayCore",
                "RelayStore",
                "RelayOps",
                "PTPProtocol",
                "RelayConfig",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // The client's NAT traversal (docs/nat-traversal.md): the CONNECT exchange as a pure state
        // machine, NAT classification, the simultaneous-open dialer on a shared port, direct links,
        // and the frames a client speaks to the relay and over a direct link.
        .target(
            name: "PTPPunch",
            dependencies: [
                "PTPProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // `ptpchat bench` as pure values: the load's shape, the message and ACK frames it writes and
        // scans, and the summary (rates, HDR-histogram percentiles, table, JSON). No I/O.
        .target(
            name: "PTPBench",
            dependencies: [
                "PTPProtocol",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: hotPathSettings
        ),
        .executableTarget(
            name: "ptpchat",
            dependencies: [
                "PTPProtocol",
                "PTPPunch",
                "PTPBench",
                "RelayTLS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            // `ptpchat bench` handles every message of a load test in BenchConnection (perf: the
            // exclusivity checks were about 4 % of its CPU).
            swiftSettings: hotPathSettings
        ),
        .testTarget(
            name: "PTPProtocolTests",
            dependencies: ["PTPProtocol", .product(name: "NIOEmbedded", package: "swift-nio")]
        ),
        .testTarget(
            name: "RelayCoreTests",
            dependencies: ["RelayCore", "RelayStore", "PTPProtocol", "RelayConfig", "CLinuxExtras", .product(name: "NIOEmbedded", package: "swift-nio")]
        ),
        .testTarget(
            name: "RelayOpsTests",
            dependencies: ["RelayOps", "RelayCore", .product(name: "NIOEmbedded", package: "swift-nio")]
        ),
        .testTarget(
            name: "PTPPunchTests",
            dependencies: ["PTPPunch", "PTPProtocol", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")]
        ),
        .testTarget(
            name: "PTPBenchTests",
            dependencies: ["PTPBench", "PTPProtocol", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "RelayMeshTests",
            dependencies: ["RelayMesh", "PTPProtocol"]
        ),
        .testTarget(
            name: "RelayStoreTests",
            dependencies: ["RelayStore", "PTPProtocol"]
        ),
        .testTarget(
            name: "RelayTLSTests",
            dependencies: [
                "RelayTLS", "PTPProtocol",
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "RelayConfigTests",
            dependencies: ["RelayConfig"]
        ),
        // The client's output as pure values (readable lines, NACK sentences, send outcomes, routes).
        .testTarget(
            name: "PTPChatTests",
            dependencies: ["ptpchat", "PTPProtocol"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "PTPProtocol", "RelayTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            // The NAT lab's scripts and C reader, run by the NATLab tests and Benchmarks/nat-lab.sh;
            // the headless-Chromium driver run by DashboardTests.
            exclude: ["NATLab/lab", "Dashboard/dashboard-probe.py"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
