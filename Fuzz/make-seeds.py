#!/usr/bin/env python3
"""Seed corpus for the fuzz targets, written at run time (by Fuzz/run.sh) to DIR/<target>/, DIR the
first argument (default Fuzz/.build-fuzz/seeds). Nothing of it is committed: it is rebuilt from the
sources below on every run, so it follows the tests and the protocol documents.

Sources: the JSON blocks of CLIENT-FRAMES.md and SPEC.md (PTP_PROTOCOL_DIR, default
../../shared/protocol from the repository root: skipped with a note when absent), the JSON raw string
literals of Tests/ (interpolations replaced by an id), and a table of one valid frame per verb of
SPEC.md with the shapes PROFILE.md adds. Each target gets the frames in the layout it reads:
fuzz-json-tape the bare JSON, fuzz-message-reader a handshake byte (0 and 1) then the JSON,
fuzz-mesh-routing a cap byte then the JSON (ROUTING frames only, plus every frame once),
fuzz-frame-decoder a cap byte, a cut count with cuts (and a cap change), then length-prefixed frames
with keepalives.
"""
import hashlib, json, os, re, struct, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOCOL = os.environ.get("PTP_PROTOCOL_DIR", os.path.join(ROOT, "..", "shared", "protocol"))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "Fuzz", ".build-fuzz", "seeds")

A = "0b370041-cd1e-40ac-ac59-0136bba850fe"
B = "5f715c17-4a41-482a-ab1f-45fa2cdd702b"
RELAY = "9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4"
MID = "c6a856bb-9057-4318-bca9-d374ecb6ad02"
CH = "82ae2035-55b8-4223-af24-c538731d6119"


def head(verb, data, ttl=32, flood=False, sender="alice@" + A, mid=MID):
    return {"msg_type": verb, "msg_id": mid, "ttl": ttl, "flood": flood, "sender_id": sender, "target_id": None, "msg_data": data}


# One valid frame per verb (SPEC.md shapes, PROFILE.md additions), a few variants where a verb has
# optional members.
VERB_TABLE = [
    head("HELLO", {"node_id": A, "version": "fuzz 1", "attributes": {"node_type": "client"}}, ttl=1),
    head("HELLO", {"node_id": RELAY, "version": "ptpchat-relay", "attributes": {"node_type": "server", "mesh_nonce": "bm9uY2U=", "mesh_proof": "cHJvb2Y="}}, ttl=1, sender="relay@" + RELAY),
    head("ACK", {"node_id": A, "msg_id": MID}, ttl=1),
    head("NACK", {"node_id": A, "msg_id": MID, "reason": "unknown_recipient", "stored": True}, ttl=1),
    head("JOIN", {"node_id": A, "msg_id": MID, "channel": "general", "channel_id": CH}, flood=True),
    head("LEAVE", {"node_id": A, "msg_id": MID, "channel": "general", "channel_id": CH}, flood=True),
    head("CHANNEL", {"node_id": A, "msg_id": MID, "channel": "general", "channel_id": CH, "closed": False, "members": [{"node_id": A}, {"node_id": "bob@" + B}]}, flood=True),
    head("GETCERTIFICATE", {"node_id": A, "msg_id": MID, "recipient_id": B}),
    head("CERTIFICATE", {"node_id": A, "msg_id": MID, "recipient_id": B, "certificate": "TUlJQg=="}),
    head("GETKEY", {"node_id": A, "msg_id": MID, "channel": "secret", "channel_id": CH, "recipient_id": B}),
    head("KEY", {"node_id": A, "msg_id": MID, "recipient_id": B, "channel": "secret", "channel_id": CH, "cipher": "aes", "key": "a2V5"}),
    head("MESSAGE", {"node_id": A, "msg_id": MID, "recipient": [{"node_id": B}, {"node_id": A}], "timestamp": "2016-05-04T13:23:29.123456+01:00", "channel": "general", "channel_id": CH, "message": "aGk=", "attachment": [{"attachment": "YQ==", "attachment_type": "text/plain"}]}),
    head("ROUTING", {"node_id": RELAY, "nodes": [{"node_id": "alice@" + A, "ttl": 1, "seq": 7}, {"node_id": B, "ttl": "2", "legacy": True}, {"node_id": "x", "ttl": 40}]}, ttl=1, sender="relay@" + RELAY),
    head("ROUTING", {"nodes": []}, ttl=1, sender=None),
    head("CONNECT", {"src_node_id": A, "dst_node_id": B, "src": ":34567", "dst": None}, sender=None),
    # Escapes, non-ASCII, numbers and white space the parser has paths for.
    json.loads('{"msg_type":"MESSAGE","msg_id":"%s","ttl":3,"msg_data":{"node_id":"%s","msg_id":"%s","recipient":[{"node_id":"%s"}],"timestamp":"t","channel":"gr\\u00fc\\ud83d\\ude00n \\" \\\\ \\/ \\b\\f\\n\\r\\t","channel_id":"%s","message":"\\u00e9t\\u00e9 ünïcödé 😀"}}' % (MID, A, MID, B, CH)),
]

RAW_EXTRA = [
    b'{"a":1,"a":2}', b'[1,-0,0.5,-1.5e10,1E+2,123456789012345678,1234567890123456789]', b'"\\u0000"',
    b' { "msg_type" : "ACK" , "msg_data" : { "msg_id" : "%s" } } ' % MID.encode(),
    # ACKs whose ids are all zeros (no id at all) and that repeat a key (RepeatedAck leaves both to the reader).
    b'{"msg_data":{"msg_id":"00000000-0000-0000-0000-000000000000"},"msg_type":"ACK","msg_id":"00000000-0000-0000-0000-000000000000"}',
    b'{"msg_type":"ACK","msg_id":"%s","msg_data":{"msg_id":"%s","msg_id":"%s"}}' % (B.encode(), MID.encode(), A.encode()),
    b'[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
    b'{"s":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"}', b'true', b'false', b'null', b'{}', b'[]',
]


def protocol_frames():
    frames = []
    for name in ("CLIENT-FRAMES.md", "SPEC.md"):
        path = os.path.join(PROTOCOL, name)
        if not os.path.exists(path):
            print(f"make-seeds: {path} not found, its frames are left out", file=sys.stderr)
            continue
        text = open(path, encoding="utf-8").read()
        for block in re.findall(r"```json\n(.*?)```", text, re.S):
            frames.append(block.strip().encode())
    return frames


def test_literals():
    frames = []
    for directory, _, files in os.walk(os.path.join(ROOT, "Tests")):
        for name in files:
            if not name.endswith(".swift"):
                continue
            text = open(os.path.join(directory, name), encoding="utf-8").read()
            for literal in re.findall(r'#"(\{.*?\}|\[.*?\])"#', text):
                literal = re.sub(r'\\#\([^)]*\)', A, literal)
                frames.append(literal.encode())
    return frames


def compact(frame):
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode()


def main():
    table = [compact(f) for f in VERB_TABLE]
    documents = protocol_frames() + test_literals()
    every = list(dict.fromkeys(table + documents + RAW_EXTRA))
    frames = [f for f in every if f.lstrip().startswith(b"{")]

    seeds = {"fuzz-json-tape": every, "fuzz-message-reader": [], "fuzz-mesh-routing": [], "fuzz-frame-decoder": []}
    for frame in frames:
        seeds["fuzz-message-reader"] += [b"\x00" + frame, b"\x01" + frame]
        if b"ROUTING" in frame:
            seeds["fuzz-mesh-routing"] += [b"\x00" + frame, b"\xff" + frame]
        else:
            seeds["fuzz-mesh-routing"].append(b"\x10" + frame)
    prefixed = [struct.pack(">I", len(f)) + f for f in frames]
    decoder = seeds["fuzz-frame-decoder"]
    for index, frame in enumerate(prefixed):
        decoder.append(b"\x00\x00" + frame)                                   # whole, no cap
        decoder.append(b"\x40\x03\x01\x02\x05" + frame[:7])                    # truncated, cut small
        decoder.append(b"\xff\x02\x04\x00" + b"\x00\x00\x00\x00" + frame)     # keepalive first
        decoder.append(b"\x10\x11\x05\x00" + frame)                          # cap 16 raised to none after 5 bytes
        if index + 1 < len(prefixed):
            decoder.append(b"\x00\x04\x03\x09\x11\x20" + frame + prefixed[index + 1])  # two frames cut
    decoder.append(b"\x08\x00" + struct.pack(">I", 9) + b"123456789")       # one byte over the cap
    decoder.append(b"\x00\x00" + b"\xff\xff\xff\xff")                       # 4 GiB announced, no cap

    for target, inputs in seeds.items():
        directory = os.path.join(OUT, target)
        os.makedirs(directory, exist_ok=True)
        for old in os.listdir(directory):
            os.remove(os.path.join(directory, old))
        for data in dict.fromkeys(inputs):
            with open(os.path.join(directory, hashlib.sha1(data).hexdigest()[:16]), "wb") as handle:
                handle.write(data)
        print(f"{target}: {len(set(inputs))} seeds")


if __name__ == "__main__":
    main()
