#!/usr/bin/env bash
# Handshakes per second over many bursts: the C baseline relay, the NIO floor relay (as the
# baseline answers a HELLO: one write), the NIO floor with the contract's handshake
# (`floor-contract`: its HELLO at accept, a ROUTING for the client's HELLO: two writes, as PROFILE.md
# section 4 asks of the relay) and the relay, interleaved, BURSTS bursts each. A burst is what
# run-compare's hs/s column measures on its conn load: relay-load opens 1,000 connections (256 in
# flight) and times connect + HELLO round trip for all of them. One burst takes 15-30 ms, so a
# single one moves by a factor of two from run to run on this machine (the column's median of
# three moved between 0.55 and 0.87 for one build); the median of many is the figure to compare.
#
#   Benchmarks/handshakes.sh                       # BURSTS=25: about 2 minutes
#   BURSTS=50 CONNS=1000 Benchmarks/handshakes.sh
#   RELAY_BIN=/old/ptpchat-relay Benchmarks/handshakes.sh   # another build of the relay
#   OTHER_BIN=/old/ptpchat-relay Benchmarks/handshakes.sh   # a second relay build, a fourth column
#
# Unpinned, as run-compare's conn load. The servers run with the accept and per-node limits off (as
# compare.sh); each burst's connections close before the next burst. Prints one line per target:
# median hs/s, its ratio to the baseline's median, the range.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"
BURSTS="${BURSTS:-25}"
CONNS="${CONNS:-1000}"
PORT="${BASE_PORT:-18401}"
NAME=handshakes.sh
# shellcheck source=Benchmarks/shared-bench-tools.sh
source "$ROOT/Benchmarks/shared-bench-tools.sh"

# shellcheck source=Benchmarks/release-builds.sh
source "$ROOT/Benchmarks/release-builds.sh"
build_floor
build_relay

bench_workdir handshakes
export LIMITS_PER_IP_CONNECTIONS=0 LIMITS_PER_IP_NEW_PER_SECOND=0 LIMITS_NODE_MESSAGES_PER_SECOND=0 LIMITS_NODE_BYTES_PER_SECOND=0

NAMES=(baseline floor floor-contract relay)
PORTS=("$PORT" $((PORT + 1)) $((PORT + 4)) $((PORT + 2)))
# As run-compare.sh starts it: one worker per CPU.
"$BENCH/baseline-relay" --port "${PORTS[0]}" --bind 127.0.0.1 --threads "$(nproc)" >"$WORK/baseline.log" 2>&1 &
PIDS+=($!)
"$FLOOR_BIN" --port "${PORTS[1]}" --bind 127.0.0.1 --quiet >"$WORK/floor.log" 2>&1 &
PIDS+=($!)
"$FLOOR_BIN" --port "${PORTS[2]}" --bind 127.0.0.1 --quiet --hello-at-accept >"$WORK/floor-contract.log" 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/relay"
"$RELAY_BIN" --listen "127.0.0.1:${PORTS[3]}" --data-dir "$WORK/relay" --stats off --log-level warning >"$WORK/relay.log" 2>&1 &
PIDS+=($!)
if [[ -n "${OTHER_BIN:-}" ]]; then
    NAMES+=(other)
    PORTS+=($((PORT + 3)))
    mkdir -p "$WORK/other"
    "$OTHER_BIN" --listen "127.0.0.1:${PORTS[4]}" --data-dir "$WORK/other" --stats off --log-level warning >"$WORK/other.log" 2>&1 &
    PIDS+=($!)
fi
wait_listening "${PORTS[@]}"

echo "# $NAME: $BURSTS bursts of $CONNS connections per target, interleaved; load $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$BURSTS"); do
    for k in "${!PORTS[@]}"; do
        line=$("$BENCH/relay-load" --port "${PORTS[$k]}" --conns "$CONNS" --window 1 --messages 2 --duration 2 --drain 1 \
            --settle 0.05 --quiet)
        echo "${NAMES[$k]} $line" >>"$WORK/raw.txt"
    done
done

python3 - "$WORK/raw.txt" <<'EOF'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, text = line.split(" ", 1)
    result = json.loads(text)
    if result.get("hs_failed", 0) or not result.get("hs_per_s"):
        print(f"# {name}: a burst with failed handshakes: {text.strip()}")
        continue
    runs.setdefault(name, []).append(float(result["hs_per_s"]))
if "baseline" not in runs:
    sys.exit("handshakes.sh: no baseline burst completed")
base = statistics.median(runs["baseline"])
print(f"{'target':14} {'hs/s':>9} {'x_base':>7} {'min':>9} {'max':>9}  bursts")
for name, values in runs.items():
    median = statistics.median(values)
    print(f"{name:14} {median:9.0f} {median / base:7.2f} {min(values):9.0f} {max(values):9.0f}  {len(values)}")
print("hs/s = connect + HELLO round trips per second of one burst (median of the bursts); x_base = its")
print("ratio to the C baseline's median in this run.")
EOF
