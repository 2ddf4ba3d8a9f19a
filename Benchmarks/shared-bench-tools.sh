# Sourced by the benchmark scripts: builds the C tools of ../shared/bench (relay-load,
# baseline-relay) in a cache folder of their own and points BENCH at it. The shared folder is never
# written to: it is read-only, but a test of `-w` passes for root anyway, and the binaries of one
# checkout's build would then land in a folder other checkouts read.
# Expects BENCH (the shared folder) and NAME (for messages).
[[ -f "$BENCH/relay-load.c" ]] || { echo "$NAME: no load tools at $BENCH" >&2; exit 2; }
SHARED_BENCH_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ptpchat-bench"
mkdir -p "$SHARED_BENCH_CACHE"
# -p keeps the sources' times: make rebuilds only what changed since the last copy.
cp -p "$BENCH"/Makefile "$BENCH"/*.c "$BENCH"/*.h "$SHARED_BENCH_CACHE"/
make -s -C "$SHARED_BENCH_CACHE" >&2
BENCH="$SHARED_BENCH_CACHE"
