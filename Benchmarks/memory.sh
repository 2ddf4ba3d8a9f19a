#!/usr/bin/env bash
# The relay's memory (issue 10): RSS under sustained load and after it, and RSS per idle plaintext
# connection. Builds the release relay, ../shared/bench (relay-load) and Benchmarks/tls-load.c
# (its hold mode keeps idle connections open), then runs Benchmarks/memory_bench.py, which prints
# two tables. RSS does not depend on how busy the shared machine is; msg/s does.
#
#   Benchmarks/memory.sh                 # all three parts (~5 min per build measured)
#   Benchmarks/memory.sh load            # only RSS under load: load | burst | idle
#   COMPARE_BIN=/path/to/main/ptpchat-relay Benchmarks/memory.sh   # before/after in one run
#
# load   100 idle connections held, then ROUNDS [2] rounds of relay-load (100 conns in pairs,
#        window 16, payload 256, LOAD_SECONDS [15] s), then QUIET_SECONDS [15] s of quiet: RSS
#        idle, peak during each round, after it and after the quiet, each over idle (goal <= 2).
# burst  BURST_CONNS [200] connections each send BURST_MIB [2] MiB at once and go quiet: RSS kept
#        per connection (NIO keeps a channel's grown receive buffer while it is open).
# idle   RSS per idle plaintext connection at IDLE_COUNTS [1000,5000,19000] (HELLO said,
#        routing.to_clients: false; goal <= 4 KiB at 19,000).
#
# Knobs: ROUNDS, LOAD_SECONDS, LOAD_CONNS [100], QUIET_SECONDS, BURST_CONNS, BURST_MIB, IDLE_COUNTS; RELAY_BIN [built here],
# COMPARE_BIN [none: a second relay measured in the same run, named "compare"], BENCH_DIR
# [../shared/bench], SCRATCH_PATH [.build-release].
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"

command -v gcc >/dev/null 2>&1 && [[ -f /usr/include/openssl/ssl.h ]] || {
    echo "memory.sh: needs gcc and libssl-dev (apt-get install -y gcc libssl-dev)" >&2
    exit 2
}
NAME=memory.sh
# shellcheck source=Benchmarks/load-tools-setup.sh
source "$ROOT/Benchmarks/load-tools-setup.sh"
RELAYS=(--relay "this=$BIN")
[[ -n "${COMPARE_BIN:-}" ]] && RELAYS=(--relay "compare=$COMPARE_BIN" "${RELAYS[@]}")

ulimit -n "$(ulimit -Hn)"   # the relay and the holders keep up to 19,000 sockets each
echo "# ptpchat-relay memory ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
python3 "$ROOT/Benchmarks/memory_bench.py" "${RELAYS[@]}" --tls-load "$WORK/tls-load" --relay-load "$BENCH/relay-load" "$@"
