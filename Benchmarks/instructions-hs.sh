#!/usr/bin/env bash
# Instructions per handshake (accept, HELLO both ways, the first ROUTING, the close), counted by
# valgrind's callgrind for the relay and the C baseline relay, and syscalls per handshake counted
# by `strace -c -f`. Neither figure depends on what else the machine is doing.
#
#   Benchmarks/instructions-hs.sh                 # both targets, instructions and syscalls, ~2 min
#   STRACE=0 Benchmarks/instructions-hs.sh        # instructions only
#   KEEP=/tmp/cg Benchmarks/instructions-hs.sh    # keep the callgrind files (callgrind_annotate --tree=caller)
#   RELAY_BIN=/path/ptpchat-relay Benchmarks/instructions-hs.sh   # another build of the relay
#   FLOOR_BIN=Benchmarks/NIOFloor/.build/release/nio-floor-relay TARGETS="baseline floor floor-contract relay" \
#       BREAKDOWN=1 Benchmarks/instructions-hs.sh  # with the NIO floor relay, and where each one's
#                                                  # instructions go (Benchmarks/cg_breakdown.py)
#
# Each target runs twice, with C1 and then C2 connections (relay-load: connect, HELLO, wait for the
# server's HELLO, two messages in all, close); (Ir(C2) - Ir(C1)) / (C2 - C1) leaves out start-up,
# the messages and shutdown. The run waits until the server has closed every connection before it
# stops it, so the close path is counted. The relay runs with an empty store and the accept and
# per-node limits off. Valgrind 3.19 needs the binaries stripped of their debug information and a
# preload for sigsuspend (see Benchmarks/instructions.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"
C1="${C1:-200}"
C2="${C2:-1000}"
PORT="${RELAY_PORT:-17123}"
LOAD=(--messages 2 --window 1 --payload 64 --duration 5 --drain 2 --hs-timeout 120 --quiet)

NAME=instructions-hs.sh
# shellcheck source=Benchmarks/callgrind-setup.sh
source "$ROOT/Benchmarks/callgrind-setup.sh"

wait_port() {
    for _ in $(seq 300); do
        # Listening, seen from outside (a probe connection would stay open in the baseline).
        [[ -n $(ss -Hltn "( sport = :$1 )") ]] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Until the server has closed every connection it accepted (ss lists none on its port).
wait_closed() {
    for _ in $(seq 600); do
        [[ $(ss -Htn "( sport = :$1 )" | grep -vc LISTEN || true) -eq 0 ]] && return 0
        sleep 0.1
    done
    echo "instructions-hs.sh: connections still open on port $1" >&2
}

# start TOOL TARGET OUT: runs the target under `valgrind` or `strace` in the background (PID).
start() {
    local tool=$1 target=$2 out=$3 cmd
    rm -rf "$WORK/data" && mkdir "$WORK/data"
    case $target in
        relay) cmd=("$WORK/relay" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --stats off --log-level warning) ;;
        baseline) cmd=("$WORK/baseline" --port "$PORT" --bind 127.0.0.1 --threads 2) ;;
        floor) cmd=("$WORK/floor" --port "$PORT" --bind 127.0.0.1 --quiet) ;;
        # The floor with the contract's two writes per handshake (HELLO at accept, ROUTING after
        # the client's HELLO; PROFILE.md section 4), as the relay makes them.
        floor-contract) cmd=("$WORK/floor" --port "$PORT" --bind 127.0.0.1 --quiet --hello-at-accept) ;;
    esac
    case $tool in
        valgrind) LD_PRELOAD="$WORK/sigsuspend.so" valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" >"$WORK/$target.log" 2>&1 & ;;
        strace) strace -c -f -o "$out" "${cmd[@]}" >"$WORK/$target.log" 2>&1 & ;;
    esac
    PID=$!
}

# run TOOL TARGET CONNS: one measured run; under valgrind prints the instruction total.
run() {
    local tool=$1 target=$2 conns=$3 out="$WORK/$1.$2.$3" pid victim
    start "$tool" "$target" "$out"
    pid=$PID
    wait_port "$PORT" "$pid" || { echo "instructions-hs.sh: $target did not start:" >&2; tail "$WORK/$target.log" >&2; exit 1; }
    "$BENCH/relay-load" --port "$PORT" --conns "$conns" "${LOAD[@]}" >"$WORK/load.json"
    wait_closed "$PORT"
    # strace passes a signal on to its child only when it is the child that gets it.
    victim=$pid
    [[ $tool == strace ]] && victim=$(pgrep -P "$pid" | head -1)
    kill -TERM "$victim"
    wait "$pid" || true
    python3 - "$WORK/load.json" "$conns" "$target" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
if d["errors"] or d["acked"] != 2:
    sys.exit(f"instructions-hs.sh: {sys.argv[3]}: {sys.argv[2]} connections: {d}")
EOF
    case $tool in
        valgrind) awk '/^totals:/ { print $2 }' "$out" ;;
        strace) ;;
    esac
}

printf "%-14s %14s %14s %12s %8s\n" target "Ir(C=$C1)" "Ir(C=$C2)" "Ir/hs" x_base
declare -A PER
for target in ${TARGETS:-baseline relay}; do
    a=$(run valgrind "$target" "$C1")
    b=$(run valgrind "$target" "$C2")
    PER[$target]=$(( (b - a) / (C2 - C1) ))
    ratio=-  # against the baseline, when it ran first (TARGETS may leave it out)
    [[ -n "${PER[baseline]:-}" ]] && ratio=$(awk -v x="${PER[$target]}" -v y="${PER[baseline]}" 'BEGIN { printf "%.1f", x / y }')
    printf "%-14s %14d %14d %12d %8s\n" "$target" "$a" "$b" "${PER[$target]}" "$ratio"
done
echo "Ir/hs = user-space instructions per handshake (accept, HELLO both ways, first ROUTING, close), all threads."

if [[ "${STRACE:-1}" == 1 ]] && command -v strace >/dev/null; then
    echo
    printf "%-14s %10s  %s\n" target "calls/hs" "per syscall (calls per handshake)"
    for target in ${TARGETS:-baseline relay}; do
        run strace "$target" "$C1" >/dev/null
        run strace "$target" "$C2" >/dev/null
        python3 - "$WORK/strace.$target.$C1" "$WORK/strace.$target.$C2" "$((C2 - C1))" "$target" <<'EOF'
import sys
def calls(path):
    counts = {}
    for line in open(path):
        p = line.split()
        if len(p) >= 5 and p[0][0].isdigit() and p[-1] != "total":
            counts[p[-1]] = int(p[3])
    return counts
a, b, n = calls(sys.argv[1]), calls(sys.argv[2]), float(sys.argv[3])
per = {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}
shown = " ".join(f"{k} {v:.1f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.05)
print(f"{sys.argv[4]:14} {sum(per.values()):10.1f}  {shown}")
EOF
    done
fi

if [[ "${BREAKDOWN:-0}" == 1 ]] && command -v callgrind_annotate >/dev/null; then
    echo
    # shellcheck disable=SC2086
    python3 "$ROOT/Benchmarks/cg_breakdown.py" --n1 "$C1" --n2 "$C2" --unit hs \
        $(for t in ${TARGETS:-baseline relay}; do echo "$t=$WORK/valgrind.$t.$C1,$WORK/valgrind.$t.$C2"; done)
fi
if [[ -n "${KEEP:-}" ]]; then
    mkdir -p "$KEEP" && cp "$WORK"/valgrind.* "$WORK/relay" "$KEEP/"
fi
