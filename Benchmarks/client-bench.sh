#!/usr/bin/env bash
# `ptpchat bench` side by side with the independent load generator ../shared/bench/relay-load, in
# one run against one release relay, with the same load shapes: both tools must drive the relay to
# the same msgs/s (the client is not the bottleneck) and see the same latency.
#
#   Benchmarks/client-bench.sh                 # thr and lat, 2 interleaved repetitions (~2.5 min)
#   REPS=1 DURATION=3 Benchmarks/client-bench.sh
#
# Shapes (name:conns:window:payload:placement): thr 100 connections, window 16, 64 B, unpinned
# (`free`: relay and tool share the cores, so msgs/s also follows the tool's own CPU per message);
# thr-split the same with the relay alone on CPU 0 and the tool alone on CPU 1 (`split`: a tool
# that keeps up drives the relay to its own ceiling, relay CPU ~100 %); lat 2 connections,
# window 1, 64 B, relay and load generator on CPU 0 (a wake-up across vCPUs costs ~50 µs here,
# ../shared/NOTES.md). Each run: DURATION s sending, WARMUP s of it left out,
# DRAIN s for outstanding ACKs. relay-load uses LOAD_THREADS threads; ptpchat bench runs once with
# the same number and once with BENCH_THREADS (its default, one per core).
# Prints medians: msgs/s = MESSAGEs delivered per second, p99 = send->delivery (both tools put the
# monotonic send time into the payload), cpu% = the load generator's CPU over the whole process
# (100 = one core), srv% = the relay's CPU during the run, and the ratios of ptpchat bench to
# relay-load.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"
PORT="${RELAY_PORT:-17013}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-1}"
DRAIN="${DRAIN:-2}"
REPS="${REPS:-2}"
LOAD_THREADS="${LOAD_THREADS:-1}"
BENCH_THREADS="${BENCH_THREADS:-$(nproc)}"
SHAPES="${SHAPES:-thr:100:16:64:free thr-split:100:16:64:split lat:2:1:64:same}"

command -v python3 >/dev/null || { echo "client-bench.sh: needs python3" >&2; exit 2; }
NAME=client-bench.sh
# shellcheck source=Benchmarks/shared-bench-tools.sh
source "$ROOT/Benchmarks/shared-bench-tools.sh"
LOADBIN="$BENCH"

"$ROOT/scripts/swift-build-release" --product ptpchat-relay --scratch-path "$SCRATCH" >&2
"$ROOT/scripts/swift-build-release" --product ptpchat --scratch-path "$SCRATCH" >&2
BIN="$("$ROOT/scripts/swift-build-release" --scratch-path "$SCRATCH" --show-bin-path)"

WORK="$(mktemp -d -t ptpchat-client-bench.XXXXXX)"
RELAY_PID=
cleanup() {
    if [[ -n "$RELAY_PID" ]]; then
        kill -TERM "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# The load opens 100 connections from 127.0.0.1 that send as fast as they can: the per-IP accept
# limits and the per-node budgets off, as Benchmarks/compare.sh does.
LIMITS_PER_IP_CONNECTIONS=0 LIMITS_PER_IP_NEW_PER_SECOND=0 LIMITS_NODE_MESSAGES_PER_SECOND=0 LIMITS_NODE_BYTES_PER_SECOND=0 \
    "$BIN/ptpchat-relay" --listen "127.0.0.1:$PORT" --stats off --data-dir "$WORK/data" --log-level warning >"$WORK/relay.log" 2>&1 &
RELAY_PID=$!
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 "$RELAY_PID" 2>/dev/null || { echo "client-bench.sh: the relay did not start:" >&2; cat "$WORK/relay.log" >&2; exit 2; }
    sleep 0.1
done

# Pins the relay (all its threads) to $1 ("" = all CPUs).
place_relay() {
    local cpus="${1:-0-$(($(nproc) - 1))}" task
    for task in /proc/"$RELAY_PID"/task/*; do taskset -p -c "$cpus" "${task##*/}" >/dev/null 2>&1 || true; done
}

# The relay's CPU time so far, in clock ticks.
relay_ticks() {
    local stat
    stat="$(cat "/proc/$RELAY_PID/stat")"
    stat="${stat##*) }"
    awk '{ print $12 + $13 }' <<<"$stat"
}

# One run: appends "shape tool threads msgs_per_s p99_us cpu_pct lost errors srv_pct" to $WORK/results.
run_one() {
    local shape="$1" conns="$2" window="$3" payload="$4" placement="$5" tool="$6" threads="$7"
    local pin=() out="$WORK/run.json" times="$WORK/run.time"
    case "$placement" in
        same) pin=(taskset -c 0); place_relay 0 ;;
        split) pin=(taskset -c 1); place_relay 0 ;;
        *) place_relay "" ;;
    esac
    local TIMEFORMAT='%U %S %R' ticks_before
    ticks_before="$(relay_ticks)"
    if [[ "$tool" == relay-load ]]; then
        { time timeout -k 5 $((DURATION + DRAIN + 60)) "${pin[@]}" "$LOADBIN/relay-load" --host 127.0.0.1 --port "$PORT" \
            --conns "$conns" --window "$window" --payload "$payload" --duration "$DURATION" --warmup "$WARMUP" \
            --drain "$DRAIN" --threads "$threads" --quiet >"$out" 2>"$WORK/run.err"; } 2>"$times" || true
    else
        { time timeout -k 5 $((DURATION + DRAIN + 60)) "${pin[@]}" "$BIN/ptpchat" bench --relay "127.0.0.1:$PORT" \
            --conns "$conns" --window "$window" --payload "$payload" --duration "$DURATION" --warmup "$WARMUP" \
            --drain "$DRAIN" --threads "$threads" --messages 1000000000000 --json >"$out" 2>"$WORK/run.err"; } 2>"$times" || true
    fi
    python3 - "$shape" "$tool" "$threads" "$out" "$times" "$(( $(relay_ticks) - ticks_before ))" "$(getconf CLK_TCK)" \
        >>"$WORK/results" <<'PY'
import json, sys
shape, tool, threads, out, times, ticks, hz = sys.argv[1:8]
try:
    line = [l for l in open(out).read().splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
except Exception:
    print(shape, tool, threads, "failed"); sys.exit()
user, system, real = (float(x) for x in open(times).read().split()[-3:])
cpu = 100 * (user + system) / real if real > 0 else 0
if tool == "relay-load":
    rate, p99, lost, errors = r["delivered_per_s"], r["lat_p99_us"], r["lost"] + r["unacked"], r["errors"]
else:
    rate, p99, lost, errors = r["msgs_per_s"], r["latency"]["p99_us"], r["lost"] + r["unacked"], r["errors"]
srv = 100 * int(ticks) / int(hz) / real if real > 0 else 0
print(shape, tool, threads, round(rate), round(p99, 1), round(cpu), lost, errors, round(srv))
PY
    echo "client-bench: $(tail -n 1 "$WORK/results")" >&2
}

for rep in $(seq 1 "$REPS"); do
    for spec in $SHAPES; do
        IFS=: read -r shape conns window payload placement <<<"$spec"
        run_one "$shape" "$conns" "$window" "$payload" "$placement" relay-load "$LOAD_THREADS"
        run_one "$shape" "$conns" "$window" "$payload" "$placement" ptpchat-bench "$LOAD_THREADS"
        if [[ "$BENCH_THREADS" != "$LOAD_THREADS" ]]; then
            run_one "$shape" "$conns" "$window" "$payload" "$placement" ptpchat-bench "$BENCH_THREADS"
        fi
    done
done
place_relay ""

echo "# ptpchat bench vs relay-load  $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(nproc) cpus  DURATION=$DURATION WARMUP=$WARMUP REPS=$REPS"
echo "# shapes: $SHAPES (name:conns:window:payload:placement)"
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = {}
order = []
for line in open(sys.argv[1]):
    f = line.split()
    key = (f[0], f[1], f[2])
    if key not in rows:
        rows[key] = []
        order.append(key)
    if f[3] != "failed":
        rows[key].append([float(x) for x in f[3:9]])
print(f"{'shape':9} {'tool':14} {'thr':>3} {'msgs/s':>9} {'p99_us':>9} {'cpu%':>5} {'srv%':>5} {'lost':>6} {'err':>4} {'runs':>4}  {'x_msgs':>6} {'x_p99':>6}")
base = {}
for key in order:
    runs = rows[key]
    if not runs:
        print(f"{key[0]:9} {key[1]:14} {key[2]:>3}  all runs failed")
        continue
    med = [statistics.median(r[i] for r in runs) for i in range(3)]
    lost = sum(r[3] for r in runs); err = sum(r[4] for r in runs)
    if key[1] == "relay-load":
        base[key[0]] = med
    b = base.get(key[0])
    xm = f"{med[0] / b[0]:.2f}" if b and b[0] else "-"
    xp = f"{med[1] / b[1]:.2f}" if b and b[1] else "-"
    srv = statistics.median(r[5] for r in runs)
    print(f"{key[0]:9} {key[1]:14} {key[2]:>3} {med[0]:9.0f} {med[1]:9.1f} {med[2]:5.0f} {srv:5.0f} {lost:6.0f} {err:4.0f} {len(runs):>4}  {xm:>6} {xp:>6}")
print()
print("msgs/s = MESSAGEs delivered per second (median of runs); p99_us = send->delivery p99; cpu% = the load")
print("generator's CPU over its whole process; srv% = the relay's over the same time (100 = one core); lost =")
print("sent but never delivered or never ACKed; x_msgs, x_p99 =")
print("ptpchat bench / relay-load of the same shape in this run (x_msgs >= 1: ptpchat bench drives the relay as hard).")
PY
