import NIOCore

/// The frames relays write for each other (PROFILE.md section 9): the HELLO that carries the mesh
/// proof attributes and ROUTING with the keys only relays exchange.
public enum MeshFrames {
    /// A relay HELLO (`node_type: server`, as `RelayFrames.hello`) with `attributes.mesh_nonce`
    /// and/or `attributes.mesh_proof` after `node_type`. With neither it is byte for byte the
    /// frame `RelayFrames.hello` writes.
    public static func hello(_ out: inout ByteBuffer, messageID: GUID, relay: SenderTag, nonce: String?, proof: String?) {
        FrameWriter.write(&out, verb: .hello, messageID: messageID, ttl: 1, flood: false, sender: relay) { out in
            out.writeASCII("{\"node_id\":")
            out.writeQuotedGUID(relay.address.id)
            out.writeASCII(",\"version\":")
            out.writeJSONString(RelayFrames.version)
            out.writeASCII(",\"attributes\":{\"node_type\":\"server\"")
            if let nonce {
                out.writeASCII(",\"mesh_nonce\":")
                out.writeJSONString(nonce)
            }
            if let proof {
                out.writeASCII(",\"mesh_proof\":")
                out.writeJSONString(proof)
            }
            out.writeASCII("}}")
        }
    }

    /// Relay-to-relay `ROUTING` frames: `ttl` 1, `flood` false, `msg_data.node_id` the relay
    /// (bare GUID), `msg_data.nodes` entries `{"node_id":"name@GUID","ttl":N,"seq":S,"legacy":true}`
    /// (`seq` only when set, `legacy` only when true). Each frame, its 4-byte length prefix
    /// included, is at most `maxFrameBytes` (PROFILE.md: 8 KiB) unless one entry alone does not
    /// fit; always at least one frame (`nodes: []` for no entries), each with an id from `nextID`.
    ///
    /// An entry's `ttl` is written clamped to 1...32 (a reader counts anything else as malformed);
    /// a name that is not letters and digits is written as `node`, so the output is ASCII.
    public static func routing(
        _ out: inout ByteBuffer, entries: [MeshRouteEntry], relay: SenderTag,
        maxFrameBytes: Int = 8192, nextID: () -> GUID
    ) {
        RelayFrames.chunkedRouting(&out, count: entries.count, relay: relay, maxFrameBytes: maxFrameBytes, nextID: nextID) {
            writeEntry(&$0, entries[$1])
        }
    }

    private static func writeEntry(_ out: inout ByteBuffer, _ entry: MeshRouteEntry) {
        out.writeASCII("{\"node_id\":\"")
        if let name = entry.node.name, NodeAddress.isValidName(name) {
            out.writeString(name)
        } else {
            out.writeASCII("node")
        }
        out.writeInteger(UInt8(ascii: "@"))
        out.writeInPlace(minimumWritableBytes: 36) { pointer in
            entry.node.id.write(to: pointer)
            return 36
        }
        out.writeASCII("\",\"ttl\":")
        out.writeDecimal(min(max(entry.ttl, 1), MeshRouteEntry.unreachable))
        if let seq = entry.seq {
            out.writeASCII(",\"seq\":")
            out.writeDecimal(Int(seq))
        }
        if entry.legacy {
            out.writeASCII(",\"legacy\":true")
        }
        out.writeInteger(UInt8(ascii: "}"))
    }
}

/// A relay-to-relay ROUTING frame read back (PROFILE.md section 9).
public struct MeshRouting: Sendable, Equatable {
    /// `msg_data.node_id`: the relay that sent the frame, nil when the frame does not say.
    public var relay: GUID?
    /// The valid entries, in frame order.
    public var entries: [MeshRouteEntry]
    /// Entries skipped as malformed: not an object; `node_id` missing or not a node id; `ttl`
    /// missing, not an integer or outside 1...32; `seq` not an integer in `0...UInt32.max`;
    /// `legacy` not a boolean.
    public var malformed: Int

    public init(relay: GUID?, entries: [MeshRouteEntry], malformed: Int) {
        self.relay = relay
        self.entries = entries
        self.malformed = malformed
    }

    /// Reads `msg_data.nodes` of a ROUTING frame already parsed into `tape` (by `MessageReader`
    /// or `JSONTape.parse`). `data` is the `msg_data` token (`Envelope.data`); nil looks it up in
    /// the root object. Malformed entries are skipped and counted, never thrown; a frame whose
    /// `msg_data` is not an object, whose `nodes` is missing or not an array, or whose
    /// `node_id` is not a node id throws.
    ///
    /// Leniency, as for the existing client's frames: `ttl` may be a string holding an integer
    /// (SPEC.md shows it so); a `null` `seq` or `legacy` counts as absent, a `null` `ttl` as missing.
    /// Note that `MessageReader` itself refuses a whole ROUTING frame with an entry that is not an
    /// object, has no node id or has no integer `ttl`; after it, only the other defects are left
    /// to count here.
    public static func entries(
        tape: JSONTape, bytes: UnsafeRawBufferPointer, data: Int? = nil
    ) throws(InvalidMessage) -> MeshRouting {
        guard tape.count > 0, tape[0].kind == .object else { throw InvalidMessage("frame is not a JSON object", verb: .routing) }
        guard let data = data ?? tape.member("msg_data", in: 0, of: bytes), tape[data].kind == .object else {
            throw InvalidMessage("msg_data is not an object", verb: .routing)
        }
        var relay: GUID?
        if let node = tape.member("node_id", in: data, of: bytes), tape[node].kind != .null {
            guard tape[node].kind == .string, let address = address(tape, node, bytes) else {
                throw InvalidMessage("msg_data.node_id is not a node id", verb: .routing)
            }
            relay = address.id
        }
        guard let nodes = tape.member("nodes", in: data, of: bytes), tape[nodes].kind != .null else {
            throw InvalidMessage("msg_data.nodes is missing", verb: .routing)
        }
        guard tape[nodes].kind == .array else { throw InvalidMessage("msg_data.nodes is not an array", verb: .routing) }

        var result = MeshRouting(relay: relay, entries: [], malformed: 0)
        result.entries.reserveCapacity(tape.count(of: nodes))
        tape.forEachElement(of: nodes) { element in
            if let entry = entry(tape, element, bytes) {
                result.entries.append(entry)
            } else {
                result.malformed += 1
            }
        }
        return result
    }

    private static func address(_ tape: JSONTape, _ token: Int, _ bytes: UnsafeRawBufferPointer) -> NodeAddress? {
        guard !tape[token].escaped else { return NodeAddress(tape.string(token, of: bytes)) }
        return NodeAddress(bytes: tape.rawString(token, of: bytes))
    }

    private static func entry(_ tape: JSONTape, _ element: Int, _ bytes: UnsafeRawBufferPointer) -> MeshRouteEntry? {
        guard tape[element].kind == .object else { return nil }
        guard let nodeToken = tape.member("node_id", in: element, of: bytes), tape[nodeToken].kind == .string,
            let node = address(tape, nodeToken, bytes)
        else { return nil }

        guard let ttlToken = tape.member("ttl", in: element, of: bytes) else { return nil }
        let ttl: Int?
        switch tape[ttlToken].kind {
        case .number: ttl = tape.integer(ttlToken, of: bytes)
        case .string: ttl = Int(tape.string(ttlToken, of: bytes))
        default: ttl = nil
        }
        guard let ttl, (1...MeshRouteEntry.unreachable).contains(ttl) else { return nil }

        var seq: UInt32?
        if let seqToken = tape.member("seq", in: element, of: bytes), tape[seqToken].kind != .null {
            guard let value = tape.integer(seqToken, of: bytes), let fitting = UInt32(exactly: value) else { return nil }
            seq = fitting
        }

        var legacy = false
        if let legacyToken = tape.member("legacy", in: element, of: bytes) {
            switch tape[legacyToken].kind {
            case .true: legacy = true
            case .false, .null: legacy = false
            default: return nil
            }
        }
        return MeshRouteEntry(node: node, ttl: ttl, seq: seq, legacy: legacy)
    }
}
