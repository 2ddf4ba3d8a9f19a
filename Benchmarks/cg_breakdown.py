#!/usr/bin/env python3
"""Where a server's instructions go, per unit of work, from two callgrind runs (N1 and N2 units).

    cg_breakdown.py --n1 10000 --n2 50000 --unit msg baseline=A1.cg,A2.cg floor=B1.cg,B2.cg ...

Each function's own (exclusive) instructions, (Ir(N2) - Ir(N1)) / (N2 - N1), summed by category:
  own code        the program's own modules (the relay's RelayCore, PTPProtocol, ...; the floor's
                  nio_floor_relay; all of baseline-relay's code)
  NIO             NIOCore, NIOPosix, NIOConcurrencyHelpers, _NIODataStructures, DequeModule, CNIO*
  Swift stdlib    generic standard library code (Dictionary, Hasher, collections, slices), also when
                  specialised into the program or into NIO
  Swift runtime   libswiftCore's runtime: retain/release, exclusivity checks (swift_beginAccess),
                  allocation entry points, metadata, and the TLS look-ups they make (__tls_get_addr)
  libc: memory    memcpy, memchr, memcmp, memmove, memset
  libc: malloc    malloc, free and their internals
  libc: other     syscall wrappers (read, writev, epoll_wait, ...), pthread, everything else in libc
  other           other libraries (swift-log, metrics, dispatch, ...) and unnamed code
Used by Benchmarks/instructions.sh (BREAKDOWN=1) and instructions-hs.sh.
"""
import argparse
import re
import subprocess
import sys

NIO_MODULES = {"NIOCore", "NIOPosix", "NIOConcurrencyHelpers", "_NIODataStructures", "DequeModule",
               "NIOEmbedded", "NIOTLS", "NIOHTTP1", "NIOExtras", "InternalCollectionsUtilities", "Atomics",
               "_AtomicsShims", "NIOSSL"}
OWN_MODULES = {"nio_floor_relay", "RelayCore", "PTPProtocol", "RelayTLS", "RelayOps", "RelayStore",
               "RelayConfig", "ptpchat_relay", "PTPPunch", "PTPBench"}
CATEGORIES = ["own code", "NIO", "Swift stdlib", "Swift runtime", "libc: memory", "libc: malloc",
              "libc: other", "other"]

LINE = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(.*?):(.*)\s+\[(.*)\]\s*$")


def functions(path):
    """{(object, function): exclusive Ir} of one callgrind file."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path], capture_output=True, text=True,
                         check=True).stdout
    costs = {}
    started = False
    for line in out.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started:
            continue
        m = LINE.match(line)
        if m:
            key = (m.group(4), m.group(3))
            costs[key] = costs.get(key, 0) + int(m.group(1).replace(",", ""))
    return costs


def swift_module(sym):
    """The module a mangled Swift symbol belongs to ('Swift' for the standard library)."""
    if not sym.startswith("$s"):
        return None
    rest = sym[2:]
    if rest.startswith("s") or rest.startswith("S"):
        return "Swift"
    m = re.match(r"(\d+)", rest)
    if not m:
        return None
    n = int(m.group(1))
    return rest[len(m.group(1)):len(m.group(1)) + n]


def category(obj, sym, target):
    o = obj.rsplit("/", 1)[-1]
    if o.startswith("libc.so"):
        if re.search(r"mem(cpy|chr|cmp|move|set)|__memcpy|__memchr|__memcmp|__memmove|__memset|strlen", sym):
            return "libc: memory"
        if re.search(r"malloc|free|_int_|tcache|cfree|realloc|calloc|consolidate", sym):
            return "libc: malloc"
        return "libc: other"
    if o.startswith("ld-linux"):
        return "Swift runtime" if "tls_get_addr" in sym else "other"
    if o.startswith("libswiftCore"):
        return "Swift stdlib" if sym.startswith("$s") else "Swift runtime"
    if o.startswith("libswift") or o.startswith("libdispatch") or o.startswith("libFoundation"):
        return "other"
    if target == "baseline":
        return "own code"
    mod = swift_module(sym)
    if mod == "Swift":
        return "Swift stdlib"
    if mod in OWN_MODULES:
        return "own code"
    if mod in NIO_MODULES or sym.startswith("CNIO") or sym.startswith("c_nio"):
        return "NIO"
    if sym.startswith("swift_") or sym.startswith("swift::"):
        return "Swift runtime"
    return "other"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n1", type=int, required=True)
    ap.add_argument("--n2", type=int, required=True)
    ap.add_argument("--unit", default="msg")
    ap.add_argument("--top", type=int, default=0, help="also the top N functions of each target")
    ap.add_argument("targets", nargs="+", help="name=RUN1.cg,RUN2.cg")
    a = ap.parse_args()
    per = {}
    tops = {}
    for spec in a.targets:
        name, files = spec.split("=", 1)
        f1, f2 = files.split(",")
        c1, c2 = functions(f1), functions(f2)
        sums = {c: 0.0 for c in CATEGORIES}
        fn = {}
        for key in set(c1) | set(c2):
            d = (c2.get(key, 0) - c1.get(key, 0)) / (a.n2 - a.n1)
            sums[category(key[0], key[1], name)] += d
            fn[key] = d
        per[name] = sums
        tops[name] = sorted(fn.items(), key=lambda kv: -kv[1])[:a.top]
    names = list(per)
    print(f"{'Ir/' + a.unit + ' by category':22}" + "".join(f"{n:>11}" for n in names))
    for c in CATEGORIES:
        print(f"{c:22}" + "".join(f"{per[n][c]:11.0f}" for n in names))
    print(f"{'total':22}" + "".join(f"{sum(per[n].values()):11.0f}" for n in names))
    for n in names:
        if tops[n]:
            print(f"\n{n}: top functions, own Ir/{a.unit}")
            for (obj, sym), d in tops[n]:
                print(f"{d:9.0f}  {category(obj, sym, n):14} {demangle(sym)[:110]}")


def demangle(sym):
    try:
        return subprocess.run(["swift-demangle", "--simplified", "--compact", sym], capture_output=True,
                              text=True, check=True).stdout.strip() or sym
    except (OSError, subprocess.CalledProcessError):
        return sym


if __name__ == "__main__":
    sys.exit(main())
