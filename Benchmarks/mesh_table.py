#!/usr/bin/env python3
"""Route table figures for the mesh (PROFILE.md section 9), against a real relay process.

Two peers written here from the profile (the HMAC proof, ROUTING frames of at most 8 KiB):
  1. peer A proves itself and hands the relay a table of N nodes (its clients, ttl 1);
  2. the relay's resident memory before and after gives the memory per route;
  3. peer B proves itself; the time from its proof until it has read all N routes (and the relay
     itself) in the relay's full table is "a table reaching a new peer".

    Benchmarks/mesh_table.py --relay PATH [--nodes 10000 100000]

Prints one table row per N. Loopback only; the relay runs with a temporary data directory.
"""
import argparse
import hashlib
import hmac
import json
import secrets
import socket
import struct
import sys
import time
import uuid

from relayproc import free_port, running_relay, stats

KEY = "benchmark-mesh-key-0123456789abcdef"


def frame(obj):
    body = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def send(self, obj):
        self.sock.sendall(frame(obj))

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self, timeout=10):
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                    if n == 0:
                        continue
                    return json.loads(body)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("relay closed the connection")
            self.buf += chunk


def proof(nonce, prover):
    message = f"ptpchat-mesh-v1:{nonce}:{prover}".encode()
    return hmac.new(KEY.encode(), message, hashlib.sha256).hexdigest()


def hello(node_id, name, nonce=None, proof_hex=None):
    attributes = {"node_type": "server"}
    if nonce:
        attributes["mesh_nonce"] = nonce
    if proof_hex:
        attributes["mesh_proof"] = proof_hex
    return {
        "msg_type": "HELLO", "msg_id": str(uuid.uuid4()), "ttl": 1, "flood": False,
        "sender_id": f"{name}@{node_id}", "target_id": None,
        "msg_data": {"node_id": node_id, "version": "mesh-bench 1", "attributes": attributes},
    }


def peer(port, name):
    """Dials the relay and proves itself as a peer relay (it dials: it speaks second)."""
    node_id = str(uuid.uuid4())
    conn = Conn(port)
    first = conn.recv()
    nonce_a = first["msg_data"]["attributes"]["mesh_nonce"]
    relay_id = first["msg_data"]["node_id"].lower()
    nonce_b = secrets.token_hex(16)
    conn.send(hello(node_id, name, nonce_b, proof(nonce_a, node_id)))
    second = conn.recv()
    assert hmac.compare_digest(second["msg_data"]["attributes"]["mesh_proof"], proof(nonce_b, relay_id)), "bad relay proof"
    return conn, node_id


def routing_frames(relay_id, name, entries):
    """ROUTING frames of at most 8 KiB (length prefix included)."""
    out = []
    batch = []
    def flush():
        if batch:
            out.append(frame({
                "msg_type": "ROUTING", "msg_id": str(uuid.uuid4()), "ttl": 1, "flood": False,
                "sender_id": f"{name}@{relay_id}", "target_id": None,
                "msg_data": {"node_id": relay_id, "nodes": list(batch)},
            }))
            batch.clear()
    size = 300
    for entry in entries:
        cost = len(json.dumps(entry, separators=(",", ":"))) + 1
        if size + cost > 8192:
            flush()
            size = 300
        batch.append(entry)
        size += cost
    flush()
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0




def measure(relay_bin, nodes):
    port, stats_port = free_port(), free_port()
    with running_relay(relay_bin, "ptpchat-mesh-table.", f"""relay:
  listen: ["127.0.0.1:{port}"]
  data_dir: "{{work}}/data"
stats:
  listen: "127.0.0.1:{stats_port}"
log:
  level: warning
mesh:
  key: "{KEY}"
routing:
  to_clients: false
""") as relay:
        a, a_id = peer(port, "peerA")
        # Let the relay settle (its first table to A), then take the baseline memory.
        time.sleep(0.5)
        before = rss_kib(relay.pid)
        entries = [{"node_id": f"n{i}@{uuid.uuid4()}", "ttl": 1, "seq": 2} for i in range(nodes)]
        entries.append({"node_id": f"peerA@{a_id}", "ttl": 1, "seq": 2})
        started = time.monotonic()
        for chunk in routing_frames(a_id, "peerA", entries):
            a.send_raw(chunk)
        deadline = time.monotonic() + 120
        while stats(stats_port)["mesh"]["routes"] < nodes + 1:
            if time.monotonic() > deadline:
                raise SystemExit("the relay did not take the table in time")
            time.sleep(0.02)
        learned = time.monotonic() - started
        time.sleep(0.5)
        after = rss_kib(relay.pid)

        t0 = time.monotonic()
        b, _ = peer(port, "peerB")
        proven = time.monotonic()
        wanted = {e["node_id"].split("@")[1] for e in entries}
        seen = set()
        frames = 0
        while not wanted <= seen:
            message = b.recv(timeout=60)
            if message.get("msg_type") != "ROUTING":
                continue
            frames += 1
            for entry in message["msg_data"]["nodes"]:
                if entry.get("ttl", 32) < 31:
                    seen.add(entry["node_id"].split("@")[1].lower())
        reached = time.monotonic() - proven
        return {
            "nodes": nodes, "learn_s": learned, "to_new_peer_s": reached, "proof_s": proven - t0,
            "frames": frames, "bytes_per_route": (after - before) * 1024 / nodes,
            "rss_before_mib": before / 1024, "rss_after_mib": after / 1024,
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", required=True, help="the ptpchat-relay binary (a release build)")
    parser.add_argument("--nodes", type=int, nargs="+", default=[10000, 100000])
    args = parser.parse_args()
    print(f"{'nodes':>7} {'learn_s':>8} {'to_new_peer_s':>14} {'frames':>7} {'bytes/route':>12} {'rss_MiB':>14}")
    for n in args.nodes:
        r = measure(args.relay, n)
        print(f"{r['nodes']:>7} {r['learn_s']:>8.3f} {r['to_new_peer_s']:>14.3f} {r['frames']:>7} "
              f"{r['bytes_per_route']:>12.0f} {r['rss_before_mib']:>6.1f}->{r['rss_after_mib']:<6.1f}")
    print("\nlearn_s = from the first ROUTING frame of peer A until /stats counts every route;")
    print("to_new_peer_s = from peer B's proof until it has read every route in the relay's table;")
    print("bytes/route = growth of the relay's resident memory over the routes learned.")


if __name__ == "__main__":
    sys.exit(main())
