#!/usr/bin/env bash
# The floor of Swift on NIO (issue 10): the C baseline relay, the NIO floor relay
# (Benchmarks/NIOFloor: the baseline's algorithm on SwiftNIO with the least code per frame) and the
# relay, measured interleaved in one run of the harness (baseline floor relay baseline floor relay
# ...) on run-compare's lat, thr and conn loads. Prints the harness's table, then one table of
# ratios to the C baseline: msg/s per load and handshakes/s (connect + HELLO round trip, from the
# conn load's 1000 connections).
#
#   Benchmarks/nio-floor.sh                         # REPS=3 DURATION=5: about 3 minutes
#   REPS=5 Benchmarks/nio-floor.sh                  # any run-compare knob passes through
#   FLOOR_THREADS=1 Benchmarks/nio-floor.sh         # the floor's loops (default: one per core)
#   FLOOR_CMD="exec /old/ptpchat-relay --listen 127.0.0.1:18302 --data-dir /tmp/d" Benchmarks/nio-floor.sh
#                                                   # another build in the floor's place (A/B)
#
# Builds both in release: the floor with its own scratch path (Benchmarks/NIOFloor/.build), the
# relay as compare.sh does (SCRATCH_PATH, default .build-release; or RELAY_BIN names a build). The relay runs with the accept
# and per-node limits off, as in compare.sh. The harness is Benchmarks/run-compare-floor.sh, a copy
# of ../shared/bench/run-compare.sh with the `floor` target added. Ports: BASE_PORT, FLOOR_PORT,
# RELAY_PORT, STATS_PORT (18301-18304 by default).
# Instruction counts per message and per handshake: Benchmarks/instructions.sh and
# instructions-hs.sh with TARGETS="baseline floor relay".
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"
# shellcheck source=Benchmarks/release-builds.sh
source "$ROOT/Benchmarks/release-builds.sh"
build_floor
build_relay
DATA="$(mktemp -d -t ptpchat-floor.XXXXXX)"
OUT="$(mktemp -d -t ptpchat-floor-out.XXXXXX)"
trap 'rm -rf "$DATA"' EXIT

export LIMITS_PER_IP_CONNECTIONS="${LIMITS_PER_IP_CONNECTIONS:-0}"
export LIMITS_PER_IP_NEW_PER_SECOND="${LIMITS_PER_IP_NEW_PER_SECOND:-0}"
export LIMITS_NODE_MESSAGES_PER_SECOND="${LIMITS_NODE_MESSAGES_PER_SECOND:-0}"
export LIMITS_NODE_BYTES_PER_SECOND="${LIMITS_NODE_BYTES_PER_SECOND:-0}"
export BASE_PORT="${BASE_PORT:-18301}"
export FLOOR_PORT="${FLOOR_PORT:-18302}"
export RELAY_PORT="${RELAY_PORT:-18303}"
STATS_PORT="${STATS_PORT:-18304}"
FLOOR_ARGS=()
[[ -n "${FLOOR_THREADS:-}" ]] && FLOOR_ARGS=(--threads "$FLOOR_THREADS")
# FLOOR_CMD from the caller replaces the floor: e.g. another relay build, for an A/B of two builds
# interleaved in one run (its rows are then labelled `floor`).
export FLOOR_CMD="${FLOOR_CMD:-exec '$FLOOR_BIN' --port $FLOOR_PORT --bind 127.0.0.1 --quiet ${FLOOR_ARGS[*]:-}}"
export RELAY_CMD="exec '$RELAY_BIN' --listen 127.0.0.1:$RELAY_PORT --stats 127.0.0.1:$STATS_PORT --data-dir '$DATA' --log-level warning ${RELAY_ARGS:-}"
export TARGETS="${TARGETS:-baseline floor relay}"
export OUT_DIR="$OUT"
echo "# load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
"$ROOT/Benchmarks/run-compare-floor.sh"
echo "# load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

# One table from the harness's raw lines: medians of msg/s per load and of hs/s on the conn load,
# as ratios to the baseline of the same run.
echo
python3 - "$OUT/results.txt" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    cfg, tgt, _rep, js = line.split(" ", 3)
    d = json.loads(js)
    if d.get("failed"):
        continue
    runs.setdefault((cfg, tgt), []).append(d)
def med(cfg, tgt, key):
    v = [d[key] for d in runs.get((cfg, tgt), []) if d.get(key) is not None]
    return statistics.median(v) if v else None
cols = [("lat", "delivered_per_s", "lat"), ("thr", "delivered_per_s", "thr"), ("conn", "delivered_per_s", "conn"),
        ("conn", "hs_per_s", "hs/s")]
print(f"{'target':12}" + "".join(f"{c[2]:>10}" for c in cols) + "   (ratio to the C baseline, median of the runs)")
for tgt in ("baseline", "floor", "relay"):
    row = f"{tgt:12}"
    for cfg, key, _ in cols:
        b, x = med(cfg, "baseline", key), med(cfg, tgt, key)
        row += f"{x / b:10.2f}" if b and x else f"{'-':>10}"
    print(row)
row = f"{'relay/floor':12}"
for cfg, key, _ in cols:
    f, x = med(cfg, "floor", key), med(cfg, "relay", key)
    row += f"{x / f:10.2f}" if f and x else f"{'-':>10}"
print(row)
print("lat/thr/conn = msg/s on those loads; hs/s = connect + HELLO round trips per second (conn load,")
print("1000 connections); floor = Benchmarks/NIOFloor; relay/floor = the relay's share of the floor.")
PY
echo "# results: $OUT"
