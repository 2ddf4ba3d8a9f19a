import NIOCore

/// The rules a relay applies to a message it passes on (PROFILE.md sections 2, 5 and 7), written
/// once for every verb and every kind of next hop.
public enum Forwarding {
    /// The highest `ttl` the relay keeps or writes; a larger one is clamped to it.
    public static let maxTTL = 32

    /// The `ttl` the message leaves with: the received one (clamped, the existing client's labelled
    /// chat counting as received with 32) minus one. Below 1 it must not be forwarded.
    @inline(__always)
    public static func outgoingTTL(of envelope: Envelope) -> Int {
        min(envelope.isLabelledChat ? maxTTL : envelope.ttl, maxTTL) - 1
    }

    /// The `recipient` list for a copy that goes to the next hop serving `hopRecipients`: narrowed
    /// when that is not every recipient the message named (or for the existing client's labelled
    /// chat, whose own list names the sender and the relay); nil keeps `msg_data` as it came.
    @inline(__always)
    public static func narrowedRecipients(of envelope: Envelope, for hopRecipients: Recipients) -> Recipients? {
        guard envelope.verb == .message else { return nil }
        return hopRecipients.count != envelope.recipients.count || envelope.isLabelledChat ? hopRecipients : nil
    }
}

/// The JSON a frame was read from: its tape and its bytes, for copying parts of it into the copy.
public struct ReceivedJSON {
    /// The tape's tokens in place (no reference to its storage, so no reference counting for
    /// the copies the send path makes): read it before the tape parses again.
    public let tape: JSONTape.View
    public let bytes: UnsafeRawBufferPointer

    @inline(__always)
    public init(tape: JSONTape, bytes: UnsafeRawBufferPointer) {
        self.tape = tape.view
        self.bytes = bytes
    }
}

/// The frames a relay writes when it passes another node's message on: the relay's exact head and
/// the sender's `msg_data`, changed only where the protocol says.
public enum ForwardedFrames {
    /// A unicast verb for one next hop: `msg_data` copied, `recipient` replaced by `recipients`
    /// when given (see `Forwarding.narrowedRecipients`).
    ///
    /// It takes the two things of the envelope it reads, the verb and the `msg_data` token: a
    /// closure that captures these instead of the whole `Envelope` (over 300 bytes) does not copy
    /// it for every forwarded copy.
    @inline(__always)
    public static func unicast(
        _ out: inout ByteBuffer, verb: Verb, data: Int, from json: ReceivedJSON, messageID: GUID, ttl: Int,
        sender: SenderTag, recipients: Recipients?
    ) {
        FrameWriter.write(&out, verb: verb, messageID: messageID, ttl: ttl, flood: false, sender: sender) { out in
            if let recipients {
                out.writeASCII("{\"recipient\":")
                FrameWriter.writeRecipients(&out, recipients)
                FrameWriter.copyMembers(&out, tape: json.tape, bytes: json.bytes, object: data, leadingComma: true) {
                    $0.count == 9 && JSONTape.equals("recipient", $0, 0, 9)
                }
                out.writeInteger(UInt8(ascii: "}"))
            } else {
                FrameWriter.copyValue(&out, tape: json.tape, bytes: json.bytes, token: data)
            }
        }
    }

    /// JOIN, LEAVE or CHANNEL passed on: `msg_data.msg_id` is always the flood id (copied from the
    /// head when only the head had one: the existing client needs it). A `msg_data.msg_id` that is
    /// the zero GUID is no id (MessageReader took the head's): it is replaced too, else the copy
    /// went out with the zero id in `msg_data` (found by Fuzz/fuzz-message-reader).
    public static func flood(
        _ out: inout ByteBuffer, _ envelope: Envelope, from json: ReceivedJSON, floodID: GUID, ttl: Int, sender: SenderTag
    ) {
        let tape = json.tape
        let needsID = tape.member("msg_id", in: envelope.data, of: json.bytes).map { token in
            tape[token].kind != .string || GUID(canonical: tape.rawString(token, of: json.bytes)) != floodID
        } ?? true
        FrameWriter.write(&out, verb: envelope.verb, messageID: floodID, ttl: ttl, flood: true, sender: sender) { out in
            if needsID {
                out.writeASCII("{\"msg_id\":")
                out.writeQuotedGUID(floodID)
                FrameWriter.copyMembers(&out, tape: tape, bytes: json.bytes, object: envelope.data, leadingComma: true) {
                    $0.count == 6 && JSONTape.equals("msg_id", $0, 0, 6)
                }
                out.writeInteger(UInt8(ascii: "}"))
            } else {
                FrameWriter.copyValue(&out, tape: tape, bytes: json.bytes, token: envelope.data)
            }
        }
    }

    /// CONNECT (PROFILE.md section 8) with `src` and `dst` as given (the relay fills in only the
    /// address it observed), node ids as bare GUIDs, the round-trip hints `src_rtt_ms` /
    /// `dst_rtt_ms` when given (the relay's smoothed TCP round-trip time to that node, in whole
    /// milliseconds), then `otherMembers` (from `connectOtherMembers`) as they came.
    public static func connect(
        _ out: inout ByteBuffer, messageID: GUID, ttl: Int, sender: SenderTag, source: GUID, destination: GUID,
        src: String?, dst: String?, srcRTT: Int? = nil, dstRTT: Int? = nil, otherMembers: ByteBuffer
    ) {
        FrameWriter.write(&out, verb: .connect, messageID: messageID, ttl: ttl, flood: false, sender: sender) { out in
            out.writeASCII("{\"src_node_id\":")
            out.writeQuotedGUID(source)
            out.writeASCII(",\"dst_node_id\":")
            out.writeQuotedGUID(destination)
            out.writeASCII(",\"src\":")
            if let src { out.writeJSONString(src) } else { out.writeASCII("null") }
            out.writeASCII(",\"dst\":")
            if let dst { out.writeJSONString(dst) } else { out.writeASCII("null") }
            if let srcRTT {
                out.writeASCII(",\"src_rtt_ms\":")
                out.writeDecimal(srcRTT)
            }
            if let dstRTT {
                out.writeASCII(",\"dst_rtt_ms\":")
                out.writeDecimal(dstRTT)
            }
            var members = otherMembers
            out.writeBuffer(&members)
            out.writeInteger(UInt8(ascii: "}"))
        }
    }

    /// The members of a received CONNECT's `msg_data` that are copied as they came: all but the
    /// node ids, the addresses and the round-trip hints, which `connect` writes. Each is preceded
    /// by a comma. An owned copy: a CONNECT may be written after its read buffer is gone (the
    /// relay reads the round-trip times first).
    public static func connectOtherMembers(data: Int, from json: ReceivedJSON) -> ByteBuffer {
        var members = ByteBuffer()
        FrameWriter.copyMembers(&members, tape: json.tape, bytes: json.bytes, object: data, leadingComma: true) { key in
            for name: StaticString in ["src_node_id", "dst_node_id", "src", "dst", "src_rtt_ms", "dst_rtt_ms"]
            where JSONTape.equals(name, key, 0, key.count) {
                return true
            }
            return false
        }
        return members
    }

    /// The round-trip hints a received CONNECT carries (set by the relays before this one): each
    /// a whole number of milliseconds from 0 to `maxRoundTripMillis`; anything else is no hint.
    public static func connectRoundTrips(data: Int, from json: ReceivedJSON) -> (src: Int?, dst: Int?) {
        func hint(_ key: StaticString) -> Int? {
            guard let token = json.tape.member(key, in: data, of: json.bytes),
                let value = json.tape.integer(token, of: json.bytes), (0...maxRoundTripMillis).contains(value)
            else { return nil }
            return value
        }
        return (hint("src_rtt_ms"), hint("dst_rtt_ms"))
    }

    /// The largest round-trip hint passed on: a minute (a larger one is no measurement).
    public static let maxRoundTripMillis = 60_000
}
