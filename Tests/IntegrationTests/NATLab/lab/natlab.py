#!/usr/bin/env python3
"""The NAT lab: an "internet" with a relay on it and private sites behind Linux NAT routers,
built from network namespaces, veth pairs and nftables, on one machine (root only).

    natlab.py check                      exit 0 when a lab can be built here, else 77 and why
    natlab.py up --site a=port-restricted,drop --site b=symmetric,rst [--delay-ms 20] [--owner PID]
                                         builds one lab, prints it as one JSON object (below)
    natlab.py down PREFIX                ends every process in that lab's namespaces, removes them
    natlab.py sweep                      removes labs whose owner process is gone (killed tests)

Topology (every address lives only inside the lab's own namespaces):

    relay ns 198.18.0.2 ── inet ns (router; delays every forwarded packet DELAY ms) ──┬─ 198.18.1.2 rtr1 ── 10.1.0.2 host1
                                                                                     └─ 198.18.2.2 rtr2 ── 10.2.0.2 host2 ...

Router kinds (mapping / filtering of inbound TCP, RFC 4787 terms):
    cone             endpoint-independent mapping and filtering ("full cone"): masquerade, which
                     keeps the source port, plus a DNAT of any inbound SYN to a port a host has used
    port-restricted  endpoint-independent mapping, address-and-port-dependent filtering: plain
                     masquerade, the Linux default (conntrack admits only the exact peer)
    symmetric        endpoint-dependent mapping: masquerade fully-random (a new port per peer)
Router behaviour for an unsolicited inbound SYN that nothing admits:
    rst              no firewall: the router's own stack answers RST (the kernel's default)
    drop             a drop rule for new unsolicited inbound, as home routers do

The JSON printed by `up`:
    {"prefix": "...", "delay_ms": 20, "relay": {"ns": "...", "ip": "198.18.0.2"},
     "inet": {"ns": "..."}, "sites": {"a": {"host_ns", "router_ns", "host_ip", "public_ip", "kind", "behaviour"}}}

Namespaces are named ptpnl-OWNERPID-RANDOM-ROLE: `sweep` (and every `up`) removes labs whose
owner pid is no longer alive, so a killed test leaves nothing behind for long.
"""
import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

NAME_PREFIX = "ptpnl-"
KINDS = ("cone", "port-restricted", "symmetric")
BEHAVIOURS = ("rst", "drop")
RELAY_IP = "198.18.0.2"
HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77  # "cannot run here", for callers that skip


def run(*command, check=True):
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def in_ns(ns, *command, check=True):
    return run("ip", "netns", "exec", ns, *command, check=check)


def nft(ns, ruleset):
    result = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"nft in {ns}: {result.stderr.strip()}\n{ruleset}")


def namespaces():
    out = run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def why_not_here():
    """None when a lab can be built here, else the reason."""
    if os.geteuid() != 0:
        return "the NAT lab needs root (network namespaces, nftables); run the tests as root, as CI does"
    for tool in ("ip", "nft", "iptables", "cc"):
        if not shutil.which(tool):
            return f"'{tool}' is missing: run scripts/install-deps.sh"
    probe = f"{NAME_PREFIX}probe-{os.getpid()}"
    try:
        run("ip", "netns", "add", probe)
        run("ip", "netns", "del", probe)
    except RuntimeError as error:
        return f"cannot create a network namespace here: {error}"
    return None


# --- the delaying reader -------------------------------------------------------------------

def build_dir():
    return os.environ.get("NATLAB_BUILD_DIR") or os.path.join(HERE, "..", "..", "..", "..", ".build", "natlab")


def delay_binary():
    """Builds nfq-delay.c (libnetfilter_queue) once per source change, as Benchmarks/tls-load.c is built."""
    source = os.path.join(HERE, "nfq-delay.c")
    directory = os.path.abspath(build_dir())
    os.makedirs(directory, exist_ok=True)
    binary = os.path.join(directory, "nfq-delay")
    if not os.path.exists(binary) or os.path.getmtime(binary) < os.path.getmtime(source):
        temporary = f"{binary}.{os.getpid()}"
        result = subprocess.run(["cc", "-O2", "-Wall", "-o", temporary, source, "-lnetfilter_queue"], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"building nfq-delay failed (libnetfilter-queue-dev missing? run scripts/install-deps.sh):\n{result.stderr}")
        os.replace(temporary, binary)
    return binary


def start_delay(ns, delay_ms, log_path):
    """Starts nfq-delay in `ns` and waits for its "ready" (the queue is bound) before the rule goes in."""
    log = open(log_path, "ab")
    reader = subprocess.Popen(["ip", "netns", "exec", ns, delay_binary(), "0", str(delay_ms)],
                              stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    line = reader.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"nfq-delay did not start (exit {reader.poll()}); see {log_path}")
    reader.stdout.close()  # it prints nothing after "ready"
    return reader.pid


# --- building and removing a lab -----------------------------------------------------------

def router_ruleset(kind, behaviour):
    """nftables rules of one NAT router: `wan` faces the internet, `lan` the site."""
    masquerade = "masquerade fully-random" if kind == "symmetric" else "masquerade"
    rules = [
        "table ip natlab {",
        "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;",
        f"    oifname \"wan\" {masquerade}",
        "  }",
    ]
    if kind == "cone":
        # Full cone: remember which host used each source port (masquerade keeps it), and send a
        # new inbound connection to that port to that host, whoever it comes from.
        rules += [
            "  map cone { type inet_service : ipv4_addr; flags dynamic,timeout; timeout 10m; }",
            "  chain forward_remember { type filter hook forward priority filter - 1; policy accept;",
            "    iifname \"lan\" meta l4proto tcp update @cone { tcp sport : ip saddr }",
            "  }",
            "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;",
            "    iifname \"wan\" meta l4proto tcp dnat to tcp dport map @cone",
            "  }",
        ]
    if behaviour == "drop":
        # What a home router does: new inbound that no mapping admits is dropped, not answered.
        rules += [
            "  chain input { type filter hook input priority filter; policy accept;",
            "    iifname \"wan\" ct state new,invalid drop",
            "  }",
            "  chain forward { type filter hook forward priority filter; policy accept;",
            "    iifname \"wan\" ct status dnat accept",
            "    iifname \"wan\" ct state new,invalid drop",
            "  }",
        ]
    rules.append("}")
    return "\n".join(rules) + "\n"


def link(ns_a, if_a, ns_b, if_b):
    run("ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)


def configure(ns, interface, address, gateway=None):
    run("ip", "-n", ns, "addr", "add", address, "dev", interface)
    run("ip", "-n", ns, "link", "set", interface, "up")
    if gateway:
        run("ip", "-n", ns, "route", "add", "default", "via", gateway)


def up(sites, delay_ms, owner, log_dir):
    sweep()
    prefix = f"{NAME_PREFIX}{owner}-{secrets.token_hex(3)}"
    made = []

    def add(role):
        ns = f"{prefix}-{role}"
        run("ip", "netns", "add", ns)
        made.append(ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    try:
        inet, relay = add("inet"), add("relay")
        in_ns(inet, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        link(inet, "relay", relay, "eth0")
        configure(inet, "relay", "198.18.0.1/24")
        configure(relay, "eth0", f"{RELAY_IP}/24", "198.18.0.1")
        described = {}
        for number, (name, kind, behaviour) in enumerate(sites, start=1):
            router, host = add(f"rtr{number}"), add(f"host{number}")
            in_ns(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            link(inet, f"site{number}", router, "wan")
            configure(inet, f"site{number}", f"198.18.{number}.1/24")
            configure(router, "wan", f"198.18.{number}.2/24", f"198.18.{number}.1")
            link(router, "lan", host, "eth0")
            configure(router, "lan", f"10.{number}.0.1/24")
            configure(host, "eth0", f"10.{number}.0.2/24", f"10.{number}.0.1")
            nft(router, router_ruleset(kind, behaviour))
            described[name] = {"host_ns": host, "router_ns": router, "host_ip": f"10.{number}.0.2",
                               "public_ip": f"198.18.{number}.2", "kind": kind, "behaviour": behaviour}
        if delay_ms > 0:
            os.makedirs(log_dir, exist_ok=True)
            start_delay(inet, delay_ms, os.path.join(log_dir, f"{prefix}-nfq-delay.log"))
            # iptables' NFQUEUE target: this kernel has no nft_queue expression, and no sch_netem.
            in_ns(inet, "iptables", "-A", "FORWARD", "-j", "NFQUEUE", "--queue-num", "0")
        return {"prefix": prefix, "delay_ms": delay_ms, "relay": {"ns": relay, "ip": RELAY_IP},
                "inet": {"ns": inet}, "sites": described}
    except BaseException:
        down(prefix)
        raise


def stop_processes(ns):
    """SIGTERM to every process in `ns` (all were started in it by a lab user), SIGKILL after 2 s."""
    pids = [int(p) for p in run("ip", "netns", "pids", ns, check=False).split()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if pid_alive(pid) and not is_zombie(pid)]
        time.sleep(0.02)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def down(prefix):
    mine = [ns for ns in namespaces() if ns.startswith(prefix + "-")]
    # Clients and relay first, the delaying reader last, so nothing waits on a held packet.
    mine.sort(key=lambda ns: ns.endswith("-inet"))
    for ns in mine:
        stop_processes(ns)
    for ns in mine:
        run("ip", "netns", "del", ns, check=False)
    return len(mine)


def sweep():
    """Removes labs (and probes) whose owner is gone: what a killed test run left behind."""
    prefixes = set()
    for ns in namespaces():
        if not ns.startswith(NAME_PREFIX):
            continue
        parts = ns[len(NAME_PREFIX):].split("-")
        if parts[0] == "probe":
            owner = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if not pid_alive(owner):
                run("ip", "netns", "del", ns, check=False)
            continue
        if parts[0].isdigit() and not pid_alive(int(parts[0])):
            prefixes.add(f"{NAME_PREFIX}{parts[0]}-{parts[1]}")
    for prefix in prefixes:
        down(prefix)
    return len(prefixes)


def parse_site(text):
    name, _, spec = text.partition("=")
    kind, _, behaviour = spec.partition(",")
    if kind not in KINDS or behaviour not in BEHAVIOURS or not name.isalnum():
        raise argparse.ArgumentTypeError(f"'{text}': want NAME=KIND,BEHAVIOUR with KIND in {KINDS} and BEHAVIOUR in {BEHAVIOURS}")
    return name, kind, behaviour


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check")
    build = commands.add_parser("up")
    build.add_argument("--site", type=parse_site, action="append", required=True)
    build.add_argument("--delay-ms", type=float, default=20)
    build.add_argument("--owner", type=int, default=os.getppid(), help="the process whose lab this is (default: the caller)")
    build.add_argument("--log-dir", default="/tmp", help="where nfq-delay writes its log")
    remove = commands.add_parser("down")
    remove.add_argument("prefix")
    commands.add_parser("sweep")
    args = parser.parse_args()
    if args.command == "check":
        reason = why_not_here()
        if reason:
            print(reason)
            return SKIP
        return 0
    if args.command == "up":
        if len(args.site) > 200:
            parser.error("at most 200 sites")
        print(json.dumps(up(args.site, args.delay_ms, args.owner, args.log_dir)))
        return 0
    if args.command == "down":
        down(args.prefix)
        return 0
    if args.command == "sweep":
        print(f"removed {sweep()} stale lab(s)")
        return 0


if __name__ == "__main__":
    sys.exit(main())
