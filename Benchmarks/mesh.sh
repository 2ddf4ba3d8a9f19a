#!/usr/bin/env bash
# The `mesh` scenario: msg/s when every message crosses the mesh, as a ratio to one relay, in one
# run, with the independent load generator (../shared/bench/relay-load).
#
#   single  relay-load (100 conns, pairs 2i<->2i+1, window 64, payload 256) against one relay
#   mesh    the same load against two peered relays: every even connection goes to relay A and
#           every odd one to relay B, so both ends of every pair are on different relays and each
#           message is handled twice, on the same two cores
#
# relay-load connects to one port; the split is made by the kernel: relay-load spreads its
# connections over two loopback source addresses (--src-ips), and an iptables DNAT rule sends the
# odd ones (127.0.0.3) to relay B's port. Needs root and iptables (apt-get install -y iptables);
# the rule is removed again on exit. Runs are interleaved (single, mesh, single, mesh, ...).
#
#   Benchmarks/mesh.sh                 # REPS=3 DURATION=5
#   REPS=1 DURATION=3 Benchmarks/mesh.sh
#   DRAIN=12 Benchmarks/mesh.sh        # longer wait for the last ACKs [3 s]
#
# `unacked` in the mesh row: messages the sending relay answered with NACK `slow_consumer`,
# `stored: true` because the peer link was over its outbound soft limit (PROFILE.md section 10):
# stored and delivered later (they count as delivered), never ACKed to relay-load, which does not
# read NACKs. A longer DRAIN does not change them; the relays' `slow_consumer` drops match them.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"
REPS="${REPS:-3}"
DURATION="${DURATION:-5}"
CONNS="${CONNS:-100}"
WINDOW="${WINDOW:-64}"
PAYLOAD="${PAYLOAD:-256}"
PORT_A="${PORT_A:-17011}"
PORT_B="${PORT_B:-17012}"
PORT_S="${PORT_S:-17013}"

NAME=mesh.sh
# shellcheck source=Benchmarks/shared-bench-tools.sh
source "$ROOT/Benchmarks/shared-bench-tools.sh"
command -v iptables >/dev/null || { echo "mesh.sh: needs iptables (apt-get install -y iptables) and root" >&2; exit 2; }

"$ROOT/scripts/swift-build-release" --product ptpchat-relay --scratch-path "$SCRATCH" >&2
BIN="$("$ROOT/scripts/swift-build-release" --scratch-path "$SCRATCH" --show-bin-path)/ptpchat-relay"
WORK="$(mktemp -d -t ptpchat-mesh.XXXXXX)"
PIDS=()
RULE=(-t nat -p tcp -s 127.0.0.3 -d 127.0.0.1 --dport "$PORT_A" -j DNAT --to-destination "127.0.0.1:$PORT_B")
cleanup() {
    iptables -D OUTPUT "${RULE[@]}" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

KEY="benchmark-mesh-key-0123456789abcdef"
start_relay() { # name port peers
    local name=$1 port=$2 peers=$3
    mkdir -p "$WORK/$name"
    cat >"$WORK/$name.yaml" <<EOF
relay:
  name: $name
  listen: ["127.0.0.1:$port"]
  data_dir: "$WORK/$name"
stats:
  listen: "off"
log:
  level: info
mesh:
  key: "$KEY"
  peers: [$peers]
# The load generator's 100 connections come from one or two addresses and send as fast as they
# can: the per-IP accept limits and the per-node read budget would measure the limits instead.
limits:
  per_ip_connections: 0
  per_ip_new_per_second: 0
  node_messages_per_second: 0
  node_bytes_per_second: 0
EOF
    "$BIN" --config "$WORK/$name.yaml" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "mesh.sh: relay $name did not listen on $port" >&2
    cat "$WORK/$name.log" >&2
    exit 1
}

start_relay single "$PORT_S" ""
start_relay a "$PORT_A" ""
start_relay b "$PORT_B" "\"127.0.0.1:$PORT_A\""
for _ in $(seq 1 100); do
    grep -q "peer relay up" "$WORK/b.log" 2>/dev/null && break
    sleep 0.05
done
grep -q "peer relay up" "$WORK/b.log" || { echo "mesh.sh: the relays did not peer" >&2; cat "$WORK/a.log" "$WORK/b.log" >&2; exit 1; }
iptables -A OUTPUT "${RULE[@]}"

run() { # label port
    # --settle 1: the routes of the last clients reach the other relay before the load starts.
    "$BENCH/relay-load" --port "$2" --conns "$CONNS" --window "$WINDOW" --payload "$PAYLOAD" \
        --duration "$DURATION" --warmup 1 --drain "${DRAIN:-3}" --settle 1 --src-ips 127.0.0.2,127.0.0.3 \
        --label "$1" --quiet
}

RESULTS="$WORK/results.txt"
for rep in $(seq 1 "$REPS"); do
    run single "$PORT_S" >>"$RESULTS"
    run mesh "$PORT_A" >>"$RESULTS"
done

python3 - "$RESULTS" "$REPS" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip().startswith("{")]
def median(label, key):
    values = [r[key] for r in rows if r.get("label") == label]
    return statistics.median(values) if values else 0
def total(label, key):
    return sum(r[key] for r in rows if r.get("label") == label)
print(f"{'scenario':9} {'msg/s':>10} {'x_single':>9} {'p50_us':>9} {'p99_us':>9} {'lost':>5} {'unacked':>8} {'dup':>4} {'err':>4} runs")
single = median("single", "delivered_per_s")
for label in ("single", "mesh"):
    rate = median(label, "delivered_per_s")
    print(f"{label:9} {rate:>10.0f} {rate / single if single else 0:>9.2f} {median(label, 'lat_p50_us'):>9.0f} "
          f"{median(label, 'lat_p99_us'):>9.0f} {total(label, 'lost'):>5} {total(label, 'unacked'):>8} {total(label, 'dup'):>4} "
          f"{total(label, 'errors') + total(label, 'misrouted'):>4} {sum(1 for r in rows if r.get('label') == label)}")
print("\nmsg/s = MESSAGEs delivered per second (median of runs); x_single = mesh / single, same run;")
print("mesh = 2 peered relays, each pair split over them: every message crosses the mesh and is handled twice.")
PY
cp "$RESULTS" /tmp/ptpchat-mesh-results.txt
echo "(raw JSON lines kept in /tmp/ptpchat-mesh-results.txt)"
