#!/usr/bin/env bash
# Instructions per delivered message (MESSAGE in and out plus ACK in and out), counted by
# valgrind's callgrind for the relay and the C baseline relay under the same load: the `thr`
# shape (100 connections in pairs, window 64, payload 256). Instruction counts do not depend on
# what else the machine is doing, so this is the repeatable figure for comparing builds.
#
#   Benchmarks/instructions.sh                  # both targets, ~2 min
#   PROFILE=1 Benchmarks/instructions.sh        # also the relay's top functions (callgrind_annotate)
#   KEEP=/tmp/cg Benchmarks/instructions.sh     # keep the callgrind files there (callgrind_annotate --tree=caller)
#   SHAPE=conn Benchmarks/instructions.sh       # the conn load instead (1000 connections, window 8)
#   SHAPE=lat Benchmarks/instructions.sh        # the lat load (2 connections, window 1)
#   CACHE_SIM=1 Benchmarks/instructions.sh      # also simulated cache misses and branch mispredicts
#                                               # per message (one core's L1 and L2 as last level)
#   FLOOR_BIN=Benchmarks/NIOFloor/.build/release/nio-floor-relay TARGETS="baseline floor relay" \
#       BREAKDOWN=1 Benchmarks/instructions.sh  # with the NIO floor relay, and where each one's
#                                               # instructions go (NIO, Swift runtime, libc, own code)
#
# Both run one event loop (`--threads 1`): with two, the count moves by ±4 % from run to run with
# which shard each connection lands on (a copy for another shard goes through its batch); with
# one it repeats within 0.5 %. RELAY_THREADS=2 runs the relay with two loops, to measure what
# crossing shards costs (the share of messages that cross differs from run to run, and between
# the N1 and N2 runs: docs/performance.md, the ninth round, fits a cost per crossing message).
#
# Each target runs twice under callgrind, with N1 and then N2 messages; (Ir(N2) - Ir(N1)) /
# (N2 - N1) leaves out start-up, handshakes and shutdown. Binaries are copied with their debug
# information stripped (valgrind 3.19 cannot read Swift's DWARF 5) and run with a small preload
# that copies the mask sigsuspend is given (valgrind 3.19 writes into it, and libdispatch's is in
# read-only memory): Benchmarks/callgrind-setup.sh. SCRATCH_PATH or RELAY_BIN measure another build.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"
N1="${N1:-10000}"
N2="${N2:-50000}"
PORT="${RELAY_PORT:-17113}"
# The load: the thr shape by default; SHAPE=conn for run-compare's conn (1000 conns, window 8),
# SHAPE=lat for its lat (2 conns, window 1, payload 64).
case "${SHAPE:-thr}" in
    thr) LOAD=(--conns 100 --window 64 --payload 256 --pattern pair --quiet) ;;
    conn) LOAD=(--conns 1000 --window 8 --payload 256 --pattern pair --quiet) ;;
    # run-compare's lat: one message in flight, so every message is its own read, write and wake-up
    lat) LOAD=(--conns 2 --window 1 --payload 64 --pattern pair --quiet) ;;
    *) echo "instructions.sh: SHAPE is thr, conn or lat" >&2; exit 2 ;;
esac

# CACHE_SIM=1: callgrind simulates one core's caches (L1 instruction and data, and its L2 as the
# last level: valgrind's own guess here is the whole L3, where nothing a relay touches misses) and
# branch prediction. Simulated, not measured (this VM has no hardware counters), but it is where a
# message's time goes beyond its instructions: the same counts, different misses.
CG_SIM=()
if [[ "${CACHE_SIM:-0}" == 1 ]]; then
    L2="${L2_BYTES:-$(getconf LEVEL2_CACHE_SIZE 2>/dev/null || echo 0)}"
    [[ "$L2" =~ ^[0-9]+$ && "$L2" -gt 0 ]] || L2=524288
    CG_SIM=(--cache-sim=yes --branch-sim=yes "--LL=$L2,8,64")
fi

NAME=instructions.sh
# shellcheck source=Benchmarks/callgrind-setup.sh
source "$ROOT/Benchmarks/callgrind-setup.sh"

wait_port() {
    for _ in $(seq 200); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# run TARGET MESSAGES: prints the callgrind total and checks that nothing was lost.
run() {
    local target=$1 messages=$2 out="$WORK/$1.$2.cg" pid
    rm -rf "$WORK/data" && mkdir "$WORK/data"
    case $target in
        relay) LD_PRELOAD="$WORK/sigsuspend.so" valgrind --tool=callgrind "${CG_SIM[@]}" --callgrind-out-file="$out" \
            "$WORK/relay" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --stats off --threads "${RELAY_THREADS:-1}" --log-level warning >"$WORK/$target.log" 2>&1 &
            ;;
        baseline) valgrind --tool=callgrind "${CG_SIM[@]}" --callgrind-out-file="$out" \
            "$WORK/baseline" --port "$PORT" --bind 127.0.0.1 --threads 1 >"$WORK/$target.log" 2>&1 &
            ;;
        floor) LD_PRELOAD="$WORK/sigsuspend.so" valgrind --tool=callgrind "${CG_SIM[@]}" --callgrind-out-file="$out" \
            "$WORK/floor" --port "$PORT" --bind 127.0.0.1 --threads 1 --quiet >"$WORK/$target.log" 2>&1 &
            ;;
    esac
    pid=$!
    wait_port "$PORT" "$pid" || { echo "instructions.sh: $target did not start:" >&2; tail "$WORK/$target.log" >&2; exit 1; }
    "$BENCH/relay-load" --port "$PORT" --messages "$messages" "${LOAD[@]}" >"$WORK/load.json"
    kill -TERM "$pid"
    wait "$pid" || true
    python3 - "$WORK/load.json" "$messages" "$target" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
want = int(sys.argv[2])
bad = {k: d[k] for k in ("lost", "dup", "errors", "unacked") if d[k]}
if d["acked"] != want or bad:
    sys.exit(f"instructions.sh: {sys.argv[3]}: {d['acked']} of {want} acked, {bad}")
EOF
    awk '/^totals:/ { print $2 }' "$out"
}

# inclusive OUT SYMBOL: the instructions spent in SYMBOL and what it calls (callgrind_annotate).
inclusive() {
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
        awk -v sym="$2" '!found && index($0, sym) { gsub(",", "", $1); value = $1; found = 1 } END { print found ? value : 0 }'
}

# The relay's frame handling (parse, validate, route, write the copies and the ACK) as one figure
# that does not depend on how the load happened to batch into reads and writes: the whole-process
# figure moves by a few percent from run to run with that batching, this one much less.
FRAME_SYMBOL='RelayShard.handleFrame'
printf "%-9s %14s %14s %12s %8s %12s\n" target "Ir(N=$N1)" "Ir(N=$N2)" "Ir/msg" x_base "frames/msg"
declare -A PER
for target in ${TARGETS:-baseline relay}; do
    a=$(run "$target" "$N1")
    b=$(run "$target" "$N2")
    PER[$target]=$(( (b - a) / (N2 - N1) ))
    ratio=-  # against the baseline, when it ran first (TARGETS may leave it out)
    [[ -n "${PER[baseline]:-}" ]] && ratio=$(awk -v x="${PER[$target]}" -v y="${PER[baseline]}" 'BEGIN { printf "%.2f", x / y }')
    frames=-
    if [[ $target == relay ]] && command -v callgrind_annotate >/dev/null; then
        # The mangled name of RelayShard.handleFrame(_:_:) up to its frame's type (a ByteBuffer
        # before 2026-12-06, the bytes since): the first line, the largest inclusive count.
        fa=$(inclusive "$WORK/relay.$N1.cg" '9RelayCore0A5ShardC11handleFrameySbAA10ConnectionC_')
        fb=$(inclusive "$WORK/relay.$N2.cg" '9RelayCore0A5ShardC11handleFrameySbAA10ConnectionC_')
        frames=$(( (fb - fa) / (N2 - N1) ))
    fi
    printf "%-9s %14d %14d %12d %8s %12s\n" "$target" "$a" "$b" "${PER[$target]}" "$ratio" "$frames"
done
echo "Ir/msg = instructions per delivered message (MESSAGE in and out, ACK in and out), all threads;"
echo "frames/msg = of those, the relay's $FRAME_SYMBOL (parse, validate, route, write), steadier from run to run."

if [[ "${CACHE_SIM:-0}" == 1 ]]; then
    echo
    echo "simulated per delivered message (L1 as valgrind detects it, L2 $((L2 / 1024)) KiB as the last level):"
    python3 - "$N1" "$N2" "$WORK" ${TARGETS:-baseline relay} <<'EOF'
import sys
n1, n2, work, targets = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def totals(path):
    events = totals = None
    for line in open(path, errors="replace"):
        if line.startswith("events:"): events = line.split()[1:]
        if line.startswith("totals:"): totals = [int(v) for v in line.split()[1:]]
    return dict(zip(events, totals))
print(f"{'target':9s} {'I1 miss':>8s} {'D1 miss':>8s} {'L2 miss':>8s} {'branch miss':>12s} {'indirect miss':>14s}")
for t in targets:
    a, b = totals(f"{work}/{t}.{n1}.cg"), totals(f"{work}/{t}.{n2}.cg")
    per = lambda *keys: sum(b[k] - a[k] for k in keys) / (n2 - n1)
    print(f"{t:9s} {per('I1mr'):8.1f} {per('D1mr', 'D1mw'):8.1f} {per('ILmr', 'DLmr', 'DLmw'):8.1f} {per('Bcm'):12.1f} {per('Bim'):14.1f}")
EOF
fi
if [[ "${BREAKDOWN:-0}" == 1 ]] && command -v callgrind_annotate >/dev/null; then
    echo
    # shellcheck disable=SC2086
    python3 "$ROOT/Benchmarks/cg_breakdown.py" --n1 "$N1" --n2 "$N2" --unit msg \
        $(for t in ${TARGETS:-baseline relay}; do echo "$t=$WORK/$t.$N1.cg,$WORK/$t.$N2.cg"; done)
fi
if [[ -n "${KEEP:-}" ]]; then
    mkdir -p "$KEEP" && cp "$WORK"/*.cg "$WORK/relay" "$KEEP/"
fi
if [[ "${PROFILE:-0}" == 1 ]] && command -v callgrind_annotate >/dev/null; then
    echo
    echo "relay, top functions by own instructions (N=$N2 run):"
    callgrind_annotate --threshold=90 "$WORK/relay.$N2.cg" 2>/dev/null | sed -n '/^Ir/,$p' | head -45 | cut -c1-160
fi
