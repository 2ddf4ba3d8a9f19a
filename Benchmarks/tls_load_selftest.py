#!/usr/bin/env python3
"""Checks Benchmarks/tls-load.c itself, so that security.sh's numbers can be trusted: it builds
tls-load and runs it against the C baseline relay of ../shared/bench (plaintext) and against the
same relay behind a TLS terminator (Python's ssl module, in this process). It must see a clean run
as complete, and must notice the loss and duplicates the baseline injects (--test-drop,
--test-dup). Loopback only; everything it starts it stops. Prints `N passed, M failed`.

  Benchmarks/tls_load_selftest.py [--bench ../shared/bench]     # ~20 s
"""
import argparse
import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from relayproc import free_port, wait_listening  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
results = {"passed": 0, "failed": 0}


def check(name, condition, detail=""):
    results["passed" if condition else "failed"] += 1
    print(f"{'ok  ' if condition else 'FAIL'} - {name}" + ("" if condition else f": {detail}"), flush=True)


def run(tool, *args, timeout=60):
    out = subprocess.run([tool, *map(str, args), "--quiet"], capture_output=True, text=True, timeout=timeout)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return (json.loads(lines[-1]) if lines else {}), out.returncode


def start_tls_terminator(cert, key, target_port):
    """A TLS listener that pipes every connection to target_port; returns its port."""
    port = free_port()
    ready = threading.Event()

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    async def serve():
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    ready.wait(10)
    return port


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default=os.path.join(HERE, "..", "..", "shared", "bench"))
    parser.add_argument("--tls-load", help="a built tls-load (default: build it here)")
    args = parser.parse_args()
    # Built in a cache folder, never in the shared one (Benchmarks/shared-bench-tools.sh).
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ptpchat-bench")
    os.makedirs(cache, exist_ok=True)
    for name in os.listdir(args.bench):
        if name == "Makefile" or name.endswith((".c", ".h")):
            shutil.copy2(os.path.join(args.bench, name), cache)
    subprocess.run(["make", "-s", "-C", cache], check=True, stdout=subprocess.DEVNULL)
    baseline_bin = os.path.join(cache, "baseline-relay")
    work = tempfile.mkdtemp(prefix="tls-load-selftest-")
    tool = args.tls_load or os.path.join(work, "tls-load")
    if not args.tls_load:
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", tool, os.path.join(HERE, "tls-load.c"),
                        "-lssl", "-lcrypto"], check=True)
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    servers = []

    def baseline(*extra):
        port = free_port()
        servers.append(subprocess.Popen([baseline_bin, "--port", str(port), "--threads", "2", *extra],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if not wait_listening(port):
            raise SystemExit("baseline-relay did not listen")
        return port

    thr = ["--conns", 20, "--window", 16, "--payload", 256, "--duration", 1, "--warmup", 0.2, "--drain", 2]
    try:
        clean = baseline()
        r, _ = run(tool, "--port", clean, *thr)
        check("plaintext thr against the baseline is complete", r.get("complete") is True and r.get("delivered", 0) > 0, r)
        check("every message ACKed, nothing lost or doubled",
              r.get("lost") == 0 and r.get("unacked") == 0 and r.get("dup") == 0 and r.get("errors") == 0, r)
        check("the frame is as large as relay-load's (605 bytes at payload 256)", r.get("frame_bytes") == 605, r)

        dropping = baseline("--test-drop", "50")
        r, _ = run(tool, "--port", dropping, *thr)
        check("a relay that drops every 50th MESSAGE: loss seen", r.get("lost", 0) > 0 and r.get("complete") is False, r)

        doubling = baseline("--test-dup", "50")
        r, _ = run(tool, "--port", doubling, *thr)
        check("a relay that doubles every 50th MESSAGE: duplicates seen", r.get("dup", 0) > 0 and r.get("complete") is False, r)

        tls_port = start_tls_terminator(cert, key, clean)
        r, _ = run(tool, "--port", tls_port, "--tls", *thr)
        check("TLS thr through a TLS terminator is complete", r.get("complete") is True and r.get("tls") is True, r)
        r, _ = run(tool, "--port", clean, "--tls", "--mode", "hs", "--conns", 5, "--hs-timeout", 3)
        check("TLS against a plaintext listener fails its handshakes", r.get("hs_ok") == 0 and r.get("hs_failed") == 5, r)

        r, _ = run(tool, "--port", tls_port, "--tls", "--mode", "hs", "--conns", 200, "--src-ips", "127.0.0.2,127.0.0.3")
        check("TLS hs: 200 handshakes and HELLO round trips", r.get("hs_ok") == 200 and r.get("hs_per_s", 0) > 0, r)

        holder = subprocess.Popen([tool, "--mode", "hold", "--port", str(clean), "--conns", "300", "--hold", "30",
                                   "--quiet"], stdout=subprocess.PIPE, text=True)
        line = holder.stdout.readline()
        held = json.loads(line) if line.startswith("{") else {}
        check("hold: 300 idle connections ready", held.get("ready") == 300, held)
        holder.terminate()
        check("hold: stops on SIGTERM", holder.wait(timeout=10) == 0)

        r, _ = run(tool, "--mode", "flood", "--port", clean, "--duration", 1, "--max-open", 100,
                   "--src-ips", "127.0.0.4,127.0.0.5")
        check("flood: connections opened, junk frames sent, bounded open count",
              r.get("connected", 0) > 0 and r.get("junk_frames", 0) > 0 and 0 < r.get("peak_open", 0) <= 100, r)

        r, code = run(tool, "--port", 9, "--host", "10.0.0.1")
        check("a target outside 127.0.0.0/8 is refused", code == 2 and not r, code)
    finally:
        for s in servers:
            s.terminate()
            s.wait(timeout=10)
    print(f"{results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
