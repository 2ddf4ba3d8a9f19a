#!/usr/bin/env bash
# Builds the release relay and measures it side by side with the C baseline relay (and
# nats-server, when installed) using the independent harness in ../shared/bench/run-compare.sh.
# Prints the harness's table: msg/s, latency percentiles, CPU and the ratio to the baseline.
#
#   Benchmarks/compare.sh                      # full run (~3 min with nats-server)
#   REPS=1 DURATION=2 Benchmarks/compare.sh    # quick look
#   MESH=0 Benchmarks/compare.sh               # without the mesh row
#
# Then the `mesh` row (Benchmarks/mesh.sh, root and iptables needed): the thr load (100 conns,
# window 64, payload 256) with every message crossing two peered relays, as msg/s and as a ratio
# to the single relay's `thr` of the same run.
#
# Any run-compare.sh knob (CONFIGS, REPS, DURATION, TARGETS, ...) passes through.
# The security tables (thr over TLS, handshakes/s, memory per connection, a connection flood)
# come from Benchmarks/security.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"
PORT="${RELAY_PORT:-17003}"

[[ -x "$BENCH/run-compare.sh" ]] || { echo "compare.sh: no harness at $BENCH" >&2; exit 2; }
command -v nats-server >/dev/null 2>&1 || echo "compare.sh: nats-server not installed (apt-get install -y nats-server); comparing with the baseline only" >&2

"$ROOT/scripts/swift-build-release" --product ptpchat-relay --scratch-path "$SCRATCH" >&2
BIN="$("$ROOT/scripts/swift-build-release" --scratch-path "$SCRATCH" --show-bin-path)/ptpchat-relay"
DATA="$(mktemp -d -t ptpchat-bench.XXXXXX)"
trap 'rm -rf "$DATA"' EXIT

# The load generator opens 100 connections from 127.0.0.1 that send as fast as they can: the
# per-IP accept limits and the per-node read budget (PROFILE.md section 10) off, as in the
# baseline (environment variables override the defaults; RELAY_ARGS can still set others).
export LIMITS_PER_IP_CONNECTIONS="${LIMITS_PER_IP_CONNECTIONS:-0}"
export LIMITS_PER_IP_NEW_PER_SECOND="${LIMITS_PER_IP_NEW_PER_SECOND:-0}"
export LIMITS_NODE_MESSAGES_PER_SECOND="${LIMITS_NODE_MESSAGES_PER_SECOND:-0}"
export LIMITS_NODE_BYTES_PER_SECOND="${LIMITS_NODE_BYTES_PER_SECOND:-0}"

STATS_PORT="${STATS_PORT:-17004}"
# The stats endpoint stays on during the run: `curl 127.0.0.1:$STATS_PORT/stats` shows it under load.
export RELAY_CMD="exec '$BIN' --listen 127.0.0.1:$PORT --stats 127.0.0.1:$STATS_PORT --data-dir '$DATA' --log-level warning ${RELAY_ARGS:-}"
export RELAY_PORT="$PORT"
if ! command -v nats-server >/dev/null 2>&1; then
    export TARGETS="${TARGETS:-baseline relay}"
fi
TABLE="$(mktemp -t ptpchat-compare.XXXXXX)"
TABLE="$(mktemp -t ptpchat-compare.XXXXXX)"
"$BENCH/run-compare.sh" | tee "$TABLE"

if [[ "${MESH:-1}" == 1 ]]; then
    if [[ $EUID -ne 0 ]] || ! command -v iptables >/dev/null 2>&1; then
        echo "compare.sh: no mesh row (needs root and iptables: apt-get install -y iptables)" >&2
    else
        MESH_OUT="$(SCRATCH_PATH="$SCRATCH" BENCH_DIR="$BENCH" REPS="${REPS:-3}" DURATION="${DURATION:-5}" "$ROOT/Benchmarks/mesh.sh" 2>/dev/null)"
        THR="$(awk '$1 == "thr" && $3 == "relay" { print $4 }' "$TABLE")"
        echo
        echo "$MESH_OUT" | awk -v thr="$THR" '
            $1 == "single" && $2 ~ /^[0-9]/ { single = $2 }
            $1 == "mesh" && $2 ~ /^[0-9]/ { mesh = $2; p50 = $4; p99 = $5; lost = $6; unacked = $7; dup = $8; err = $9; runs = $10 }
            END {
                printf "%-5s %-5s %-12s %9s %7s %9s %9s %8s %6s %6s %5s  %s\n", "cfg", "cpu", "target", "msg/s", "x_thr", "x_single", "p50_us", "p99_us", "lost", "dup", "err", "runs"
                printf "%-5s %-5s %-12s %9d %7.2f %9.2f %9d %8d %6d %6d %5d  %s\n", "mesh", "free", "relay x2", mesh, (thr > 0 ? mesh / thr : 0), (single > 0 ? mesh / single : 0), p50, p99, lost + unacked, dup, err, runs
                print "mesh = the thr load over two peered relays, every message crossing from one to the other;"
                print "x_thr = mesh / the relay thr row above; x_single = mesh / one relay measured next to it."
            }'
    fi
fi
rm -f "$TABLE"
