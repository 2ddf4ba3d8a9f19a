#!/usr/bin/env python3
"""A small reference client for the NAT lab: the CONNECT flow of PROFILE.md section 8 and TCP
simultaneous open, in plain Python sockets. It exists to prove the lab right independently of
`ptpchat punch` (the product), and to probe the relay's brokering with hand-made CONNECTs.

    refpunch.py discover --relay IP:PORT [--local-port P]        prints {"observed": "IP:PORT"}
    refpunch.py punch --relay IP:PORT --probe IP:PORT2 --to GUID --node-id GUID [--deadline 5]
    refpunch.py respond --relay IP:PORT --node-id GUID [--count N] [--no-rtt-hint]
    refpunch.py connect-raw --relay IP:PORT --node-id GUID --to GUID --src TEXT [--dst TEXT] [--step 1|3] [--src-node GUID]
    refpunch.py await-connect --relay IP:PORT --node-id GUID [--reply-dst TEXT]
    refpunch.py tcp-probe --to IP:PORT [--timeout S]               {"outcome": connected|refused|timeout, "ms"}
    refpunch.py tcp-listen --port P                                accepts until killed

Each prints one JSON object per outcome on stdout (`respond` one per punch) and exits 0 when the
exchange finished, direct or not; non-zero only on an error (relay unreachable, bad answer).
The wire contract is issue 11's: step 1 `src` ":PORT"; step 3 `dst` ":PORT"; the responder waits
(src_rtt_ms + dst_rtt_ms) / 2 after step 3 when the relay gives both hints; the initiator dials
on step 4 at once; discovery is a CONNECT to the relay's own id.
"""
import argparse
import errno
import json
import os
import socket
import struct
import sys
import time
import uuid

KEEPALIVE_S = 20  # a waiting responder's keepalive interval, below the relay's idle timeout (90 s)


def frame(obj):
    body = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


def envelope(verb, sender, data, ttl=32):
    return {"msg_type": verb, "msg_id": str(uuid.uuid4()), "ttl": ttl, "flood": False,
            "sender_id": f"ref@{sender}", "target_id": None, "msg_data": data}


def split_address(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def reusable_socket(local_port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("0.0.0.0", local_port))
    return sock


class Link:
    """One framed TCP connection (to the relay, or direct to the peer)."""

    def __init__(self, sock, node_id):
        self.sock, self.node_id, self.buffer = sock, node_id, b""

    @classmethod
    def to_relay(cls, relay, node_id, local_port=0, timeout=5):
        sock = reusable_socket(local_port)
        sock.settimeout(timeout)
        sock.connect(split_address(relay))
        link = cls(sock, node_id)
        link.send(envelope("HELLO", node_id, {"node_id": node_id, "version": "refpunch 1",
                                               "attributes": {"node_type": "client"}}, ttl=1))
        hello = link.receive_until(lambda f: f.get("msg_type") == "HELLO", timeout)
        link.relay_id = hello["sender_id"].rpartition("@")[2]
        return link

    def send(self, obj):
        self.sock.sendall(frame(obj))

    def receive(self, timeout):
        """The next frame (keepalives skipped), or None at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 4:
                length = struct.unpack(">I", self.buffer[:4])[0]
                if length == 0:
                    self.buffer = self.buffer[4:]
                    continue
                if len(self.buffer) >= 4 + length:
                    body, self.buffer = self.buffer[4:4 + length], self.buffer[4 + length:]
                    return json.loads(body)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk

    def receive_until(self, wanted, timeout):
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self.receive(left)
            if got is not None and wanted(got):
                return got
        raise TimeoutError("no such frame in time")

    def discover(self, timeout=5):
        """Address discovery: CONNECT to the relay's own id; the answer's `src` is what it saw."""
        local_port = self.sock.getsockname()[1]
        self.send(envelope("CONNECT", self.node_id, {"src_node_id": self.node_id, "dst_node_id": self.relay_id,
                                                      "src": f":{local_port}", "dst": None}))
        answer = self.receive_until(lambda f: f.get("msg_type") in ("CONNECT", "NACK"), timeout)
        if answer["msg_type"] == "NACK":
            raise RuntimeError(f"discovery refused: {answer['msg_data']}")
        return answer["msg_data"]["src"]


def dial(local_port, peer, deadline):
    """TCP simultaneous open from `local_port` to `peer` until one connects or `deadline`.
    Returns (socket or None, attempts, last error)."""
    attempts, last = 0, "deadline"
    while time.monotonic() < deadline:
        attempts += 1
        sock = reusable_socket(local_port)
        sock.settimeout(max(0.05, min(1.5, deadline - time.monotonic())))
        try:
            sock.connect(split_address(peer))
            sock.settimeout(None)
            return sock, attempts, None
        except OSError as error:
            sock.close()
            last = errno.errorcode.get(error.errno, str(error)) if error.errno else "timeout"
            if error.errno == errno.ECONNREFUSED:
                time.sleep(0.01)  # an RST came back: the peer's SYN is not out yet; try again soon
    return None, attempts, last


def hello_over(sock, node_id, timeout=3):
    """A HELLO each way over the direct connection: proves both ends are the processes we think."""
    link = Link(sock, node_id)
    link.send(envelope("HELLO", node_id, {"node_id": node_id, "version": "refpunch 1",
                                           "attributes": {"node_type": "client"}}, ttl=1))
    return link.receive_until(lambda f: f.get("msg_type") == "HELLO", timeout)["sender_id"].rpartition("@")[2]


def punch(args):
    local_port = args.local_port or free_local_port()
    relay = Link.to_relay(args.relay, args.node_id, local_port)
    observed = relay.discover()
    result = {"result": "relay", "reason": None, "nat": "unknown", "observed": observed, "peer": None,
              "attempts": 0, "time_to_direct_ms": None, "rtt_hint_ms": None}
    if args.probe:
        probe = Link.to_relay(args.probe, str(uuid.uuid4()), local_port)
        second = probe.discover()
        probe.sock.close()
        result["nat"] = "endpoint-independent" if second == observed else "symmetric"
        if second != observed:
            result["reason"] = f"symmetric NAT: {observed} to one relay port, {second} to the other"
            return report(relay, args, result)
    public_port = split_address(observed)[1]
    step1_at = time.monotonic()
    relay.send(envelope("CONNECT", args.node_id, {"src_node_id": args.node_id, "dst_node_id": args.to,
                                                   "src": f":{public_port}", "dst": None}))
    try:
        step4 = relay.receive_until(lambda f: f.get("msg_type") in ("CONNECT", "NACK") and
                                    (f["msg_type"] == "NACK" or f["msg_data"].get("dst")), args.deadline)
    except TimeoutError:
        result["reason"] = "no answer from the peer"
        return report(relay, args, result)
    if step4["msg_type"] == "NACK":
        result["reason"] = f"relay refused: {step4['msg_data'].get('reason')}"
        return report(relay, args, result)
    data = step4["msg_data"]
    if "src_rtt_ms" in data and "dst_rtt_ms" in data:
        result["rtt_hint_ms"] = (data["src_rtt_ms"] + data["dst_rtt_ms"]) / 2
    result["peer"] = data["dst"]
    sock, attempts, error = dial(local_port, data["dst"], step1_at + args.deadline)
    result["attempts"] = attempts
    if sock is None:
        result["reason"] = f"no direct connection: {error}"
        return report(relay, args, result)
    try:
        peer_id = hello_over(sock, args.node_id)
    except (OSError, TimeoutError, ConnectionError) as error:
        result["reason"] = f"direct connection broke: {error}"
        return report(relay, args, result)
    if peer_id != args.to:
        result["reason"] = f"the direct connection reached {peer_id}, not {args.to}"
        return report(relay, args, result)
    result["result"] = "direct"
    result["time_to_direct_ms"] = round((time.monotonic() - step1_at) * 1000, 1)
    sock.close()
    return report(relay, args, result)


def report(relay, args, result):
    """The optional outcome report to the relay (a CONNECT to its own id with msg_data.result)."""
    try:
        relay.send(envelope("CONNECT", args.node_id, {"src_node_id": args.node_id, "dst_node_id": relay.relay_id,
                                                       "src": None, "dst": None,
                                                       "result": "direct" if result["result"] == "direct" else "failed",
                                                       "reason": (result["reason"] or "")[:64]}))
    except OSError:
        pass  # the relay went away: the outcome is printed all the same
    print(json.dumps(result), flush=True)
    relay.sock.close()
    return 0


def respond(args):
    """Serves punches until --count is reached: step 2 in, step 3 out, then dial."""
    local_port = free_local_port()
    relay = Link.to_relay(args.relay, args.node_id, local_port, timeout=args.deadline)
    observed = relay.discover()
    print(json.dumps({"ready": True, "observed": observed}), flush=True)
    public_port = split_address(observed)[1]
    served = 0
    while args.count == 0 or served < args.count:
        step2 = None
        while step2 is None:
            frame_in = relay.receive(KEEPALIVE_S)
            if frame_in is None:
                relay.sock.sendall(b"\0\0\0\0")  # the relay closes connections silent for timeouts.idle
            elif (frame_in.get("msg_type") == "CONNECT" and frame_in["msg_data"].get("dst_node_id") == args.node_id
                  and not frame_in["msg_data"].get("dst")):
                step2 = frame_in
        data = step2["msg_data"]
        relay.send(envelope("CONNECT", args.node_id, {"src_node_id": data["src_node_id"], "dst_node_id": args.node_id,
                                                       "src": data["src"], "dst": f":{public_port}"}))
        sent = time.monotonic()
        hint = None
        if not args.no_rtt_hint and "src_rtt_ms" in data and "dst_rtt_ms" in data:
            hint = (data["src_rtt_ms"] + data["dst_rtt_ms"]) / 2
            time.sleep(max(0, sent + hint / 1000 - time.monotonic()))
        sock, attempts, error = dial(local_port, data["src"], sent + args.deadline)
        outcome = {"result": "relay", "peer": data["src"], "attempts": attempts, "rtt_hint_ms": hint, "reason": error}
        if sock is not None:
            try:
                outcome["peer_id"] = hello_over(sock, args.node_id)
                outcome["result"], outcome["reason"] = "direct", None
            except (OSError, TimeoutError, ConnectionError) as failure:
                outcome["reason"] = f"direct connection broke: {failure}"
            sock.close()
        print(json.dumps(outcome), flush=True)
        served += 1
    return 0


def connect_raw(args):
    """Sends one hand-made CONNECT (any src/dst text) and prints the relay's answer, if any."""
    relay = Link.to_relay(args.relay, args.node_id)
    source_node = args.src_node or args.node_id
    relay.send(envelope("CONNECT", args.node_id, {"src_node_id": source_node, "dst_node_id": args.to,
                                                   "src": args.src, "dst": args.dst}))
    try:
        answer = relay.receive_until(lambda f: f.get("msg_type") in ("CONNECT", "NACK"), args.wait)
    except TimeoutError:
        answer = None
    print(json.dumps({"answer": answer, "relay_id": relay.relay_id,
                      "local": "%s:%d" % relay.sock.getsockname()}), flush=True)
    return 0


def await_connect(args):
    """Prints the first CONNECT that reaches this node; with --reply-dst answers it as step 3
    (dst as given, src as received) and prints the relay's answer to that too."""
    relay = Link.to_relay(args.relay, args.node_id)
    print(json.dumps({"ready": True, "local": "%s:%d" % relay.sock.getsockname()}), flush=True)
    got = relay.receive_until(lambda f: f.get("msg_type") == "CONNECT", args.wait)
    print(json.dumps({"received": got}), flush=True)
    if args.reply_dst is not None:
        data = got["msg_data"]
        relay.send(envelope("CONNECT", args.node_id, {"src_node_id": data["src_node_id"], "dst_node_id": args.node_id,
                                                       "src": data["src"], "dst": args.reply_dst}))
        try:
            answer = relay.receive_until(lambda f: f.get("msg_type") in ("CONNECT", "NACK"), 1.0)
        except TimeoutError:
            answer = None  # the relay forwarded step 3 and had nothing to say to this node
        print(json.dumps({"answer": answer}), flush=True)
    return 0


def discover(args):
    """The address the relay sees; with --also, what a second relay address sees of the same
    local port, the first connection kept open (as a client probing for a symmetric NAT does)."""
    relay = Link.to_relay(args.relay, args.node_id, args.local_port)
    local_port = relay.sock.getsockname()[1]
    found = {"observed": relay.discover(), "local_port": local_port, "relay_id": relay.relay_id}
    if args.also:
        found["observed_also"] = Link.to_relay(args.also, str(uuid.uuid4()), local_port).discover()
    print(json.dumps(found), flush=True)
    return 0


def tcp_probe(args):
    """One TCP connect to --to: "connected", "refused" (an RST came back) or "timeout" (nothing),
    and how long it took: what a router does with an unsolicited SYN, and the lab's delay."""
    started = time.monotonic()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(args.timeout)
    try:
        sock.connect(split_address(args.to))
        outcome = "connected"
    except ConnectionRefusedError:
        outcome = "refused"
    except (socket.timeout, TimeoutError):
        outcome = "timeout"
    print(json.dumps({"outcome": outcome, "ms": round((time.monotonic() - started) * 1000, 1)}), flush=True)
    return 0


def tcp_listen(args):
    """Accepts connections on --port until killed (a target for tcp-probe)."""
    server = reusable_socket(args.port)  # SO_REUSEPORT: a client may use the same port (discover)
    server.listen(64)
    print(json.dumps({"ready": True}), flush=True)
    while True:
        server.accept()[0].close()


def free_local_port():
    probe = socket.socket()
    probe.bind(("0.0.0.0", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    probe = commands.add_parser("tcp-probe")
    probe.add_argument("--to", required=True)
    probe.add_argument("--timeout", type=float, default=1.0)
    listener = commands.add_parser("tcp-listen")
    listener.add_argument("--port", type=int, required=True)
    for name in ("discover", "punch", "respond", "connect-raw", "await-connect"):
        command = commands.add_parser(name)
        command.add_argument("--relay", required=True)
        command.add_argument("--node-id", default=str(uuid.uuid4()))
        if name in ("discover", "punch"):
            command.add_argument("--local-port", type=int, default=0)
        if name == "discover":
            command.add_argument("--also", help="a second relay address to discover from the same local port")
        if name in ("punch", "connect-raw"):
            command.add_argument("--to", required=True)
        if name in ("punch", "respond"):
            command.add_argument("--deadline", type=float, default=5.0)
        if name == "punch":
            command.add_argument("--probe")
        if name == "respond":
            command.add_argument("--count", type=int, default=0, help="punches to serve (0: until killed)")
            command.add_argument("--no-rtt-hint", action="store_true")
        if name == "connect-raw":
            command.add_argument("--src")
            command.add_argument("--dst")
            command.add_argument("--src-node")
            command.add_argument("--wait", type=float, default=1.0)
        if name == "await-connect":
            command.add_argument("--reply-dst")
            command.add_argument("--wait", type=float, default=10.0)
    args = parser.parse_args()
    handler = {"discover": discover, "punch": punch, "respond": respond, "connect-raw": connect_raw,
               "await-connect": await_connect, "tcp-probe": tcp_probe, "tcp-listen": tcp_listen}[args.command]
    try:
        return handler(args)
    except (OSError, TimeoutError, ConnectionError, RuntimeError) as error:
        print(json.dumps({"error": str(error)}), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
