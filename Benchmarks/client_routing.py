#!/usr/bin/env python3
"""ROUTING bytes a relay sends to its clients while they connect and join channels, per
`routing.to_clients` mode (PROFILE.md section 9), against a real relay process.

N clients connect (a few hundred at a time), each says HELLO and JOINs one of N/100 channels
(channels of 100 members), then everyone keeps reading until the relay has been quiet for a
while. Counted: ROUTING frames and bytes received by all clients, and how long it took.

The JOINs themselves are floods: every client gets every JOIN, N x N frames (10,000 clients:
100 million frames, about 25 GB), which this Python harness cannot read in reasonable time; it
runs up to a few thousand clients, enough to show how each view grows with N.

    Benchmarks/client_routing.py --relay PATH [--clients 10000] [--modes channels false true]

Loopback only; spreads connections over 127.0.0.1-127.0.0.4 (one address gives ~28k ports).
"""
import argparse
import asyncio
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time
import uuid

from relayproc import free_port, start_relay


def frame(obj):
    body = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


class Totals:
    def __init__(self):
        self.routing_frames = 0
        self.routing_bytes = 0
        self.other_bytes = 0
        self.last_routing = time.monotonic()
        self.failed = 0
        self.errors = []


async def client(index, port, channel, totals, ready, stop):
    source = f"127.0.0.{1 + index % 4}"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError as error:
        totals.failed += 1
        totals.errors.append(str(error))
        ready.release()
        return
    node_id = str(uuid.uuid4())
    writer.write(frame({
        "msg_type": "HELLO", "msg_id": str(uuid.uuid4()), "ttl": 1, "flood": False, "sender_id": f"c{index}@{node_id}",
        "target_id": None, "msg_data": {"node_id": node_id, "version": "bench 1", "attributes": {"node_type": "client"}},
    }))
    bound = False
    try:
        while not stop.is_set():
            head = await reader.readexactly(4)
            (n,) = struct.unpack(">I", head)
            body = await reader.readexactly(n) if n else b""
            if body[:22] == b'{"msg_type":"ROUTING",':
                totals.routing_frames += 1
                totals.routing_bytes += n + 4
                totals.last_routing = time.monotonic()
                if not bound:
                    bound = True
                    message_id = str(uuid.uuid4())
                    writer.write(frame({
                        "msg_type": "JOIN", "msg_id": message_id, "ttl": 32, "flood": True, "sender_id": f"c{index}@{node_id}",
                        "target_id": None,
                        "msg_data": {"msg_id": message_id, "node_id": node_id, "channel": f"ch{channel}", "channel_id": channel},
                    }))
                    ready.release()
            else:
                totals.other_bytes += n + 4
    except (asyncio.IncompleteReadError, ConnectionError) as error:
        if not bound:
            totals.failed += 1
            totals.errors.append(f"closed before bound: {error}")
            ready.release()
    finally:
        writer.close()


async def run(port, clients, quiet):
    totals = Totals()
    stop = asyncio.Event()
    ready = asyncio.Semaphore(0)
    channels = [str(uuid.uuid4()) for _ in range(max(clients // 100, 1))]
    started = time.monotonic()
    tasks = []
    for index in range(clients):
        tasks.append(asyncio.create_task(client(index, port, channels[index % len(channels)], totals, ready, stop)))
        if index % 200 == 199:
            await asyncio.sleep(0.01)
    for _ in range(clients):
        await asyncio.wait_for(ready.acquire(), timeout=300)
    bound = time.monotonic() - started
    while time.monotonic() - totals.last_routing < quiet:
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return totals, bound, elapsed



def measure(relay_bin, mode, clients, quiet):
    port = free_port()
    relay = start_relay(relay_bin, "ptpchat-client-routing.", f"""relay:
  listen: ["127.0.0.1:{port}"]
  data_dir: "{{work}}/data"
stats:
  listen: "off"
log:
  level: warning
routing:
  to_clients: {mode}
limits:
  per_ip_connections: 0
  per_ip_new_per_second: 0
  flood_per_second: 0
""")
    try:
        return asyncio.run(run(port, clients, quiet))
    finally:
        relay.terminate()
        relay.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", required=True, help="the ptpchat-relay binary (a release build)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--modes", nargs="+", default=["channels", "false", "true"])
    parser.add_argument("--quiet", type=float, default=2.0, help="seconds without ROUTING that end a run")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{'to_clients':>10} {'clients':>8} {'ROUTING frames':>15} {'ROUTING MB':>11} {'bytes/client':>13} {'bound_s':>8} {'total_s':>8}")
    for clients in args.clients:
        for mode in args.modes:
            totals, bound, elapsed = measure(args.relay, mode, clients, args.quiet)
            print(f"{mode:>10} {clients:>8} {totals.routing_frames:>15} {totals.routing_bytes / 1e6:>11.1f} "
                  f"{totals.routing_bytes / clients:>13.0f} {bound:>8.1f} {elapsed - args.quiet:>8.1f}", flush=True)
            if totals.failed:
                print(f"  {totals.failed} clients failed, e.g. {totals.errors[:3]}", flush=True)
    print("\nN clients join N/100 channels of 100; ROUTING MB = bytes of every ROUTING")
    print("frame all clients received (the first, binding ROUTING included); total_s = until the last ROUTING.")


if __name__ == "__main__":
    sys.exit(main())
