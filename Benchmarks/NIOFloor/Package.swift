// swift-tools-version: 6.0
// The NIO floor relay: a benchmark instrument, not part of the main package (CI and `make test`
// never build it). Benchmarks/nio-floor.sh builds and runs it; see the header of main.swift.
import PackageDescription

let package = Package(
    name: "NIOFloor",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2")
    ],
    targets: [
        .executableTarget(
            name: "nio-floor-relay",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            // As the relay's hot-path modules: no dynamic exclusivity checks in release builds.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        )
    ]
)
