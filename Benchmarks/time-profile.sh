#!/usr/bin/env bash
# Where the relay's *time* goes under load (issue 10), next to where its instructions go
# (instructions.sh): callgrind counts instructions, not the cycles an atomic retain or a cache miss
# costs. The relay runs with one event loop on CPU 0, relay-load's thr shape (100 connections in
# pairs, window 64, payload 256) on CPU 1, so the server is the bottleneck at 100 % of its CPU; `perf
# record` samples it (cpu-clock: this machine's VM has no hardware counters) for PROFILE_SECONDS [8] s.
# Prints msg/s, then the relay's samples by category and its top functions.
#
#   Benchmarks/time-profile.sh                     # ~15 s
#   RELAY_BIN=/path/to/ptpchat-relay Benchmarks/time-profile.sh
#   KEEP=/tmp/prof Benchmarks/time-profile.sh      # keep perf.data (perf report -i /tmp/prof/perf.data)
#   SERVER=floor Benchmarks/time-profile.sh        # the NIO floor relay (Benchmarks/NIOFloor) instead
#   SERVER=baseline Benchmarks/time-profile.sh     # the C baseline relay, one worker thread
#
# With the load on the other CPU, msg/s is each server's capacity on one core: the figure to
# compare the three by (run-compare's loads share both cores between server and load).
#
# Categories: retain/release (swift_retain, swift_release and their _n forms), the parse
# (PTPProtocol's JSON tape parser), envelope (MessageReader, its field readers, GUIDs and node
# ids), the rest of the server's code, the rest of the Swift runtime, libc's memmove/memcpy, the
# kernel, and everything else. Needs perf (apt-get install -y linux-perf).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"
PORT="${RELAY_PORT:-18411}"
SECONDS_SAMPLED="${PROFILE_SECONDS:-8}"
NAME=time-profile.sh

command -v perf >/dev/null || { echo "$NAME: perf is not installed (apt-get install -y linux-perf)" >&2; exit 2; }
# shellcheck source=Benchmarks/shared-bench-tools.sh
source "$ROOT/Benchmarks/shared-bench-tools.sh"
# shellcheck source=Benchmarks/release-builds.sh
source "$ROOT/Benchmarks/release-builds.sh"
WORK="${KEEP:-$(mktemp -d -t ptpchat-time-profile.XXXXXX)}"
mkdir -p "$WORK/data"
[[ -z "${KEEP:-}" ]] && trap 'rm -rf "$WORK"' EXIT

export LIMITS_PER_IP_CONNECTIONS=0 LIMITS_PER_IP_NEW_PER_SECOND=0 LIMITS_NODE_MESSAGES_PER_SECOND=0 LIMITS_NODE_BYTES_PER_SECOND=0
case "${SERVER:-relay}" in
    relay)
        build_relay
        SERVER_CMD=("$RELAY_BIN" --listen "127.0.0.1:$PORT" --stats off --data-dir "$WORK/data" --log-level error --threads 1)
        ;;
    floor)
        build_floor
        SERVER_CMD=("$FLOOR_BIN" --port "$PORT" --bind 127.0.0.1 --threads 1 --quiet)
        ;;
    baseline) SERVER_CMD=("$BENCH/baseline-relay" --port "$PORT" --bind 127.0.0.1 --threads 1) ;;
    *) echo "$NAME: SERVER is relay, floor or baseline" >&2; exit 2 ;;
esac
taskset -c 0 "${SERVER_CMD[@]}" >"$WORK/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
(echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || { echo "$NAME: the server did not start:" >&2; tail "$WORK/server.log" >&2; exit 1; }
perf record -F 2000 -g -p "$server" -o "$WORK/perf.data" -- sleep "$SECONDS_SAMPLED" >"$WORK/perf.log" 2>&1 &
recorder=$!
taskset -c 1 "$BENCH/relay-load" --port "$PORT" --conns 100 --window 64 --payload 256 --pattern pair \
    --duration $((SECONDS_SAMPLED + 1)) --quiet >"$WORK/load.json"
wait "$recorder" || true
kill -TERM "$server"
wait "$server" || true

perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null >"$WORK/report.txt"
python3 - "$WORK/load.json" "$WORK/report.txt" "${SERVER:-relay}" "$(basename "${SERVER_CMD[0]}")" <<'PY'
import json, re, sys
load = json.load(open(sys.argv[1]))
bad = {k: load[k] for k in ("lost", "dup", "errors") if load.get(k)}
print(f"relay-load thr shape against one loop of {sys.argv[3]} on its own CPU: {load['delivered_per_s']:,.0f} msg/s delivered {bad or ''}")
rows = []
for line in open(sys.argv[2]):
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$", line)
    if m:
        rows.append((float(m.group(1)), m.group(2), m.group(3), m.group(4)))
def category(dso, kind, symbol):
    if kind == "k":
        return "kernel"
    if re.match(r"swift_(retain|release)", symbol) or "swift_bridgeObject" in symbol:
        return "retain/release"
    # By the function's own type (the start of its name), not a type it is specialised for.
    if re.match(r"\$s11PTPProtocol(6Parser|8JSONTapeV5parse)", symbol):
        return "parse (JSON tape)"
    if re.match(r"\$s11PTPProtocol(13MessageReader|6Fields|11DataMembers|11NodeAddress|4GUID|4Verb)", symbol):
        return "envelope (fields, ids)"
    if "memmove" in symbol or "memcpy" in symbol:
        return "libc memmove/memcpy"
    if dso == sys.argv[4]:  # the server's own binary
        return "NIO" if re.match(r"\$s(7NIOCore|8NIOPosix)", symbol) else "the server's other code"
    if dso.startswith("libswiftCore"):
        return "Swift runtime, other"
    return "other (libc, ...)"
totals = {}
for share, dso, kind, symbol in rows:
    key = category(dso, kind, symbol)
    totals[key] = totals.get(key, 0) + share
print(f"\n{'where':28} {'share of samples':>16}")
for key, share in sorted(totals.items(), key=lambda item: -item[1]):
    print(f"{key:28} {share:15.1f}%")
print("\ntop functions:")
for share, dso, kind, symbol in rows[:15]:
    print(f"{share:6.2f}%  {dso:16} {symbol[:110]}")
PY
