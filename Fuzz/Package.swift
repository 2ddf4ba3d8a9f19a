// swift-tools-version: 6.2
import PackageDescription

// libFuzzer targets for the wire protocol (issue 9). A package of its own so that the main
// package's `swift build` and `make test` never see them: they are built only by Fuzz/run.sh, with
// `swift build -c release --sanitize fuzzer --sanitize address` into Fuzz/.build-fuzz.
//
// Each target is an executable whose entry point is libFuzzer's `main` (linked in by
// `-sanitize=fuzzer`); `-parse-as-library` keeps Swift from emitting a `main` of its own.
let fuzzTarget: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

let package = Package(
    name: "ptpchat-relay-fuzz",
    dependencies: [
        .package(name: "ptpchat-relay", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // Invariant checks the targets share: a failed check traps, which libFuzzer reports as a crash.
        .target(
            name: "FuzzSupport",
            dependencies: [
                .product(name: "PTPProtocol", package: "ptpchat-relay"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "fuzz-frame-decoder",
            dependencies: [
                "FuzzSupport",
                .product(name: "PTPProtocol", package: "ptpchat-relay"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: fuzzTarget
        ),
        .executableTarget(
            name: "fuzz-json-tape",
            dependencies: ["FuzzSupport", .product(name: "PTPProtocol", package: "ptpchat-relay"), .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: fuzzTarget
        ),
        .executableTarget(
            name: "fuzz-message-reader",
            dependencies: ["FuzzSupport", .product(name: "PTPProtocol", package: "ptpchat-relay"), .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: fuzzTarget
        ),
        .executableTarget(
            name: "fuzz-mesh-routing",
            dependencies: ["FuzzSupport", .product(name: "PTPProtocol", package: "ptpchat-relay"), .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: fuzzTarget
        ),
    ],
    swiftLanguageModes: [.v6]
)
