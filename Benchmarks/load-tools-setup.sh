# Sourced by security.sh and memory.sh: the load tools and the relay they measure. Expects ROOT,
# BENCH, SCRATCH and NAME (for messages); RELAY_BIN may name a relay build to use instead of
# building one. Builds ../shared/bench (relay-load, baseline-relay; in the cache when that copy is
# read-only, as run-compare.sh does) and Benchmarks/tls-load.c. Sets BENCH (maybe moved), WORK
# (removed on exit) with WORK/tls-load, and BIN, the relay.

[[ -f "$BENCH/relay-load.c" ]] || { echo "$NAME: no harness at $BENCH" >&2; exit 2; }
if [[ ! -x "$BENCH/relay-load" || ! -x "$BENCH/baseline-relay" ]]; then
    if [[ ! -w "$BENCH" ]]; then # a read-only copy (CI): build in the cache, as run-compare.sh does
        CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ptpchat-bench"
        mkdir -p "$CACHE" && cp "$BENCH"/Makefile "$BENCH"/*.c "$BENCH"/*.h "$CACHE"/
        BENCH="$CACHE"
    fi
    make -C "$BENCH" >&2
fi

WORK="$(mktemp -d -t "ptpchat-$NAME.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -Wall -Wextra -o "$WORK/tls-load" "$ROOT/Benchmarks/tls-load.c" -lssl -lcrypto

if [[ -n "${RELAY_BIN:-}" ]]; then
    BIN="$RELAY_BIN"
else
    swift build -c release --product ptpchat-relay --scratch-path "$SCRATCH" >&2
    BIN="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/ptpchat-relay"
fi
