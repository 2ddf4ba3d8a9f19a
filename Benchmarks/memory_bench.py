#!/usr/bin/env python3
"""The relay's memory (issue 10), run by Benchmarks/memory.sh, which builds everything and passes
the paths. Every relay named with --relay is measured in the same run, one after the other (name=path:
a build of main next to a branch gives before/after side by side). RSS is VmRSS from /proc: it does
not depend on the CPU time the machine has to spare.

  load    one relay, 100 idle connections held (HELLO said), then ROUNDS rounds of relay-load
          (100 connections in pairs, window 16, payload 256, LOAD_SECONDS each), then quiet:
          RSS idle, the highest RSS sampled during each round (every 0.1 s) and after it, and RSS
          QUIET_SECONDS after the last round (past `timeouts.ack`, 10 s, and the idle sweeps);
          each over the idle figure (goal: <= 2), with lost and duplicated messages.
  burst   what a connection keeps after one burst: BURST_CONNS connections say HELLO, each then
          sends BURST_MIB MiB of keepalives at once and goes quiet; RSS after the relay read it all
          minus before, per connection (NIO keeps a channel's grown receive buffer while it is open:
          this is that buffer's cap).
  idle    RSS per idle plaintext connection (HELLO said, `routing.to_clients: false`): a fresh
          relay per count, VmRSS after minus before over the connections it counts as clients
          (goal: <= 4 KiB). Holders are tls-load --mode hold processes of up to 5,000 connections,
          each from its own address 127.0.1.x.
"""
import argparse
import json
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from relayproc import free_port, log, proc_status, run_json, running_relay, stats, wait_listening  # noqa: E402

ENV = os.environ
ROUNDS = int(ENV.get("ROUNDS", "2"))
LOAD_SECONDS = float(ENV.get("LOAD_SECONDS", "15"))
LOAD_CONNS = int(ENV.get("LOAD_CONNS", "100"))
QUIET_SECONDS = float(ENV.get("QUIET_SECONDS", "15"))
BURST_CONNS = int(ENV.get("BURST_CONNS", "200"))
BURST_MIB = float(ENV.get("BURST_MIB", "2"))
IDLE_COUNTS = [int(n) for n in ENV.get("IDLE_COUNTS", "1000,5000,19000").split(",") if n]
PER_PROC = 5000
HOLD_TIMEOUT = 180

UNLIMITED = """limits:
  per_ip_connections: 0
  per_ip_new_per_second: 0
  max_connections: 0
  node_messages_per_second: 0
  node_bytes_per_second: 0
"""


def config(port, stats_port, extra=""):
    return f"""relay:
  listen: ["127.0.0.1:{port}"]
  name: membench
  data_dir: "{{work}}/data"
stats:
  listen: "127.0.0.1:{stats_port}"
log:
  level: warning
timeouts:
  idle: 3600
{UNLIMITED}{extra}"""


class Holders:
    """tls-load --mode hold processes keeping `count` connections open (HELLO said) until stopped."""

    def __init__(self, tls_load, port, count, first_address=2):
        self.procs, self.outputs = [], []
        n = max(1, math.ceil(count / PER_PROC))
        for i in range(n):
            share = count // n + (1 if i < count % n else 0)
            out = tempfile.TemporaryFile(mode="w+")
            self.outputs.append(out)
            self.procs.append(subprocess.Popen(
                [tls_load, "--mode", "hold", "--port", str(port), "--conns", str(share), "--hs-concurrency", "128",
                 "--hs-timeout", str(HOLD_TIMEOUT), "--hold", str(HOLD_TIMEOUT * 4), "--src-ips",
                 f"127.0.1.{first_address + i}", "--quiet"], stdout=out, stderr=subprocess.DEVNULL))

    def wait_ready(self):
        """Connections the holders report open (each prints one line once all its handshakes ended)."""
        ready, deadline = [], time.monotonic() + HOLD_TIMEOUT + 10
        while len(ready) < len(self.procs) and time.monotonic() < deadline:
            ready = []
            for out in self.outputs:
                out.seek(0)
                text = out.read()
                if text.strip():
                    ready.append(json.loads(text.splitlines()[0]))
            time.sleep(0.2)
        return sum(r.get("ready", 0) for r in ready)

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=60)


def wait_clients(stats_port, at_least, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        clients = stats(stats_port)["connections"]["clients"]
        if clients >= at_least:
            return clients
        time.sleep(0.2)
    return stats(stats_port)["connections"]["clients"]


def warm_up(a, port, stats_port):
    """The first connections set up pools and caches: not per-connection memory."""
    run_json([a.tls_load, "--mode", "hs", "--port", str(port), "--conns", "50", "--quiet"], 60)
    deadline = time.monotonic() + 10
    while stats(stats_port)["connections"]["clients"] and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)


def load(a, name, binary):
    port, stats_port = free_port(), free_port()
    rows = []
    with running_relay(binary, "membench-load-", config(port, stats_port)) as relay:
        if not wait_listening(port):
            return None
        warm_up(a, port, stats_port)
        holders = Holders(a.tls_load, port, LOAD_CONNS)
        try:
            holders.wait_ready()
            wait_clients(stats_port, LOAD_CONNS)
            time.sleep(1)
            idle = proc_status(relay.pid, "VmRSS")
            for n in range(ROUNDS):
                cmd = [a.relay_load, "--port", str(port), "--conns", str(LOAD_CONNS), "--window", "16", "--payload", "256",
                       "--duration", f"{LOAD_SECONDS:g}", "--pattern", "pair", "--src-ips", "127.0.2.1", "--quiet"]
                out = tempfile.TemporaryFile(mode="w+")
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
                peak = 0
                while proc.poll() is None:
                    peak = max(peak, proc_status(relay.pid, "VmRSS"))
                    time.sleep(0.1)
                after = proc_status(relay.pid, "VmRSS")
                out.seek(0)
                result = next((json.loads(line) for line in reversed(out.read().splitlines()) if line.startswith("{")), {})
                rows.append({"peak": max(peak, after), "after": after, "rate": result.get("delivered_per_s", 0),
                             "lost": result.get("lost", 0) + result.get("unacked", 0), "dup": result.get("dup", 0),
                             "complete": result.get("complete", False)})
                log(f"load {name} round {n + 1}: peak {peak / 1024:.1f} MiB, {result.get('delivered_per_s', 0):.0f} msg/s")
            time.sleep(QUIET_SECONDS)
            quiet = proc_status(relay.pid, "VmRSS")
            hwm = proc_status(relay.pid, "VmHWM")
        finally:
            holders.stop()
    return {"idle": idle, "rounds": rows, "quiet": quiet, "hwm": hwm}


def idle_one(a, binary, count):
    port, stats_port = free_port(), free_port()
    with running_relay(binary, "membench-idle-", config(port, stats_port, "routing:\n  to_clients: false\n")) as relay:
        if not wait_listening(port):
            return None
        warm_up(a, port, stats_port)
        before = proc_status(relay.pid, "VmRSS")
        holders = Holders(a.tls_load, port, count)
        try:
            opened = holders.wait_ready()
            clients = wait_clients(stats_port, opened)
            time.sleep(1)
            after = proc_status(relay.pid, "VmRSS")
        finally:
            holders.stop()
    return {"count": count, "clients": clients, "before": before, "after": after,
            "per_conn": (after - before) / clients if clients else 0}


def hello_frame():
    node = str(uuid.uuid4())
    body = json.dumps({"msg_type": "HELLO", "msg_data": {"version": "membench 0", "attributes": {"node_type": "string"}},
                       "flood": False, "msg_id": str(uuid.uuid4()), "ttl": 1, "sender_id": f"burst@{node}", "target_id": None},
                      separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


def burst(a, binary):
    port, stats_port = free_port(), free_port()
    with running_relay(binary, "membench-burst-", config(port, stats_port)) as relay:
        if not wait_listening(port):
            return None
        warm_up(a, port, stats_port)
        conns = []
        try:
            for _ in range(BURST_CONNS):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(hello_frame())
                conns.append(s)
            wait_clients(stats_port, BURST_CONNS)
            time.sleep(1)
            before = proc_status(relay.pid, "VmRSS")
            bytes_before = stats(stats_port)["bytes"]["in"]
            blob = bytes(int(BURST_MIB * 1048576))  # keepalives: 4 zero bytes each
            for s in conns:
                s.sendall(blob)
            deadline = time.monotonic() + 120
            while stats(stats_port)["bytes"]["in"] < bytes_before + len(blob) * len(conns) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)
            after = proc_status(relay.pid, "VmRSS")
            clients = stats(stats_port)["connections"]["clients"]
        finally:
            for s in conns:
                s.close()
    return {"before": before, "after": after, "clients": clients, "per_conn": (after - before) / max(clients, 1)}


def mib(kib):
    return f"{kib / 1024:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", action="append", required=True, help="name=path (or a path), once per relay build")
    parser.add_argument("--tls-load", required=True)
    parser.add_argument("--relay-load", required=True)
    parser.add_argument("parts", nargs="*", default=["load", "burst", "idle"])
    a = parser.parse_args()
    relays = [r.split("=", 1) if "=" in r else (os.path.basename(r), r) for r in a.relay]

    if "load" in a.parts:
        results = [(name, load(a, name, path)) for name, path in relays]
        print(f"\n## RSS under load ({LOAD_CONNS} idle connections held, then {ROUNDS} rounds of relay-load: {LOAD_CONNS} "
              f"conns in pairs, window 16, payload 256, {LOAD_SECONDS:g} s; quiet = {QUIET_SECONDS:g} s after the last round)")
        print(f"{'relay':12} {'idle_MiB':>8} {'round':>5} {'msg/s':>8} {'peak_MiB':>8} {'x_idle':>6} {'after_MiB':>9} "
              f"{'lost':>5} {'dup':>4} {'quiet_MiB':>9} {'x_idle':>6} {'hwm_MiB':>7}")
        for name, r in results:
            if not r:
                print(f"{name:12} n/a: the relay did not listen")
                continue
            for n, row in enumerate(r["rounds"]):
                last = n == len(r["rounds"]) - 1
                quiet = mib(r["quiet"]) if last else ""
                quiet_ratio = f"{r['quiet'] / r['idle']:.2f}" if last else ""
                hwm = mib(r["hwm"]) if last else ""
                print(f"{name if n == 0 else '':12} {mib(r['idle']) if n == 0 else '':>8} {n + 1:>5} {row['rate']:>8.0f} "
                      f"{mib(row['peak']):>8} {row['peak'] / r['idle']:>6.2f} {mib(row['after']):>9} {row['lost']:>5} "
                      f"{row['dup']:>4} {quiet:>9} {quiet_ratio:>6} {hwm:>7}")
        print("goal: peak and quiet <= 2 x idle; lost counts unacked too")

    if "burst" in a.parts:
        results = [(name, burst(a, path)) for name, path in relays]
        print(f"\n## What a connection keeps after one burst ({BURST_CONNS} connections, each {BURST_MIB:g} MiB of keepalives "
              f"at once, then quiet)")
        print(f"{'relay':12} {'clients':>7} {'before_MiB':>10} {'after_MiB':>9} {'KiB/conn':>8}")
        for name, r in results:
            if not r:
                print(f"{name:12} n/a")
                continue
            print(f"{name:12} {r['clients']:>7} {mib(r['before']):>10} {mib(r['after']):>9} {r['per_conn']:>8.1f}")

    if "idle" in a.parts:
        results = []
        for name, path in relays:
            for count in IDLE_COUNTS:
                r = idle_one(a, path, count)
                results.append((name, count, r))
                log(f"idle {name} {count}: " + (f"{r['per_conn']:.2f} KiB/conn" if r else "n/a"))
        print("\n## RSS per idle plaintext connection (HELLO said, routing.to_clients: false; a fresh relay per row)")
        print(f"{'relay':12} {'conns':>6} {'clients':>7} {'before_MiB':>10} {'after_MiB':>9} {'KiB/conn':>8} {'goal':>5}")
        for name, count, r in results:
            if not r:
                print(f"{name:12} {count:>6} n/a")
                continue
            print(f"{name:12} {count:>6} {r['clients']:>7} {mib(r['before']):>10} {mib(r['after']):>9} "
                  f"{r['per_conn']:>8.2f} {4:>5}")


if __name__ == "__main__":
    main()
