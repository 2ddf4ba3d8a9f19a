# Sourced by security.sh and memory.sh: the load tools and the relay they measure. Expects ROOT,
# BENCH, SCRATCH and NAME (for messages); RELAY_BIN may name a relay build to use instead of
# building one. Builds ../shared/bench (relay-load, baseline-relay; in a cache folder:
# shared-bench-tools.sh) and Benchmarks/tls-load.c. Sets BENCH (the cache folder), WORK
# (removed on exit) with WORK/tls-load, and BIN, the relay.

# shellcheck source=Benchmarks/shared-bench-tools.sh
source "$ROOT/Benchmarks/shared-bench-tools.sh"

WORK="$(mktemp -d -t "ptpchat-$NAME.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -Wall -Wextra -o "$WORK/tls-load" "$ROOT/Benchmarks/tls-load.c" -lssl -lcrypto

if [[ -n "${RELAY_BIN:-}" ]]; then
    BIN="$RELAY_BIN"
else
    "$ROOT/scripts/swift-build-release" --product ptpchat-relay --scratch-path "$SCRATCH" >&2
    BIN="$("$ROOT/scripts/swift-build-release" --scratch-path "$SCRATCH" --show-bin-path)/ptpchat-relay"
fi
