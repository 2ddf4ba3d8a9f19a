#!/usr/bin/env bash
# Builds the release relay and measures it side by side with the C baseline relay (and
# nats-server, when installed) using the independent harness in ../shared/bench/run-compare.sh.
# Prints the harness's table: msg/s, latency percentiles, CPU and the ratio to the baseline.
#
#   Benchmarks/compare.sh                      # full run (~3 min with nats-server)
#   REPS=1 DURATION=2 Benchmarks/compare.sh    # quick look
#
# Any run-compare.sh knob (CONFIGS, REPS, DURATION, TARGETS, ...) passes through.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"
PORT="${RELAY_PORT:-17003}"

[[ -x "$BENCH/run-compare.sh" ]] || { echo "compare.sh: no harness at $BENCH" >&2; exit 2; }
command -v nats-server >/dev/null 2>&1 || echo "compare.sh: nats-server not installed (apt-get install -y nats-server); comparing with the baseline only" >&2

swift build -c release --product ptpchat-relay --scratch-path "$SCRATCH" >&2
BIN="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/ptpchat-relay"
DATA="$(mktemp -d -t ptpchat-bench.XXXXXX)"
trap 'rm -rf "$DATA"' EXIT

STATS_PORT="${STATS_PORT:-17004}"
# The stats endpoint stays on during the run: `curl 127.0.0.1:$STATS_PORT/stats` shows it under load.
export RELAY_CMD="exec '$BIN' --listen 127.0.0.1:$PORT --stats 127.0.0.1:$STATS_PORT --data-dir '$DATA' --log-level warning ${RELAY_ARGS:-}"
export RELAY_PORT="$PORT"
if ! command -v nats-server >/dev/null 2>&1; then
    export TARGETS="${TARGETS:-baseline relay}"
fi
"$BENCH/run-compare.sh"
