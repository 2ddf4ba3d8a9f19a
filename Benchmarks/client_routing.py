#!/usr/bin/env python3
"""ROUTING bytes a relay sends to its clients while they connect and join channels, per
`routing.to_clients` mode (PROFILE.md section 9), against a real relay process.

N clients connect (a few hundred at a time), each says HELLO and JOINs one of N/100 channels
(channels of 100 members), then everyone keeps reading until the relay has been quiet for a
while. Counted: ROUTING frames and bytes received by all clients, and how long it took.

The JOINs themselves are floods: every client gets every JOIN, N x N frames (10,000 clients:
100 million frames, about 25 GB). The clients therefore only drain their sockets, and the ROUTING
figures come from the relay's own counters (/stats routing_to_clients).

    Benchmarks/client_routing.py --relay PATH [--clients 10000] [--modes channels false true]

Loopback only; spreads connections over 127.0.0.1-127.0.0.4 (one address gives ~28k ports).
"""
import argparse
import asyncio
import json
import resource
import struct
import sys
import time
import uuid

from relayproc import free_port, running_relay, stats


def frame(obj):
    body = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


class Totals:
    def __init__(self):
        self.failed = 0
        self.errors = []
        self.connected = 0


async def client(index, port, channel, totals, stop):
    """HELLO, then JOIN at once (the relay binds the HELLO first), then drain everything."""
    source = f"127.0.0.{1 + index % 4}"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError as error:
        totals.failed += 1
        totals.errors.append(str(error))
        return
    node_id = str(uuid.uuid4())
    message_id = str(uuid.uuid4())
    writer.write(frame({
        "msg_type": "HELLO", "msg_id": str(uuid.uuid4()), "ttl": 1, "flood": False, "sender_id": f"c{index}@{node_id}",
        "target_id": None, "msg_data": {"node_id": node_id, "version": "bench 1", "attributes": {"node_type": "client"}},
    }) + frame({
        "msg_type": "JOIN", "msg_id": message_id, "ttl": 32, "flood": True, "sender_id": f"c{index}@{node_id}",
        "target_id": None, "msg_data": {"msg_id": message_id, "node_id": node_id, "channel": f"ch{channel}", "channel_id": channel},
    }))
    totals.connected += 1
    try:
        while not stop.is_set():
            if not await reader.read(1 << 20):
                break
    except ConnectionError:
        pass
    finally:
        writer.close()



async def run(port, stats_port, clients, quiet):
    """Counts from the relay's own counters (/stats routing_to_clients): the clients only drain,
    so the JOIN floods every client gets (N x N frames) cost reading, not parsing."""
    totals = Totals()
    stop = asyncio.Event()
    channels = [str(uuid.uuid4()) for _ in range(max(clients // 100, 1))]
    started = time.monotonic()
    tasks = []
    for index in range(clients):
        tasks.append(asyncio.create_task(client(index, port, channels[index % len(channels)], totals, stop)))
        if index % 200 == 199:
            await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    last, stable_since = None, time.monotonic()
    while True:
        await asyncio.sleep(0.5)
        s = await loop.run_in_executor(None, stats, stats_port)
        joins = s.get("relayed", {}).get("JOIN", {}).get("messages", 0)
        now = (s["routing_to_clients"]["bytes"], joins, s["connections"]["clients"])
        if now != last:
            last, stable_since = now, time.monotonic()
        elif joins >= clients - totals.failed and time.monotonic() - stable_since >= quiet:
            break
    elapsed = time.monotonic() - started - quiet
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return totals, s, elapsed


def measure(relay_bin, mode, clients, quiet):
    port, stats_port = free_port(), free_port()
    with running_relay(relay_bin, "ptpchat-client-routing.", f"""relay:
  listen: ["127.0.0.1:{port}"]
  data_dir: "{{work}}/data"
stats:
  listen: "127.0.0.1:{stats_port}"
log:
  level: warning
routing:
  to_clients: {mode}
limits:
  per_ip_connections: 0
  per_ip_new_per_second: 0
  flood_per_second: 0
"""):
        return asyncio.run(run(port, stats_port, clients, quiet))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", required=True, help="the ptpchat-relay binary (a release build)")
    parser.add_argument("--clients", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--modes", nargs="+", default=["channels", "false", "true"])
    parser.add_argument("--quiet", type=float, default=2.0, help="seconds without ROUTING that end a run")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{'to_clients':>10} {'clients':>8} {'ROUTING frames':>15} {'ROUTING MB':>11} {'bytes/client':>13} {'JOINs':>7} {'total_s':>8}")
    for clients in args.clients:
        for mode in args.modes:
            totals, s, elapsed = measure(args.relay, mode, clients, args.quiet)
            routing = s["routing_to_clients"]
            joins = s.get("relayed", {}).get("JOIN", {}).get("messages", 0)
            print(f"{mode:>10} {clients:>8} {routing['frames']:>15} {routing['bytes'] / 1e6:>11.1f} "
                  f"{routing['bytes'] / clients:>13.0f} {joins:>7} {elapsed:>8.1f}", flush=True)
            if totals.failed:
                print(f"  {totals.failed} clients failed, e.g. {totals.errors[:3]}", flush=True)
    print("\nN clients join N/100 channels of 100; ROUTING = every ROUTING frame the relay sent to clients")
    print("(the first, binding ROUTING included), from its /stats; total_s = until it stopped growing.")


if __name__ == "__main__":
    sys.exit(main())
