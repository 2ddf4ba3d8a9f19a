#!/usr/bin/env bash
# Store-and-forward benchmark: how fast the relay stores messages for offline recipients (NACK
# stored:true, sent after the commit), how fast it drains them to recipients that come and ACK, and
# the ceiling: the same rows inserted with Python's sqlite3 (system libsqlite3), WAL, the same
# synchronous setting, in transactions of the size of the relay's group commit. Once with
# store.sync=full and once with =normal, on one machine in one run (compare the ratios, not
# absolute numbers from different runs: both cores are shared by the load and the relay).
#
#   Benchmarks/store-bench.sh                          # 50,000 messages, 20 senders, 200 recipients
#   MESSAGES=10000 Benchmarks/store-bench.sh           # quick look
#   SYNCS="normal" Benchmarks/store-bench.sh           # one mode only
#
# Knobs: MESSAGES, SENDERS, RECIPIENTS, WINDOW, PAYLOAD, BATCH, SYNCS, SCRATCH_PATH, KEEP=1 (keep
# the data directories). Loopback only; stops every process it started, by PID, on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"
SYNCS="${SYNCS:-full normal}"
MESSAGES="${MESSAGES:-50000}"
SENDERS="${SENDERS:-20}"
RECIPIENTS="${RECIPIENTS:-200}"
WINDOW="${WINDOW:-256}"
PAYLOAD="${PAYLOAD:-256}"
BATCH="${BATCH:-512}"

cd "$ROOT"
"$ROOT/scripts/swift-build-release" --product ptpchat-relay --scratch-path "$SCRATCH" >&2
BIN="$("$ROOT/scripts/swift-build-release" --scratch-path "$SCRATCH" --show-bin-path)/ptpchat-relay"
[[ -x "$BIN" ]] || { echo "store-bench: no relay binary at $BIN" >&2; exit 2; }

WORK="$(mktemp -d -t ptpchat-store-bench.XXXXXX)"
RELAY_PID=""
LOAD_PID=""

stop_pid() {  # PID: SIGTERM, up to 10 s, then SIGKILL
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "store-bench: $pid did not stop within 10 s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_pid "$LOAD_PID"
    stop_pid "$RELAY_PID"
    if [[ "${KEEP:-0}" == 1 ]]; then echo "store-bench: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

results=()
status=0
for sync in $SYNCS; do
    data="$WORK/data-$sync"
    mkdir -p "$data"
    config="$WORK/relay-$sync.yaml"
    # Rate limits off (20 senders push 2,500 messages each; 220 connections from one address);
    # store bounds at their defaults (250 messages per recipient, about 13 per sender and recipient).
    cat >"$config" <<YAML
stats:
  listen: "off"
limits:
  per_ip_connections: 0
  per_ip_new_per_second: 0
  per_ip_new_burst: 0
  node_messages_per_second: 0
  node_messages_burst: 0
  node_bytes_per_second: 0
  node_bytes_burst: 0
store:
  sync: $sync
YAML
    port="$(free_port)"
    "$BIN" --listen "127.0.0.1:$port" --data-dir "$data" --config "$config" --log-level warning \
        >"$WORK/relay-$sync.log" 2>&1 &
    RELAY_PID=$!
    ready=0
    for _ in $(seq 1 100); do
        kill -0 "$RELAY_PID" 2>/dev/null || break
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), timeout=0.2).close()" 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [[ "$ready" != 1 ]]; then
        echo "store-bench: the relay did not start (sync=$sync):" >&2
        cat "$WORK/relay-$sync.log" >&2
        exit 1
    fi
    echo "store-bench: sync=$sync, relay pid $RELAY_PID on 127.0.0.1:$port" >&2
    out="$WORK/result-$sync.json"
    python3 "$ROOT/Benchmarks/store_bench.py" run --port "$port" --data-dir "$data" --relay-bin "$BIN" \
        --relay-pid "$RELAY_PID" --sync "$sync" --scratch "$WORK" --out "$out" --messages "$MESSAGES" \
        --senders "$SENDERS" --recipients "$RECIPIENTS" --window "$WINDOW" --payload "$PAYLOAD" --batch "$BATCH" &
    LOAD_PID=$!
    wait "$LOAD_PID" || status=1
    LOAD_PID=""
    stop_pid "$RELAY_PID"
    RELAY_PID=""
    if [[ -s "$WORK/relay-$sync.log" ]]; then
        echo "store-bench: relay log (sync=$sync, warnings and above):" >&2
        tail -n 20 "$WORK/relay-$sync.log" >&2
    fi
    [[ -f "$out" ]] && results+=("$out")
done

[[ ${#results[@]} -gt 0 ]] && python3 "$ROOT/Benchmarks/store_bench.py" report "${results[@]}"
exit "$status"
