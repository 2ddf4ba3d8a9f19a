# Sourced by the benchmarks that run the relay and the NIO floor relay: their release builds, as
# the relay is built to be run (scripts/swift-build-release). Expects ROOT and SCRATCH.

# Builds the relay in SCRATCH unless RELAY_BIN already names a build; sets RELAY_BIN.
build_relay() {
    if [[ -z "${RELAY_BIN:-}" ]]; then
        "$ROOT/scripts/swift-build-release" --product ptpchat-relay --scratch-path "$SCRATCH" >&2
        RELAY_BIN="$("$ROOT/scripts/swift-build-release" --scratch-path "$SCRATCH" --show-bin-path)/ptpchat-relay"
    fi
}

# Builds the NIO floor relay (Benchmarks/NIOFloor, with its own scratch path); sets FLOOR_BIN.
build_floor() {
    local floor_dir="$ROOT/Benchmarks/NIOFloor"
    "$ROOT/scripts/swift-build-release" --package-path "$floor_dir" --scratch-path "$floor_dir/.build" >&2
    FLOOR_BIN="$("$ROOT/scripts/swift-build-release" --package-path "$floor_dir" --scratch-path "$floor_dir/.build" --show-bin-path)/nio-floor-relay"
}
