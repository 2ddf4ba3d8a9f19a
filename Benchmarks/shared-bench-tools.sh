# Sourced by the benchmark scripts: builds the C tools of ../shared/bench (relay-load,
# baseline-relay) in a cache folder of their own and points BENCH at it. The shared folder is never
# written to: it is read-only, but a test of `-w` passes for root anyway, and the binaries of one
# checkout's build would then land in a folder other checkouts read.
# Expects BENCH (the shared folder) and NAME (for messages). Also defines bench_workdir and
# wait_listening (below) for scripts that start servers of their own.
[[ -f "$BENCH/relay-load.c" ]] || { echo "$NAME: no load tools at $BENCH" >&2; exit 2; }
SHARED_BENCH_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ptpchat-bench"
mkdir -p "$SHARED_BENCH_CACHE"
# -p keeps the sources' times: make rebuilds only what changed since the last copy.
cp -p "$BENCH"/Makefile "$BENCH"/*.c "$BENCH"/*.h "$SHARED_BENCH_CACHE"/
make -s -C "$SHARED_BENCH_CACHE" >&2
BENCH="$SHARED_BENCH_CACHE"

# A scratch folder for servers the script starts in the background: their pids go in PIDS; at exit
# they are stopped and WORK is removed. Usage: bench_workdir NAME
bench_workdir() {
    WORK="$(mktemp -d -t "ptpchat-$1.XXXXXX")"
    PIDS=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    if [[ ${#PIDS[@]} -gt 0 ]]; then kill "${PIDS[@]}" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

# Waits up to 30 s for something to listen on each loopback TCP port given; exits if nothing does.
wait_listening() {
    local port
    for port in "$@"; do
        for _ in $(seq 300); do
            [[ -n $(ss -Hltn "( sport = :$port )") ]] && break
            sleep 0.1
        done
        [[ -n $(ss -Hltn "( sport = :$port )") ]] || { echo "$NAME: nothing listens on $port" >&2; exit 1; }
    done
}
