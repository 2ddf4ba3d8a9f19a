#!/usr/bin/env python3
"""The numbers of issue 11: hole-punch attempts through the NAT lab (real kernel NAT in network
namespaces, 20 ms each way on the internet router), per NAT pair type and router behaviour.
Run by Benchmarks/nat-lab.sh, which builds what it needs; this file only measures.

    nat_lab.py --relay BIN [--client ptpchat --ptpchat BIN | --client reference] [--attempts 100]
               [--behaviours rst drop] [--pairs cone-cone ...] [--rtt-hint on off] [--delay-ms 20]

One lab per router behaviour: six sites (two of each kind), the relay on the internet segment
listening on two ports, one responder per target site that stays up (`ptpchat listen
--accept-punch --json`, or refpunch.py respond), and N initiator processes per pair, one after
another (`ptpchat punch ... --json`, or refpunch.py punch), each with a fresh node id and port.

Per pair and behaviour: success (result "direct"), first-try success (direct on attempt 1; of all
attempts, and of the successes as libp2p counts it), time to direct p50/p95 (the client's own
time_to_direct_ms), symmetric detected (the initiator says nat "symmetric") and on relay within
5 s (result "relay" and the process done in under 5 s), errors (exit status not 0) and hung
clients (still running HANG_S after start: killed, counted; must be 0).

Anchors: libp2p DCUtR, measured in the wild: 70 % +- 7 % success, 97.6 % of successes on the
first attempt.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "Tests", "IntegrationTests", "NATLab", "lab")
sys.path.insert(0, LAB)
import natlab  # noqa: E402  (the lab's own builder, shared with the tests)

HANG_S = 30
# (initiator site, responder site): the kinds as natlab names them.
PAIRS = {
    "cone-cone": ("cone1", "cone2"),
    "restricted-restricted": ("restricted1", "restricted2"),
    "cone-restricted": ("cone1", "restricted2"),
    "restricted-cone": ("restricted1", "cone2"),
    "symmetric-restricted": ("symmetric1", "restricted2"),
    "restricted-symmetric": ("restricted1", "symmetric2"),
}
SITES = [("cone1", "cone"), ("cone2", "cone"), ("restricted1", "port-restricted"), ("restricted2", "port-restricted"),
         ("symmetric1", "symmetric"), ("symmetric2", "symmetric")]


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Clients:
    """How to start a responder and an initiator: the product or the reference client."""

    def __init__(self, kind, ptpchat):
        self.kind, self.ptpchat = kind, ptpchat

    def responder(self, relay, probe, node, rtt_hint):
        if self.kind == "reference":
            command = ["python3", os.path.join(LAB, "refpunch.py"), "respond", "--relay", relay, "--node-id", node]
            return command + ([] if rtt_hint else ["--no-rtt-hint"])
        command = [self.ptpchat, "listen", "--relay", relay, "--probe", probe, "--node-id", node, "--accept-punch", "--json"]
        return command + ([] if rtt_hint else ["--no-rtt-hint"])

    def initiator(self, relay, probe, to, node, rtt_hint):
        if self.kind == "reference":
            return ["python3", os.path.join(LAB, "refpunch.py"), "punch", "--relay", relay, "--probe", probe, "--to", to, "--node-id", node]
        command = [self.ptpchat, "punch", "--relay", relay, "--probe", probe, "--to", to, "--node-id", node, "--json"]
        return command + ([] if rtt_hint else ["--no-rtt-hint"]) + ["nat-lab"]


def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def measure_behaviour(args, clients, behaviour, rtt_hint, work):
    lab = natlab.up([(name, kind, behaviour) for name, kind in SITES], args.delay_ms, os.getpid(), work)
    relay_address = f"{lab['relay']['ip']}:9001"
    probe_address = f"{lab['relay']['ip']}:9002"
    processes = []
    rows = {}
    try:
        env = dict(os.environ, LIMITS_CONNECT_PER_MINUTE="1000000", LIMITS_CONNECT_PAIR_PER_MINUTE="0",
                   LIMITS_PER_IP_CONNECTIONS="0", LIMITS_PER_IP_NEW_PER_SECOND="0")
        relay_log = open(os.path.join(work, f"relay-{behaviour}.log"), "w")
        relay = subprocess.Popen(["ip", "netns", "exec", lab["relay"]["ns"], args.relay, "--listen", relay_address,
                                  "--listen", probe_address, "--data-dir", os.path.join(work, f"data-{behaviour}-{rtt_hint}"),
                                  "--stats", "off", "--log-level", "warning"], stdout=relay_log, stderr=subprocess.STDOUT, env=env)
        processes.append(relay)
        time.sleep(1.0)  # the relay binds in well under a second; the responders retry nothing
        responders = {}
        for pair in args.pairs:
            target = PAIRS[pair][1]
            if target in responders:
                continue
            node = str(uuid.uuid4())
            log = open(os.path.join(work, f"responder-{behaviour}-{target}.log"), "w")
            child = subprocess.Popen(["ip", "netns", "exec", lab["sites"][target]["host_ns"]]
                                     + clients.responder(relay_address, probe_address, node, rtt_hint), stdout=log, stderr=subprocess.STDOUT)
            processes.append(child)
            responders[target] = node
        time.sleep(1.0)
        for pair in args.pairs:
            source, target = PAIRS[pair]
            results = []
            for _ in range(args.attempts):
                command = ["ip", "netns", "exec", lab["sites"][source]["host_ns"]] + clients.initiator(
                    relay_address, probe_address, responders[target], str(uuid.uuid4()), rtt_hint)
                started = time.monotonic()
                try:
                    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_S)
                    outcome = last_json(done.stdout) or {}
                    outcome["_status"] = done.returncode
                    if done.returncode != 0:
                        outcome["_error"] = (done.stdout + done.stderr).strip()[-300:]
                except subprocess.TimeoutExpired:
                    outcome = {"_hung": True}
                outcome["_wall_s"] = time.monotonic() - started
                results.append(outcome)
            rows[pair] = results
            print(summary_line(behaviour, rtt_hint, pair, results), flush=True)
    finally:
        for child in processes:
            child.terminate()
        for child in processes:
            try:
                child.wait(timeout=3)
            except subprocess.TimeoutExpired:
                child.kill()
        natlab.down(lab["prefix"])
    return rows


HEADER = (f"{'router':<6} {'hint':<4} {'pair (initiator-responder)':<26} {'n':>4} {'direct':>7} {'1st try':>8} {'1st/succ':>8} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'sym det':>7} {'relay<5s':>8} {'errors':>6} {'hung':>4}")


def summary_line(behaviour, rtt_hint, pair, results):
    n = len(results)
    direct = [r for r in results if r.get("result") == "direct"]
    first = [r for r in direct if r.get("attempts") == 1]
    times = [r["time_to_direct_ms"] for r in direct if isinstance(r.get("time_to_direct_ms"), (int, float))]
    symmetric_pair = "symmetric" in pair
    # Behind the initiator: its own nat; behind the responder: what the responder said in step 3.
    detected = sum(1 for r in results if r.get("nat") == "symmetric" or r.get("peer_nat") == "symmetric")
    on_relay_fast = sum(1 for r in results if r.get("result") == "relay" and r["_wall_s"] < 5)
    errors = sum(1 for r in results if r.get("_status", 0) != 0)
    hung = sum(1 for r in results if r.get("_hung"))

    def pct(count, of):
        return f"{100 * count / of:.0f}%" if of else "-"

    p50, p95 = percentile(times, 0.5), percentile(times, 0.95)
    line = (f"{behaviour:<6} {'on' if rtt_hint else 'off':<4} {pair:<26} {n:>4} {pct(len(direct), n):>7} {pct(len(first), n):>8} "
            f"{pct(len(first), len(direct)):>8} {p50 if p50 is not None else '-':>7} {p95 if p95 is not None else '-':>7} "
            f"{pct(detected, n) if symmetric_pair else '-':>7} "
            f"{pct(on_relay_fast, n) if symmetric_pair else '-':>8} {errors:>6} {hung:>4}")
    reasons = {}
    for r in results:
        if r.get("result") != "direct" and r.get("reason"):
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    if reasons and not symmetric_pair:
        common = max(reasons, key=reasons.get)
        line += f"\n       not direct, most often ({reasons[common]}x): {common[:150]}"
    errors_seen = [r["_error"] for r in results if r.get("_error")]
    if errors_seen:
        line += f"\n       e.g. {errors_seen[0][:200]}"
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", required=True, help="the ptpchat-relay binary")
    parser.add_argument("--client", choices=["ptpchat", "reference"], default="ptpchat")
    parser.add_argument("--ptpchat", help="the ptpchat binary (with --client ptpchat)")
    parser.add_argument("--attempts", type=int, default=100, help="punch attempts per pair and behaviour (N)")
    parser.add_argument("--behaviours", nargs="+", default=["rst", "drop"], choices=["rst", "drop"])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--rtt-hint", nargs="+", default=["on"], choices=["on", "off"],
                        help="on: clients use the relay's RTT hint; off: the responder gets --no-rtt-hint")
    parser.add_argument("--delay-ms", type=float, default=20, help="one-way delay on the internet router")
    args = parser.parse_args()
    if args.client == "ptpchat" and not args.ptpchat:
        parser.error("--client ptpchat needs --ptpchat BIN")
    reason = natlab.why_not_here()
    if reason:
        print(f"nat-lab: {reason}", file=sys.stderr)
        return 2
    natlab.sweep()
    # SIGTERM unwinds like Ctrl-C, so the lab of the run is removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    clients = Clients(args.client, args.ptpchat)
    work = tempfile.mkdtemp(prefix="ptpchat-nat-lab.")
    print(f"NAT lab: {args.attempts} attempts per row, {args.delay_ms:g} ms each way on the internet router, client {args.client}")
    print("Anchors: libp2p DCUtR in the wild 70 % +- 7 % success, 97.6 % of successes on the first attempt.")
    print("Goals: direct >= 99 % for endpoint-independent pairs; 1st try >= 97 % (drop) / >= 80 % (rst, with the hint);")
    print("       p50 <= 2 x RTT + 100 ms (180 ms here); symmetric: on relay within 5 s in 100 %; hung = 0.\n")
    print(HEADER, flush=True)
    for rtt_hint in args.rtt_hint:
        for behaviour in args.behaviours:
            measure_behaviour(args, clients, behaviour, rtt_hint == "on", work)
    print(f"\nlogs: {work}")
    print("direct: result \"direct\"; 1st try: direct on attempt 1, of all attempts; 1st/succ: of the successes (as libp2p counts);")
    print("p50/p95: the client's time_to_direct_ms; sym det: the initiator reported nat \"symmetric\", or peer_nat \"symmetric\"")
    print("(the responder's own probe, said in step 3); relay<5s: result \"relay\" and the process ended within 5 s; hung: killed after "
          f"{HANG_S} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
