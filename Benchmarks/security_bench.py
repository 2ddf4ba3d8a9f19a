#!/usr/bin/env python3
"""The security benchmarks of issue 9, run by Benchmarks/security.sh (which builds everything and
passes the paths). Each part starts its own relay (relayproc.py), measures side by side in one run
and prints one table; the sizes are environment knobs (see security.sh).

  thr     msg/s over TLS vs plaintext, both from tls-load (one client, one code path), with
          relay-load's plaintext thr next to it as a cross-check of tls-load
  hs      TLS handshakes/s: the relay vs `openssl s_server`, both measured by `openssl s_time -new`,
          next to the plaintext accept rate of the C baseline relay (relay-load hs_per_s)
  mem     RSS per idle connection (HELLO said, TLS finished) at 1,000, 5,000 and 19,000
  flood   100 good clients on the `lat` pattern with and without a connection flood (placement:
          FLOOD_PIN, see security.sh): their p99,
          the relay's peak RSS (VmHWM) and its refusal counters from /stats
"""
import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from relayproc import free_port, log, proc_status, run_json, running_relay, stats, wait_listening  # noqa: E402

ENV = os.environ
REPS = int(ENV.get("REPS", "3"))
DURATION = float(ENV.get("DURATION", "5"))
WARMUP = float(ENV.get("WARMUP", "1"))
THR_CONNS = int(ENV.get("THR_CONNS", "100"))
THR_WINDOW = int(ENV.get("THR_WINDOW", "64"))
THR_PAYLOAD = int(ENV.get("THR_PAYLOAD", "256"))
HS_SECONDS = float(ENV.get("HS_SECONDS", "5"))
HS_CONNS = int(ENV.get("HS_CONNS", "5000"))
MEM_COUNTS = [int(n) for n in ENV.get("MEM_COUNTS", "1000,5000,19000").split(",") if n]
MEM_PER_PROC = int(ENV.get("MEM_PER_PROC", "5000"))
MEM_TIMEOUT = float(ENV.get("MEM_TIMEOUT", "180"))
FLOOD_PROCS = int(ENV.get("FLOOD_PROCS", "2"))
FLOOD_SOURCES = int(ENV.get("FLOOD_SOURCES", "8"))
# Seconds the flood runs before the good clients connect: 1 s is its start, 30 s a flood in its
# steady state (the relay's bans, limits.ban_after_refusals, take hold within a minute).
FLOOD_LEAD = float(ENV.get("FLOOD_LEAD", "1"))
FLOOD_MAX_OPEN = int(ENV.get("FLOOD_MAX_OPEN", "2000"))
FLOOD_KIND = ENV.get("FLOOD_KIND", "mix")
FLOOD_TARGET = ENV.get("FLOOD_TARGET", "plain")  # or tls: the flood goes to the TLS listener
LAT_CONNS = int(ENV.get("LAT_CONNS", "100"))
# Where the flood part runs each side (see security.sh): "RELAY_CPUS/FLOOD_CPUS" (taskset lists), or
# "off" to let the scheduler place everything on the shared cores.
FLOOD_PIN = ENV.get("FLOOD_PIN", "0/1" if (os.cpu_count() or 1) >= 2 and shutil.which("taskset") else "off")
# The thr part's second table (see security.sh): "RELAY_CPU/CLIENT_CPU", or "off" for the shared-cores
# table only.
THR_PIN = ENV.get("THR_PIN", "0/1" if (os.cpu_count() or 1) >= 2 and shutil.which("taskset") else "off")
# Unlimited accept and per-node limits for thr, hs and mem: they measure the transport, not the limits.
UNLIMITED = """limits:
  per_ip_connections: 0
  per_ip_new_per_second: 0
  max_connections: 0
  node_messages_per_second: 0
  node_bytes_per_second: 0
"""


# The flood part keeps the accept limits at their defaults (they are what it measures) and turns off
# the per-node budgets: at window 1 a good client sends ~500 msg/s, over the default 200/s, and its
# p99 would measure `throttled`, not the flood.
NODE_LIMITS_OFF = """limits:
  node_messages_per_second: 0
  node_bytes_per_second: 0
"""


def relay_config(port, stats_port, tls_port, cert, key, extra="", threads=None):
    return f"""relay:
  listen: ["127.0.0.1:{port}"]
  name: secbench
{f"  threads: {threads}" if threads else ""}
  data_dir: "{{work}}/data"
stats:
  listen: "127.0.0.1:{stats_port}"
log:
  level: warning
timeouts:
  idle: 3600
tls:
  listen: ["127.0.0.1:{tls_port}"]
  cert: "{cert}"
  key: "{key}"
{extra}"""


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def connect_seconds(goods):
    """How long the good clients took to connect and say HELLO (median of the runs), from
    relay-load's handshake rate; `-` when none connected."""
    times = [LAT_CONNS / g["hs_per_s"] for g in goods if g.get("hs_per_s")]
    return f"{statistics.median(times):.2f}" if times else "-"


def median(rows, key):
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values else 0


def total(rows, key):
    return sum(r.get(key, 0) for r in rows)


def fixed(value):
    """Two decimals, or "-" for a figure the tool does not report (0)."""
    return f"{value:.2f}" if value else "-"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


class Bench:
    def __init__(self, args):
        self.a = args
        self.cert, self.key = args.cert, args.key

    def relay(self, prefix, extra=UNLIMITED, relay_bin=None, threads=None):
        port, stats_port, tls_port = free_port(), free_port(), free_port()
        text = relay_config(port, stats_port, tls_port, self.cert, self.key, extra, threads)
        return port, stats_port, tls_port, running_relay(relay_bin or self.a.relay, prefix, text)

    def tls_load(self, *args, timeout=120, env=None):
        """tls-load with `args`; a leading `taskset -c CPUS` runs it there."""
        pin = list(args[:3]) if args and args[0] == "taskset" else []
        return run_json([*pin, self.a.tls_load, *map(str, args[len(pin):]), "--quiet"], timeout, env)

    def relay_load(self, *args, timeout=120):
        """relay-load with `args`; a leading `taskset -c CPUS` runs it there."""
        pin = list(args[:3]) if args and args[0] == "taskset" else []
        return run_json([*pin, self.a.relay_load, *map(str, args[len(pin):]), "--quiet"], timeout)

    # ------------------------------------------------------------------ thr
    def thr(self):
        self.thr_placement(None)
        if THR_PIN != "off":
            self.thr_placement(THR_PIN.split("/"))

    def thr_placement(self, cpus):
        """One thr table: on the shared cores (`cpus` None), or the relay alone on cpus[0] with one
        event loop and every client on cpus[1]."""
        port, stats_port, tls_port, ctx = self.relay("secbench-thr-", threads=1 if cpus else None)
        client_pin = ["taskset", "-c", cpus[1]] if cpus else []
        with ctx as relay:
            if cpus:  # every thread of the relay (its loops exist by now: it listens)
                subprocess.run(["taskset", "-a", "-p", "-c", cpus[0], str(relay.pid)], check=True, stdout=subprocess.DEVNULL)
            has_tls = wait_listening(tls_port)
            common = ["--conns", THR_CONNS, "--window", THR_WINDOW, "--payload", THR_PAYLOAD,
                      "--duration", DURATION, "--warmup", WARMUP, "--drain", 3]
            # tls: OpenSSL's default order offers AES-256-GCM first and the relay's BoringSSL follows
            # the client's order; tls-aes128: the suite BoringSSL clients (ptpchat) put first.
            runs = {"plain": [], "tls": [], "tls-aes128": [], "relay-load": []}
            suite_env = {"tls-aes128": {"TLS_LOAD_CIPHERSUITES": "TLS_AES_128_GCM_SHA256"}}
            limit = DURATION + 60
            for rep in range(REPS):
                for name in runs:
                    is_tls = name.startswith("tls")
                    if is_tls and not has_tls:
                        continue
                    before = cpu_ticks(relay.pid)
                    t0 = time.monotonic()
                    if name == "relay-load":
                        row = self.relay_load(*client_pin, "--port", port, *common, "--label", name, timeout=limit)
                    else:
                        row = self.tls_load(*client_pin, "--port", tls_port if is_tls else port, *(["--tls"] if is_tls else []),
                                            *common, "--label", name, timeout=limit, env=suite_env.get(name))
                    if row:
                        wall = time.monotonic() - t0
                        row["srv_cpu_pct"] = 100.0 * (cpu_ticks(relay.pid) - before) / os.sysconf("SC_CLK_TCK") / wall
                        # CPU per message: the relay's over the whole run (handshakes, warm-up and
                        # drain too: the same for every row) per message it delivered in it.
                        if row.get("delivered"):
                            row["srv_us_per_msg"] = row["srv_cpu_pct"] / 100.0 * wall * 1e6 / row["delivered"]
                        if row.get("delivered_per_s"):
                            row["lg_us_per_msg"] = row.get("lg_cpu_pct", 0) * 1e4 / row["delivered_per_s"]
                        runs[name].append(row)
                    log(f"thr{' pinned' if cpus else ''} rep {rep + 1}/{REPS} {name}: {row.get('delivered_per_s', 0):.0f} msg/s")
        plain = median(runs["plain"], "delivered_per_s")
        plain_srv = median(runs["plain"], "srv_us_per_msg")
        placement = (f"the relay alone on CPU {cpus[0]} with one event loop, the clients on CPU {cpus[1]}: the relay's "
                     "own capacity" if cpus else "relay and clients on the shared cores")
        print(f"\n## thr over TLS vs plaintext ({THR_CONNS} conns in pairs, window {THR_WINDOW}, payload {THR_PAYLOAD}, "
              f"{DURATION:g} s, median of {REPS} interleaved runs; {placement})")
        print(f"{'client':11} {'transport':10} {'msg/s':>9} {'x_plain':>8} {'p50_us':>8} {'p99_us':>8} {'lgCPU%':>6} "
              f"{'srvCPU%':>7} {'srv_us':>6} {'srv_x':>5} {'lg_us':>5} {'lost':>5} {'unacked':>7} {'dup':>4} {'err':>4} runs")
        for name, client, transport in (("plain", "tls-load", "plain"), ("tls", "tls-load", "tls"),
                                        ("tls-aes128", "tls-load", "tls-aes128"), ("relay-load", "relay-load", "plain")):
            rows = runs[name]
            if not rows:
                print(f"{client:11} {transport:10} {'n/a: the relay has no TLS listener (tls.listen)':>40}")
                continue
            rate = median(rows, "delivered_per_s")
            srv_us = median(rows, "srv_us_per_msg")
            print(f"{client:11} {transport:10} {rate:>9.0f} {ratio(rate, plain):>8} {median(rows, 'lat_p50_us'):>8.0f} "
                  f"{median(rows, 'lat_p99_us'):>8.0f} {median(rows, 'lg_cpu_pct'):>6.0f} {median(rows, 'srv_cpu_pct'):>7.0f} "
                  f"{srv_us:>6.2f} {ratio(srv_us, plain_srv):>5} {fixed(median(rows, 'lg_us_per_msg')):>5} "
                  f"{total(rows, 'lost'):>5} {total(rows, 'unacked'):>7} {total(rows, 'dup'):>4} "
                  f"{total(rows, 'errors') + total(rows, 'bad') + total(rows, 'misrouted'):>4} {len(rows)}")
        suites = sorted({r.get("negotiated", "?") for r in runs["tls"] + runs["tls-aes128"]})
        print("goal: tls-load tls / tls-load plain >= 0.70; relay-load's row cross-checks tls-load's plaintext figure"
              + (f"; TLS: {', '.join(suites)}" if suites else ""))
        print("srv_us: the relay's CPU µs per delivered message (srv_x: / plaintext's), lg_us: tls-load's; "
              + ("each has a CPU of its own, so msg/s follows the busier side (the relay at ~100 % srvCPU%)" if cpus
                 else "both share the cores, so msg/s moves with the sum of the two"))

    # ------------------------------------------------------------------ handshakes
    def s_time(self, port):
        """connections per second of `openssl s_time -new` (one at a time, full handshakes)."""
        cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", f"{HS_SECONDS:g}"]
        t0 = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=HS_SECONDS + 60)
        wall = time.monotonic() - t0
        for line in out.stdout.splitlines():
            if "connections in" in line and "real seconds" in line:
                return int(line.split()[0]) / wall
        log(f"s_time gave no count: {out.stdout[-300:]} {out.stderr[-300:]}")
        return 0

    def hs(self):
        rows = {}

        def add(name, value):
            rows.setdefault(name, []).append(value)

        hs_args = ["--conns", HS_CONNS, "--window", 1, "--payload", 64, "--messages", 1, "--duration", 1,
                   "--drain", 0.5, "--src-ips", "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5"]
        s_port, base_port = free_port(), free_port()
        s_server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{s_port}", "-cert", self.cert,
                                     "-key", self.key, "-www", "-quiet"], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        baseline = subprocess.Popen([self.a.baseline, "--port", str(base_port), "--threads", str(os.cpu_count() or 2)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port, stats_port, tls_port, ctx = self.relay("secbench-hs-")
        try:
            with ctx:
                has_tls = wait_listening(tls_port)
                if not wait_listening(s_port) or not wait_listening(base_port):
                    raise SystemExit("security_bench: openssl s_server or baseline-relay did not listen")
                for rep in range(REPS):
                    add("s_server", self.s_time(s_port))
                    if has_tls:
                        add("relay_s_time", self.s_time(tls_port))
                        add("relay_tls_hello", self.tls_load("--mode", "hs", "--tls", "--port", tls_port, *hs_args[:2],
                                                             "--src-ips", hs_args[-1]).get("hs_per_s", 0))
                    add("relay_plain_hello", self.tls_load("--mode", "hs", "--port", port, *hs_args[:2],
                                                           "--src-ips", hs_args[-1]).get("hs_per_s", 0))
                    add("relay_load_relay", self.relay_load("--port", port, *hs_args).get("hs_per_s", 0))
                    add("relay_load_baseline", self.relay_load("--port", base_port, *hs_args).get("hs_per_s", 0))
                    log(f"hs rep {rep + 1}/{REPS}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rows.items()))
        finally:
            for p in (s_server, baseline):
                p.terminate()
                p.wait(timeout=10)
        med = {k: statistics.median(v) for k, v in rows.items()}
        s_srv, base = med.get("s_server", 0), med.get("relay_load_baseline", 0)
        print(f"\n## Handshakes per second (median of {REPS} interleaved runs; s_time {HS_SECONDS:g} s, one connection "
              f"at a time; the others {HS_CONNS} connections, 256 in flight)")
        print(f"{'server':16} {'what':30} {'client':22} {'conns/s':>8} {'x_s_server':>10} {'x_baseline':>10}")
        table = (("s_server", "openssl s_server", "TLS handshake", "openssl s_time -new"),
                 ("relay_s_time", "relay tls.listen", "TLS handshake", "openssl s_time -new"),
                 ("relay_tls_hello", "relay tls.listen", "TCP+TLS+HELLO round trip", "tls-load --mode hs"),
                 ("relay_plain_hello", "relay listen", "TCP+HELLO round trip", "tls-load --mode hs"),
                 ("relay_load_relay", "relay listen", "TCP+HELLO round trip", "relay-load hs_per_s"),
                 ("relay_load_baseline", "baseline-relay", "TCP+HELLO round trip", "relay-load hs_per_s"))
        for key, server, what, client in table:
            if key not in med:
                print(f"{server:16} {what:30} {client:22} {'n/a: the relay has no TLS listener':>30}")
                continue
            x_s_server = ratio(med[key], s_srv) if client.startswith("openssl") else "-"
            print(f"{server:16} {what:30} {client:22} {med[key]:>8.0f} {x_s_server:>10} {ratio(med[key], base):>10}")
        print("x_s_server: same client tool (s_time) for the first two rows; x_baseline: against the C baseline's plaintext accept rate")

    # ------------------------------------------------------------------ memory
    def mem_one(self, tls, count):
        port, stats_port, tls_port, ctx = self.relay("secbench-mem-")
        with ctx as relay:
            target = tls_port if tls else port
            if not wait_listening(target):
                return None
            # Warm up: the first connections set up pools and the TLS context; not per-connection memory.
            self.tls_load("--mode", "hs", "--port", target, "--conns", 50, *(["--tls"] if tls else []))
            deadline = time.monotonic() + 10
            while stats(stats_port)["connections"]["clients"] and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            before = proc_status(relay.pid, "VmRSS")
            procs = math.ceil(count / MEM_PER_PROC)
            holders, outputs = [], []
            for i in range(procs):
                share = count // procs + (1 if i < count % procs else 0)
                out = tempfile.TemporaryFile(mode="w+")
                outputs.append(out)
                holders.append(subprocess.Popen(
                    [self.a.tls_load, "--mode", "hold", "--port", str(target), "--conns", str(share),
                     "--hs-concurrency", "128", "--hs-timeout", str(MEM_TIMEOUT), "--hold", str(MEM_TIMEOUT + 120),
                     "--src-ips", f"127.0.1.{i + 2}", "--quiet", *(["--tls"] if tls else [])],
                    stdout=out, stderr=subprocess.DEVNULL))
            try:
                ready, deadline = [], time.monotonic() + MEM_TIMEOUT + 10
                while len(ready) < procs and time.monotonic() < deadline:
                    ready = []
                    for out in outputs:
                        out.seek(0)
                        text = out.read()
                        if text.strip():
                            ready.append(json.loads(text.splitlines()[0]))
                    time.sleep(0.2)
                opened = sum(r.get("ready", 0) for r in ready)
                # The relay has registered every HELLO (the holders' count is what they saw answered).
                deadline = time.monotonic() + 20
                while stats(stats_port)["connections"]["clients"] < opened and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(1)
                after = proc_status(relay.pid, "VmRSS")
                clients = stats(stats_port)["connections"]["clients"]
                hwm = proc_status(relay.pid, "VmHWM")
            finally:
                for h in holders:
                    h.terminate()
                for h in holders:
                    h.wait(timeout=60)
        failed = sum(r.get("hs_failed", 0) for r in ready) + (count - sum(r.get("conns", 0) for r in ready))
        return {"count": count, "opened": opened, "failed": failed, "clients": clients, "before": before, "after": after, "hwm": hwm,
                "per_conn": (after - before) / clients if clients else 0}

    def mem(self):
        results = []
        for tls in (False, True):
            for count in MEM_COUNTS:
                r = self.mem_one(tls, count)
                results.append((tls, count, r))
                log(f"mem {'tls' if tls else 'plain'} {count}: " + (f"{r['per_conn']:.1f} KiB/conn" if r else "n/a"))
        print("\n## RSS per idle connection (a fresh relay per row; VmRSS after minus before, over the connections "
              "the relay counts as clients)")
        print(f"{'transport':9} {'conns':>6} {'failed':>6} {'clients':>7} {'rss_before_MiB':>14} {'rss_after_MiB':>13} {'KiB/conn':>8} "
              f"{'goal_KiB':>8}")
        for tls, count, r in results:
            goal = 24 if tls else 4
            name = "tls" if tls else "plain"
            if not r:
                print(f"{name:9} {count:>6} {'n/a: the relay has no TLS listener':>40}")
                continue
            print(f"{name:9} {count:>6} {r['failed']:>6} {r['clients']:>7} {r['before'] / 1024:>14.1f} {r['after'] / 1024:>13.1f} "
                  f"{r['per_conn']:>8.1f} {goal:>8}")
        print("each connection said HELLO (TLS: after the handshake) and stays idle; the goal applies at 19,000")

    # ------------------------------------------------------------------ flood
    def flood_run(self, with_flood, relay_bin=None):
        port, stats_port, tls_port, ctx = self.relay("secbench-flood-", extra=ENV.get("FLOOD_RELAY_CONFIG", NODE_LIMITS_OFF),
                                                     relay_bin=relay_bin)
        good_sources = ",".join(f"127.0.0.{100 + i}" for i in range(max(1, math.ceil(LAT_CONNS / 25))))
        flooders = []
        relay_pin, flood_pin = ([], []) if FLOOD_PIN == "off" else \
            (["taskset", "-c", FLOOD_PIN.split("/")[0]], ["taskset", "-c", FLOOD_PIN.split("/")[1]])
        with ctx as relay:
            if relay_pin:  # every thread of the relay (its loops exist by now: it listens)
                subprocess.run(["taskset", "-a", "-p", "-c", relay_pin[2], str(relay.pid)], check=True,
                               stdout=subprocess.DEVNULL)
            flood_port = tls_port if FLOOD_TARGET == "tls" else port
            if FLOOD_TARGET == "tls" and not wait_listening(tls_port):
                raise SystemExit("security_bench: FLOOD_TARGET=tls but the relay has no TLS listener")
            if with_flood:
                per = max(1, FLOOD_SOURCES // FLOOD_PROCS)
                for i in range(FLOOD_PROCS):
                    sources = ",".join(f"127.0.0.{2 + i * per + k}" for k in range(per))
                    flooders.append(subprocess.Popen(
                        [*flood_pin, self.a.tls_load, "--mode", "flood", "--port", str(flood_port), "--duration", str(DURATION + 120),
                         "--max-open", str(FLOOD_MAX_OPEN // FLOOD_PROCS), "--flood-kind", FLOOD_KIND, "--src-ips", sources,
                         "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
                time.sleep(FLOOD_LEAD)
            good = self.relay_load(*relay_pin, "--port", port, "--conns", LAT_CONNS, "--window", 1, "--payload", 64,
                                   "--duration", DURATION, "--warmup", WARMUP, "--drain", 2, "--src-ips", good_sources,
                                   "--server-pids", relay.pid, timeout=DURATION + 60)
            flood = []
            for f in flooders:  # the flood lasts until the good clients are done
                f.terminate()
            for f in flooders:
                out, _ = f.communicate(timeout=60)
                lines = [line for line in out.splitlines() if line.startswith("{")]
                if lines:
                    flood.append(json.loads(lines[-1]))
            snapshot = stats(stats_port)
            hwm = proc_status(relay.pid, "VmHWM")
        return {"good": good, "flood": flood, "drops": snapshot.get("drops", {}), "hwm": hwm,
                "accepted": snapshot["connections"]["accepted"]}

    def flood(self):
        # FLOOD_COMPARE=path: a second relay binary (e.g. an older build) measured in the same run,
        # interleaved with this one, each against its own calm run.
        variants = [("relay", self.a.relay)] + ([("compare", ENV["FLOOD_COMPARE"])] if ENV.get("FLOOD_COMPARE") else [])
        runs = {(name, f): [] for name, _ in variants for f in (False, True)}
        for rep in range(REPS):
            for name, binary in variants:
                for with_flood in (False, True):
                    r = self.flood_run(with_flood, relay_bin=binary)
                    runs[(name, with_flood)].append(r)
                    log(f"flood rep {rep + 1}/{REPS} {name} {'flood' if with_flood else 'calm'}: p99 "
                        f"{r['good'].get('lat_p99_us', 0):.0f} us, flood {sum(f.get('connected_per_s', 0) for f in r['flood']):.0f} conn/s")
        pin = "unpinned" if FLOOD_PIN == "off" else \
            f"relay and good clients on CPU {FLOOD_PIN.split('/')[0]}, flood tools on CPU {FLOOD_PIN.split('/')[1]}"
        print(f"\n## Connection flood ({FLOOD_PROCS} tls-load --mode flood processes from {FLOOD_SOURCES} addresses, "
              f"kind {FLOOD_KIND}, to the {FLOOD_TARGET} listener, at most {FLOOD_MAX_OPEN} open) while {LAT_CONNS} good clients run lat "
              f"(window 1, payload 64), connecting {FLOOD_LEAD:g} s into the flood; median of {REPS}, a fresh relay per run, "
              f"default accept limits, per-node budgets off; {pin}")
        if len(variants) > 1:
            print("relays: " + ", ".join(f"{name} = {binary}" for name, binary in variants))
        print(f"{'relay':8} {'run':6} {'good msg/s':>10} {'p50_us':>8} {'p99_us':>8} {'x_p99':>6} {'conn_s':>6} {'good_err':>8} {'lost':>5} "
              f"{'flood conn/s':>12} {'flood CPU%':>10} {'relay CPU%':>10} {'other CPU%':>10} {'accepted':>9} {'peak_RSS_MiB':>12}  refusals (/stats drops, summed)")
        for name, _ in variants:
            calm_p99 = median([r["good"] for r in runs[(name, False)]], "lat_p99_us")
            for with_flood in (False, True):
                rs = runs[(name, with_flood)]
                goods = [r["good"] for r in rs]
                p99 = median(goods, "lat_p99_us")
                drops = {}
                for r in rs:
                    for k, v in r["drops"].items():
                        if v:
                            drops[k] = drops.get(k, 0) + v
                flood_rate = statistics.median([sum(f.get("connected_per_s", 0) for f in r["flood"]) for r in rs]) if with_flood else 0
                flood_cpu = statistics.median([sum(f.get("cpu_pct", 0) for f in r["flood"]) for r in rs]) if with_flood else 0
                print(f"{name:8} {'flood' if with_flood else 'calm':6} {median(goods, 'delivered_per_s'):>10.0f} "
                      f"{median(goods, 'lat_p50_us'):>8.0f} "
                      f"{p99:>8.0f} {ratio(p99, calm_p99):>6} {connect_seconds(goods):>6} {total(goods, 'errors'):>8} "
                      f"{total(goods, 'lost') + total(goods, 'unacked'):>5} "
                      f"{flood_rate:>12.0f} {flood_cpu:>10.0f} {median(goods, 'srv_cpu_pct'):>10.0f} "
                      f"{median(goods, 'other_cpu_pct'):>10.0f} {statistics.median([r['accepted'] for r in rs]):>9.0f} "
                      f"{statistics.median([r['hwm'] for r in rs]) / 1024:>12.1f}  "
                      + (" ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "none"))
        print("goal: flood p99 <= 2x calm p99; conn_s = seconds for the good clients to connect and say HELLO (median;\n"
              f"relay-load gives up on one after 20 s: good_err, summed); accepted = connections the relay accepted in the run (good + flood);\n"
              "flood CPU% = the flood tools' own CPU, relay CPU% = the relay's during the good clients' run,\n"
              "other CPU% = the rest of the machine's then (the flood tools and whatever else runs; 100 = one core)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", required=True)
    parser.add_argument("--tls-load", required=True)
    parser.add_argument("--relay-load", required=True)
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("parts", nargs="*", default=["thr", "hs", "mem", "flood"])
    args = parser.parse_args()
    bench = Bench(args)
    for part in args.parts:
        getattr(bench, part)()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
