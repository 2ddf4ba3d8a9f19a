#!/usr/bin/env bash
# The `lat` load rep by rep, with how each server was scheduled. run-compare's `lat` (2
# connections, window 1, payload 64, server and relay-load both on CPU 0) moves by up to a third
# between reps of one build, the C baseline's reps and the relay's alike; this shows whether a slow
# rep did more work or was scheduled differently. The C baseline and the relay, one long-lived
# process each (as run-compare starts them), interleaved, LAT_REPS reps each; before each rep
# every thread of the server is pinned to CPU 0 (`taskset -a -p`, as run-compare does),
# relay-load runs on CPU 0, and the server's threads get their CPUs back afterwards.
#
#   Benchmarks/lat-reps.sh                        # LAT_REPS=12, LAT_DURATION=4: about 2 minutes
#   RELAY_BIN=/old/ptpchat-relay Benchmarks/lat-reps.sh
#
# Per rep and target: msg/s, p50 and p99 latency, and over all the server's threads in that rep
# their CPU time, voluntary context switches (a thread slept: nothing to do) and involuntary ones
# (it was preempted, here mostly by relay-load woken by its write), each per 1,000 messages, and
# how many threads did a tenth of that CPU or more (the baseline's two workers each take a
# connection in some reps). Then the medians, the ratio of the relay's median to the baseline's,
# and how the relay's msg/s follows its voluntary switches and its CPU across reps (Pearson's r).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"
REPS="${LAT_REPS:-12}"
DURATION="${LAT_DURATION:-4}"
PORT="${BASE_PORT:-18451}"
NAME=lat-reps.sh
# shellcheck source=Benchmarks/shared-bench-tools.sh
source "$ROOT/Benchmarks/shared-bench-tools.sh"
# shellcheck source=Benchmarks/release-builds.sh
source "$ROOT/Benchmarks/release-builds.sh"
build_relay

[[ $(nproc) -ge 2 ]] && command -v taskset >/dev/null || { echo "$NAME: needs taskset and 2 CPUs" >&2; exit 2; }
bench_workdir lat-reps
export LIMITS_PER_IP_CONNECTIONS=0 LIMITS_PER_IP_NEW_PER_SECOND=0 LIMITS_NODE_MESSAGES_PER_SECOND=0 LIMITS_NODE_BYTES_PER_SECOND=0

# As run-compare.sh starts it: one worker per CPU.
"$BENCH/baseline-relay" --port "$PORT" --bind 127.0.0.1 --threads "$(nproc)" --quiet >"$WORK/baseline.log" 2>&1 &
PIDS+=($!)
BASE_PID=$!
mkdir -p "$WORK/relay"
"$RELAY_BIN" --listen "127.0.0.1:$((PORT + 1))" --data-dir "$WORK/relay" --stats off --log-level warning >"$WORK/relay.log" 2>&1 &
PIDS+=($!)
RELAY_PID=$!
wait_listening "$PORT" $((PORT + 1))

echo "# $NAME: $REPS reps of the lat load per target, interleaved, all on CPU 0; load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$BENCH/relay-load" "$REPS" "$DURATION" "baseline:$PORT:$BASE_PID" "relay:$((PORT + 1)):$RELAY_PID" <<'EOF'
import glob, json, os, statistics, subprocess, sys

load, reps, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3]
targets = [(name, int(port), int(pid)) for name, port, pid in (arg.split(":") for arg in sys.argv[4:])]
ticks = os.sysconf("SC_CLK_TCK")

def threads(pid):
    """Each thread's name, CPU time (clock ticks), voluntary and involuntary context switches."""
    found = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            stat = open(f"{task}/stat").read()
            status = open(f"{task}/status").read()
        except OSError:
            continue  # the thread ended
        fields = stat[stat.rindex(")") + 2:].split()
        switches = dict(line.split(":\t") for line in status.splitlines() if "ctxt_switches" in line)
        found[task] = (stat[stat.index("(") + 1:stat.rindex(")")], int(fields[11]) + int(fields[12]),
                       int(switches["voluntary_ctxt_switches"]), int(switches["nonvoluntary_ctxt_switches"]))
    return found

def pin(pid, cpus):
    """Sets the CPUs of every thread of pid; a thread that ends meanwhile makes taskset fail: once more."""
    for attempt in (1, 2):
        done = subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode == 0:
            return
    sys.exit(f"lat-reps.sh: taskset -a -p -c {cpus} {pid}: {done.stderr.strip()}")

results = {name: [] for name, _, _ in targets}
print(f"{'rep':>3} {'target':9} {'msg/s':>8} {'p50_us':>7} {'p99_us':>7} {'threads':>7} "
      f"{'cpu_ms/1k':>9} {'vol/1k':>7} {'invol/1k':>8}")
for rep in range(reps):
    for name, port, pid in targets:
        own_cpus = ",".join(map(str, sorted(os.sched_getaffinity(pid))))
        pin(pid, "0")
        before = threads(pid)
        load_run = subprocess.run(["taskset", "-c", "0", load, "--port", str(port), "--conns", "2", "--window", "1",
                                   "--payload", "64", "--duration", duration, "--warmup", "1", "--quiet"],
                                  capture_output=True, text=True)
        after = threads(pid)
        pin(pid, own_cpus)
        if load_run.returncode != 0:
            sys.exit(f"lat-reps.sh: {name} rep {rep}: relay-load failed: {load_run.stderr.strip()}")
        run = json.loads(load_run.stdout.strip().splitlines()[-1])
        if run["lost"] or run["dup"] or run["errors"]:
            sys.exit(f"lat-reps.sh: {name} rep {rep}: lost {run['lost']} dup {run['dup']} errors {run['errors']}")
        # Every thread over the whole rep (warm-up and drain included: /proc counts from the start).
        deltas = [tuple(after[t][i] - before[t][i] for i in (1, 2, 3)) for t in after if t in before]
        cpu, vol, invol = (sum(d[i] for d in deltas) for i in range(3))
        busy = sum(1 for d in deltas if cpu and d[0] * 10 >= cpu)
        messages = run["delivered"] / 1000
        row = (run["delivered_per_s"], run["lat_p50_us"], run["lat_p99_us"], 1000 * cpu / ticks / messages,
               vol / messages, invol / messages)
        results[name].append(row)
        print(f"{rep:>3} {name:9} {row[0]:8.0f} {row[1]:7.1f} {row[2]:7.1f} {busy:7} "
              f"{row[3]:9.2f} {row[4]:7.1f} {row[5]:8.1f}", flush=True)

def correlation(xs, ys):
    try:
        return f"{statistics.correlation(xs, ys):.2f}"
    except statistics.StatisticsError:  # fewer than two reps, or one side constant
        return "n/a"

print()
print(f"{'target':9} {'msg/s':>8} {'x_base':>6} {'p99_us':>7} {'x_p99':>6}  (medians of {reps} reps; min-max msg/s)")
base = results["baseline"]
for name, rows in results.items():
    rate, p99 = statistics.median(r[0] for r in rows), statistics.median(r[2] for r in rows)
    print(f"{name:9} {rate:8.0f} {rate / statistics.median(r[0] for r in base):6.2f} {p99:7.1f} "
          f"{p99 / statistics.median(r[2] for r in base):6.2f}  {min(r[0] for r in rows):.0f}-{max(r[0] for r in rows):.0f}")
relay = results["relay"]
print(f"relay: r(msg/s, voluntary switches per message) = {correlation([r[0] for r in relay], [r[4] for r in relay])}, "
      f"r(msg/s, CPU per message) = {correlation([r[0] for r in relay], [r[3] for r in relay])}")
print("threads: the server's threads with a tenth or more of its CPU time in the rep; cpu_ms/1k, vol/1k,")
print("invol/1k: all its threads' CPU time, voluntary and involuntary context switches per 1,000 delivered")
print("messages (warm-up and drain included).")
EOF
