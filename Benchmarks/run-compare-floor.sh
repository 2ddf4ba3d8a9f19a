#!/usr/bin/env bash
# run-compare-floor.sh - a copy of ../shared/bench/run-compare.sh (read-only there) with a fourth
# target, `floor`: FLOOR_CMD listening on FLOOR_PORT (Benchmarks/nio-floor.sh sets it to the NIO floor
# relay), run interleaved with the others (baseline floor relay baseline floor relay ...). The C
# sources are built from BENCH_DIR (default ../shared/bench) in a cache folder. Otherwise unchanged.
#
# run-compare.sh - side-by-side ptpchat relay benchmark on loopback.
#
# Starts baseline-relay (C, the ceiling), nats-server and, if RELAY_CMD is set,
# a third relay (e.g. the Swift server) listening on RELAY_PORT; runs relay-load
# against each with identical parameters, every configuration REPS times
# interleaved (A B C A B C ...), and prints medians plus ratios to the baseline.
# Everything it starts it stops again (by the PIDs / process groups it started),
# also on error, Ctrl-C or timeout. All traffic stays on 127.0.0.1.
#
# Environment knobs (defaults in brackets):
#   RELAY_CMD, RELAY_PORT   third target: shell command that starts a ptpchat relay
#                           listening on 127.0.0.1:RELAY_PORT [unset = skip]
#   RELAY_STARTUP_S         seconds to wait for RELAY_CMD to listen [60]
#   FLOOR_CMD, FLOOR_PORT   fourth target `floor`, as RELAY_CMD/RELAY_PORT [unset = skip]
#   BENCH_DIR               where baseline-relay.c and relay-load.c are [../shared/bench]
#   TARGETS                 subset/order of "baseline nats floor relay" [all available]
#   CONFIGS                 "name:conns:window:payload[:placement] ..."
#                           [lat:2:1:64:same thr:100:64:256:free conn:1000:8:256:free]
#                           placement (CPU affinity during that config's runs, applied to the
#                           server's whole process group with taskset -a -p, and to relay-load):
#                             same  = server and relay-load both on CPU 0 (no cross-CPU wake-ups:
#                                     on this VM waking a halted vCPU costs ~50 us per hop)
#                             split = server on CPU 0, relay-load on CPU 1
#                             free  = no pinning, the kernel decides (multi-threaded servers may use
#                                     whatever CPU relay-load leaves idle)
#   DURATION WARMUP DRAIN   seconds per run: load phase, excluded head, max drain [5 1 2]
#   REPS                    repetitions per configuration [3]
#   LOAD_THREADS            relay-load --threads [1]
#   BASE_THREADS            baseline-relay --threads [number of CPUs, i.e. 2 here: measured ~13%
#                           faster than 1 for thr/conn with LOAD_THREADS=1]
#   BASE_PORT NATS_PORT     ports for baseline-relay and nats-server [17001 17002]
#   NATS_BIN                nats-server binary [nats-server]
#   OUT_DIR                 where results/logs go [a new mktemp -d directory]
#   EXTRA_LOAD_ARGS         extra relay-load arguments for every run (e.g. --src-ips ...)
#   PIN                     auto = use each config's placement; same|split|free = force it [auto]
#   WAIT_IDLE               before each run wait up to this many seconds for the machine to be
#                           under IDLE_MAX % busy (shared machines) [0 = don't wait]
#   IDLE_MAX                busy threshold for WAIT_IDLE and the start-up warning, % of all CPUs [10]
set -u

HERE="$(cd "${BENCH_DIR:-$(dirname "$0")/../../shared/bench}" && pwd)"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
DRAIN="${DRAIN:-2}"
REPS="${REPS:-3}"
CONFIGS="${CONFIGS:-lat:2:1:64:same thr:100:64:256:free conn:1000:8:256:free}"
LOAD_THREADS="${LOAD_THREADS:-1}"
BASE_THREADS="${BASE_THREADS:-$(nproc)}"
BASE_PORT="${BASE_PORT:-17001}"
NATS_PORT="${NATS_PORT:-17002}"
RELAY_CMD="${RELAY_CMD:-}"
RELAY_PORT="${RELAY_PORT:-}"
RELAY_STARTUP_S="${RELAY_STARTUP_S:-60}"
FLOOR_CMD="${FLOOR_CMD:-}"
FLOOR_PORT="${FLOOR_PORT:-}"
NATS_BIN="${NATS_BIN:-nats-server}"
TARGETS="${TARGETS:-baseline nats floor relay}"
EXTRA_LOAD_ARGS="${EXTRA_LOAD_ARGS:-}"
OUT_DIR="${OUT_DIR:-}"
WAIT_IDLE="${WAIT_IDLE:-0}"
IDLE_MAX="${IDLE_MAX:-10}"
PIN="${PIN:-auto}"
NCPU_ALL="0-$(($(nproc) - 1))"
HAVE_TASKSET=0
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then HAVE_TASKSET=1; fi

log() { echo "[run-compare] $*" >&2; }

# ------------------------------------------------------------ processes
STARTED=()   # PIDs we started; each is a session/process-group leader (setsid)
LAST_PID=

# state letter of a PID from /proc (empty when gone)
proc_state() {
    local line
    read -r line 2>/dev/null <"/proc/$1/stat" || return 0
    line="${line##*) }"
    echo "${line%% *}"
}
alive() { local s; s="$(proc_state "$1")"; [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]; }

# PIDs (comma-separated) whose process group is $1: a server we started and its children
pids_of_group() {
    local want="$1" f line rest pid out="" st ppid pgrp
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        pid="${line%% *}"
        rest="${line##*) }"
        read -r st ppid pgrp _ <<<"$rest"
        if [ "$pgrp" = "$want" ]; then out="$out${out:+,}$pid"; fi
    done
    echo "$out"
}

# stop one started PID: TERM its process group (or itself), wait, then KILL
stop_pid() {
    local pid="$1" i members
    members="$(pids_of_group "$pid")"
    if [ -n "$members" ]; then kill -TERM -- "-$pid" 2>/dev/null; else kill -TERM "$pid" 2>/dev/null; fi
    for i in $(seq 1 40); do
        alive "$pid" || break
        sleep 0.1
    done
    members="$(pids_of_group "$pid")"
    if alive "$pid" || [ -n "$members" ]; then
        kill -KILL -- "-$pid" 2>/dev/null
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}

stop_all() {
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    STARTED=()
}

LG_PID=
cleanup() {
    trap - EXIT INT TERM HUP
    if [ -n "$LG_PID" ]; then
        kill -TERM "$LG_PID" 2>/dev/null # timeout(1) passes it on to relay-load
        wait "$LG_PID" 2>/dev/null
        LG_PID=
    fi
    [ "${#STARTED[@]}" -gt 0 ] && log "stopping servers: ${STARTED[*]}"
    stop_all
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

# start a command in its own session (so its whole process group can be stopped)
start_bg() {
    local logf="$1"
    shift
    setsid "$@" >"$logf" 2>&1 </dev/null &
    LAST_PID=$!
    STARTED+=("$LAST_PID")
    sleep 0.05
    local pg
    pg="$(pids_of_group "$LAST_PID")"
    case ",$pg," in *",$LAST_PID,"*) ;; *) alive "$LAST_PID" && log "note: pid $LAST_PID is not its own process group; only it will be stopped" ;; esac
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_listen() { # port pid seconds
    local port="$1" pid="$2" tries
    tries=$(awk -v s="$3" 'BEGIN{print int(s*10)+1}')
    while [ "$tries" -gt 0 ]; do
        alive "$pid" || return 1
        port_open "$port" && return 0
        sleep 0.1
        tries=$((tries - 1))
    done
    return 1
}

# ------------------------------------------------------------ setup
# build next to the sources, or in a cache folder when this folder is read-only
BIN="$HERE"
if [[ ! -w "$HERE" || "$HERE" != "$(cd "$(dirname "$0")" && pwd)" ]]; then
    BIN="${XDG_CACHE_HOME:-$HOME/.cache}/ptpchat-bench-floor"
    mkdir -p "$BIN" && cp "$HERE"/Makefile "$HERE"/*.c "$HERE"/*.h "$BIN"/ || exit 2
fi
cd "$HERE" || exit 2
if ! make -s -C "$BIN" >/dev/null; then
    log "build failed"
    exit 2
fi
if [ -z "$OUT_DIR" ]; then OUT_DIR="$(mktemp -d -t ptpbench.XXXXXX)"; fi
mkdir -p "$OUT_DIR" || exit 2
RES="$OUT_DIR/results.txt"
: >"$RES"

ACTIVE=""
for t in $TARGETS; do
    case "$t" in
    baseline) ACTIVE="$ACTIVE baseline" ;;
    nats)
        if command -v "$NATS_BIN" >/dev/null 2>&1; then
            ACTIVE="$ACTIVE nats"
        else
            log "nats-server not found (apt-get install -y nats-server); skipping nats"
        fi
        ;;
    floor)
        if [ -n "$FLOOR_CMD" ]; then
            if [ -z "$FLOOR_PORT" ]; then log "FLOOR_CMD set but FLOOR_PORT empty"; exit 2; fi
            ACTIVE="$ACTIVE floor"
        fi
        ;;
    relay)
        if [ -n "$RELAY_CMD" ]; then
            if [ -z "$RELAY_PORT" ]; then log "RELAY_CMD set but RELAY_PORT empty"; exit 2; fi
            ACTIVE="$ACTIVE relay"
        fi
        ;;
    *) log "unknown target $t"; exit 2 ;;
    esac
done
ACTIVE="${ACTIVE# }"
case " $ACTIVE " in *" baseline "*) ;; *) log "note: no baseline target, ratios will be empty" ;; esac

# refuse to measure something that is already listening on our ports
for t in $ACTIVE; do
    case "$t" in baseline) p=$BASE_PORT ;; nats) p=$NATS_PORT ;; floor) p=$FLOOR_PORT ;; relay) p=$RELAY_PORT ;; esac
    if port_open "$p"; then log "port $p (for $t) is already in use; pick another via BASE_PORT/NATS_PORT/RELAY_PORT"; exit 2; fi
done

# how busy is the machine? (other load skews everything on 2 cores)
read_cpu() { local l; read -r l </proc/stat; set -- $l; echo "$(( $2+$3+$4+$5+$6+$7+$8+${9:-0} )) $(( $5+$6 ))"; }
busy_pct() { # sample for $1 seconds; % of all CPUs not idle
    local c0 c1
    c0=$(read_cpu); sleep "$1"; c1=$(read_cpu)
    awk -v a="$c0" -v b="$c1" 'BEGIN{split(a,x," ");split(b,y," ");t=y[1]-x[1];i=y[2]-x[2];if(t>0)printf "%.0f",(t-i)*100/t;else print 0}'
}
wait_idle() { # bounded: at most WAIT_IDLE seconds
    [ "$WAIT_IDLE" -gt 0 ] 2>/dev/null || return 0
    local end=$((SECONDS + WAIT_IDLE)) b
    while :; do
        b=$(busy_pct 0.5)
        [ "$b" -le "$IDLE_MAX" ] && return 0
        if [ "$SECONDS" -ge "$end" ]; then log "machine still ${b}% busy after ${WAIT_IDLE}s; running anyway"; return 0; fi
        sleep 1
    done
}
BUSY=$(busy_pct 1)
NCPU=$(nproc)
{
    echo "# ptpchat relay bench  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# host: ${NCPU} cpus, $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), kernel $(uname -r)"
    echo "# nats-server: $("$NATS_BIN" --version 2>/dev/null || echo n/a)"
    echo "# idle check: ${BUSY}% of all CPUs busy before start"
    echo "# DURATION=$DURATION WARMUP=$WARMUP DRAIN=$DRAIN REPS=$REPS LOAD_THREADS=$LOAD_THREADS BASE_THREADS=$BASE_THREADS PIN=$PIN"
    echo "# CONFIGS=$CONFIGS TARGETS=$ACTIVE"
} | tee "$OUT_DIR/header.txt"
if [ "$BUSY" -gt "$IDLE_MAX" ]; then log "WARNING: machine is ${BUSY}% busy before the run; numbers will be noisy (see othCPU%)"; fi

BASE_PID=
NATS_PID=
RELAY_PID=
FLOOR_PID=
for t in $ACTIVE; do
    case "$t" in
    baseline)
        start_bg "$OUT_DIR/baseline-relay.log" "$BIN/baseline-relay" --port "$BASE_PORT" --bind 127.0.0.1 --threads "$BASE_THREADS"
        BASE_PID=$LAST_PID
        wait_listen "$BASE_PORT" "$BASE_PID" 10 || { log "baseline-relay did not start (see $OUT_DIR/baseline-relay.log)"; exit 2; }
        ;;
    nats)
        # logging off: no -D/-V, log output discarded; no monitoring port
        start_bg /dev/null "$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" -n bench
        NATS_PID=$LAST_PID
        wait_listen "$NATS_PORT" "$NATS_PID" 10 || { log "nats-server did not start"; exit 2; }
        ;;
    floor)
        start_bg "$OUT_DIR/floor.log" bash -c "$FLOOR_CMD"
        FLOOR_PID=$LAST_PID
        wait_listen "$FLOOR_PORT" "$FLOOR_PID" "$RELAY_STARTUP_S" || { log "FLOOR_CMD did not listen on 127.0.0.1:$FLOOR_PORT within ${RELAY_STARTUP_S}s (see $OUT_DIR/floor.log)"; exit 2; }
        ;;
    relay)
        start_bg "$OUT_DIR/relay.log" bash -c "$RELAY_CMD"
        RELAY_PID=$LAST_PID
        wait_listen "$RELAY_PORT" "$RELAY_PID" "$RELAY_STARTUP_S" || { log "RELAY_CMD did not listen on 127.0.0.1:$RELAY_PORT within ${RELAY_STARTUP_S}s (see $OUT_DIR/relay.log)"; exit 2; }
        ;;
    esac
done
log "servers up: baseline=${BASE_PID:-} nats=${NATS_PID:-} floor=${FLOOR_PID:-} relay=${RELAY_PID:-}; results in $OUT_DIR"

# ------------------------------------------------------------ runs
jget() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }

RUN_TMO=$(awk -v d="$DURATION" -v r="$DRAIN" 'BEGIN{print int(d+r+45)}')
LG_PIN=()
TASKSET_WARNED=0
# CPU placement for one run: pins every PID of the server's process group (all
# threads) and sets the relay-load prefix
place() { # placement spids
    local placement="$1" spids="$2" srv_cpus p
    LG_PIN=()
    [ "$HAVE_TASKSET" = 1 ] || placement=free
    case "$placement" in
    same) srv_cpus=0; LG_PIN=(taskset -c 0) ;;
    split) srv_cpus=0; LG_PIN=(taskset -c 1) ;;
    *) srv_cpus="$NCPU_ALL" ;;
    esac
    [ "$HAVE_TASKSET" = 1 ] || return 0
    for p in ${spids//,/ }; do
        if ! taskset -a -p -c "$srv_cpus" "$p" >/dev/null 2>&1 && [ "$TASKSET_WARNED" = 0 ]; then
            TASKSET_WARNED=1
            log "warning: could not set CPU affinity of pid $p"
        fi
    done
}

run_one() { # cfg conns window payload placement target rep
    local cfg="$1" C="$2" W="$3" P="$4" placement="$5" tgt="$6" rep="$7" port mode pid spids line
    case "$tgt" in
    baseline) port=$BASE_PORT; mode=ptpchat; pid=$BASE_PID ;;
    nats) port=$NATS_PORT; mode=nats; pid=$NATS_PID ;;
    floor) port=$FLOOR_PORT; mode=ptpchat; pid=$FLOOR_PID ;;
    relay) port=$RELAY_PORT; mode=ptpchat; pid=$RELAY_PID ;;
    esac
    if ! alive "$pid"; then
        log "$tgt (pid $pid) is not running any more; recording a failed run"
        echo "$cfg $tgt $rep {\"label\":\"$cfg/$tgt/$rep\",\"failed\":true,\"reason\":\"server dead\"}" >>"$RES"
        return
    fi
    spids="$(pids_of_group "$pid")"
    [ -n "$spids" ] || spids="$pid"
    place "$placement" "$spids"
    wait_idle
    # shellcheck disable=SC2086
    # in the background + wait, so that a signal to this script can stop it at once
    : >"$OUT_DIR/last-run.json"
    timeout -k 5 "$RUN_TMO" "${LG_PIN[@]}" "$BIN/relay-load" --host 127.0.0.1 --port "$port" --mode "$mode" \
        --conns "$C" --window "$W" --payload "$P" --duration "$DURATION" --warmup "$WARMUP" \
        --drain "$DRAIN" --threads "$LOAD_THREADS" --server-pids "$spids" --label "$cfg/$tgt/$rep/$placement" \
        $EXTRA_LOAD_ARGS >"$OUT_DIR/last-run.json" 2>>"$OUT_DIR/relay-load.stderr" &
    LG_PID=$!
    wait "$LG_PID"
    LG_PID=
    line="$(tail -n 1 "$OUT_DIR/last-run.json")"
    case "$line" in
    \{*) ;;
    *) line="{\"label\":\"$cfg/$tgt/$rep\",\"failed\":true,\"reason\":\"relay-load failed or timed out\"}" ;;
    esac
    echo "$cfg $tgt $rep $line" >>"$RES"
    place free "$spids"
    if [ -n "$(jget "$line" failed)" ]; then
        log "$(printf '%-5s rep%s %-8s FAILED' "$cfg" "$rep" "$tgt")"
    else
        log "$(printf '%-5s rep%s %-8s %10s msg/s  p50 %8sus  p99 %8sus  lost %s dup %s err %s  cpu lg %s%% srv %s%% other %s%%' \
            "$cfg" "$rep" "$tgt" "$(jget "$line" delivered_per_s)" "$(jget "$line" lat_p50_us)" \
            "$(jget "$line" lat_p99_us)" "$(jget "$line" lost)" "$(jget "$line" dup)" "$(jget "$line" errors)" \
            "$(jget "$line" lg_cpu_pct)" "$(jget "$line" srv_cpu_pct)" "$(jget "$line" other_cpu_pct)")"
    fi
}

for cfgspec in $CONFIGS; do
    IFS=: read -r cfg C W P placement <<<"$cfgspec"
    [ -n "$placement" ] || placement=free
    [ "$PIN" = auto ] || placement="$PIN"
    case "$placement" in same | split | free) ;; *) log "bad placement '$placement' in $cfgspec"; exit 2 ;; esac
    for rep in $(seq 1 "$REPS"); do
        for tgt in $ACTIVE; do
            run_one "$cfg" "$C" "$W" "$P" "$placement" "$tgt" "$rep"
        done
    done
done

# ------------------------------------------------------------ summary
summarize() {
    awk -v configs="$CONFIGS" -v targets="$ACTIVE" '
    function jv(line, key,   i, s) {
        i = index(line, "\"" key "\":")
        if (i == 0) return ""
        s = substr(line, i + length(key) + 3)
        sub(/^"/, "", s)
        sub(/[",}].*$/, "", s)
        return s
    }
    function median(key,   n, i, j, t, v, a) {
        n = cnt[key]
        if (n == 0) return ""
        for (i = 1; i <= n; i++) a[i] = vals[key, i] + 0
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        if (n % 2) return a[(n + 1) / 2]
        return (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ratio(x, b) { if (x == "" || b == "" || b + 0 == 0) return "-"; return sprintf("%.2f", x / b) }
    function f(x, fmt) { if (x == "") return "-"; return sprintf(fmt, x) }
    {
        cfg = $1; tgt = $2; line = $0; sub(/^[^{]*/, "", line)
        k = cfg SUBSEP tgt
        lb = jv(line, "label"); np = split(lb, LB, "/"); if (np >= 4) plc[cfg] = LB[4]
        runs[k]++
        if (jv(line, "failed") == "true") { failed[k]++; next }
        nm = split("delivered_per_s lat_p50_us lat_p99_us lat_p999_us lat_max_us hs_per_s lg_cpu_pct srv_cpu_pct ack_p50_us other_cpu_pct", M, " ")
        for (m = 1; m <= nm; m++) { key = k SUBSEP M[m]; cnt[key]++; vals[key, cnt[key]] = jv(line, M[m]) }
        lost[k] += jv(line, "lost"); dup[k] += jv(line, "dup"); err[k] += jv(line, "errors")
        bad[k] += jv(line, "misrouted") + jv(line, "bad_acks") + jv(line, "dup_acks") + jv(line, "phantom") + jv(line, "foreign")
    }
    END {
        nc = split(configs, CF, " "); nt = split(targets, TG, " ")
        printf "%-5s %-5s %-8s %11s %7s %9s %9s %9s %7s %9s %9s %7s %7s %7s %6s %4s %4s %4s\n", \
            "cfg", "cpu", "target", "msg/s", "x_base", "p50_us", "p99_us", "p999_us", "x_p99", "max_us", "hs/s", \
            "lgCPU%", "srvCPU%", "othCPU%", "lost", "dup", "err", "runs"
        for (c = 1; c <= nc; c++) {
            split(CF[c], parts, ":"); cfg = parts[1]
            if (!(cfg in plc)) plc[cfg] = "-"
            bk = cfg SUBSEP "baseline"
            b_thr = median(bk SUBSEP "delivered_per_s"); b_p99 = median(bk SUBSEP "lat_p99_us")
            for (t = 1; t <= nt; t++) {
                k = cfg SUBSEP TG[t]
                thr = median(k SUBSEP "delivered_per_s"); p99 = median(k SUBSEP "lat_p99_us")
                ok = runs[k] - failed[k]
                lgm = median(k SUBSEP "lg_cpu_pct"); if (lgm != "" && lgm + 0 > 75) { nflag++; flagged = flagged " " cfg "/" TG[t] "(" sprintf("%.0f", lgm) "%)" }
                printf "%-5s %-5s %-8s %11s %7s %9s %9s %9s %7s %9s %9s %7s %7s %7s %6d %4d %4d %4s\n", \
                    cfg, plc[cfg], TG[t], f(thr, "%.0f"), ratio(thr, b_thr), \
                    f(median(k SUBSEP "lat_p50_us"), "%.1f"), f(p99, "%.1f"), \
                    f(median(k SUBSEP "lat_p999_us"), "%.1f"), ratio(p99, b_p99), \
                    f(median(k SUBSEP "lat_max_us"), "%.0f"), f(median(k SUBSEP "hs_per_s"), "%.0f"), \
                    f(median(k SUBSEP "lg_cpu_pct"), "%.0f"), f(median(k SUBSEP "srv_cpu_pct"), "%.0f"), \
                    f(median(k SUBSEP "other_cpu_pct"), "%.0f"), \
                    lost[k], dup[k], err[k] + bad[k], ok "/" runs[k]
            }
        }
        print ""
        if (nflag) { print "NOTE: relay-load used >75% CPU in:" flagged; print "      those numbers may be load-generator-bound (try LOAD_THREADS=2; see README)"; print "" }
        print "cpu = placement (same: server+load on CPU 0, split: server CPU 0 / load CPU 1, free: unpinned)"
        print "msg/s = MESSAGEs delivered to recipients per second (median of runs); x_base = target/baseline"
        print "(higher is better); latencies are send->delivery, median of per-run percentiles; x_p99 ="
        print "target p99 / baseline p99 (lower is better); hs/s = connect+HELLO round trips per second;"
        print "lgCPU%/srvCPU%/othCPU% = CPU of load generator / server / everything else on the machine"
        print "over the load window (100 = one core; othCPU% > ~5 means the numbers are disturbed);"
        print "lost/dup/err summed over runs (err = connection/protocol/handshake errors + misrouted,"
        print "phantom and foreign MESSAGEs + bad and duplicate ACKs)."
    }' "$RES"
}

echo
summarize | tee "$OUT_DIR/summary.txt"
echo
log "raw JSON lines: $RES"
