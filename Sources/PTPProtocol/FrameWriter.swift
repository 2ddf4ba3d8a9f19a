import NIOCore

/// The `sender_id` a frame is written with: `name@GUID` (`node@GUID` without a valid name),
/// rendered once per node and reused for every frame.
public struct SenderTag: Sendable {
    public let address: NodeAddress
    @usableFromInline let rendered: [UInt8]

    public init(_ address: NodeAddress) {
        self.address = address
        self.rendered = Array(address.description.utf8)
    }
}

/// Writes outbound frames: exact head, compact ASCII JSON, one frame per call.
///
/// Head order: `msg_type`, `msg_id`, `ttl`, `flood`, `sender_id`, `target_id` (null), `msg_data`.
public enum FrameWriter {
    /// Writes the length placeholder and the head up to `"msg_data":`; returns where the length
    /// goes. Finish with `end`.
    @inline(__always)
    public static func begin(_ out: inout ByteBuffer, verb: Verb, messageID: GUID, ttl: Int, flood: Bool, sender: SenderTag) -> Int {
        let lengthIndex = out.writerIndex
        out.writeInteger(UInt32(0))
        out.writeASCII("{\"msg_type\":\"")
        out.writeASCII(verb.wireName)
        out.writeASCII("\",\"msg_id\":")
        out.writeQuotedGUID(messageID)
        out.writeASCII(",\"ttl\":")
        out.writeDecimal(ttl)
        out.writeASCII(flood ? ",\"flood\":true,\"sender_id\":\"" : ",\"flood\":false,\"sender_id\":\"")
        out.writeBytes(sender.rendered)
        out.writeASCII("\",\"target_id\":null,\"msg_data\":")
        return lengthIndex
    }

    @inline(__always)
    public static func end(_ out: inout ByteBuffer, lengthIndex: Int) {
        out.writeInteger(UInt8(ascii: "}"))
        out.setInteger(UInt32(out.writerIndex - lengthIndex - 4), at: lengthIndex)
    }

    /// A whole frame whose `msg_data` is written by `body`.
    @inline(__always)
    public static func write(
        _ out: inout ByteBuffer, verb: Verb, messageID: GUID, ttl: Int, flood: Bool, sender: SenderTag,
        body: (inout ByteBuffer) -> Void
    ) {
        let lengthIndex = begin(&out, verb: verb, messageID: messageID, ttl: ttl, flood: flood, sender: sender)
        body(&out)
        end(&out, lengthIndex: lengthIndex)
    }

    /// Copies the members of the object at `object` (without braces), leaving out those for which
    /// `skip` returns true. Returns the number of members written.
    @discardableResult
    public static func copyMembers(
        _ out: inout ByteBuffer, tape: JSONTape, bytes: UnsafeRawBufferPointer, object: Int, leadingComma: Bool,
        skip: (UnsafeRawBufferPointer) -> Bool = { _ in false }
    ) -> Int {
        var written = 0
        tape.forEachMember(of: object) { key, value in
            let keyToken = tape[key]
            if skip(UnsafeRawBufferPointer(rebasing: bytes[Int(keyToken.start)..<Int(keyToken.end)])) { return }
            if written > 0 || leadingComma { out.writeInteger(UInt8(ascii: ",")) }
            let start = Int(keyToken.start) - 1
            let end = Int(tape[value].kind == .string ? tape[value].end + 1 : tape[value].end)
            out.writeCompactJSON(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), compactASCII: tape.isCompactASCII)
            written += 1
        }
        return written
    }

    /// Copies a whole value (object, array, scalar) as compact ASCII JSON.
    public static func copyValue(_ out: inout ByteBuffer, tape: JSONTape, bytes: UnsafeRawBufferPointer, token: Int) {
        let value = tape[token]
        let start = Int(value.kind == .string ? value.start - 1 : value.start)
        let end = Int(value.kind == .string ? value.end + 1 : value.end)
        out.writeCompactJSON(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), compactASCII: tape.isCompactASCII)
    }

    /// `[{"node_id":"<guid>"},…]`
    public static func writeRecipients(_ out: inout ByteBuffer, _ recipients: some Sequence<GUID>) {
        out.writeInteger(UInt8(ascii: "["))
        var first = true
        for recipient in recipients {
            out.writeASCII(first ? "{\"node_id\":" : ",{\"node_id\":")
            out.writeQuotedGUID(recipient)
            out.writeInteger(UInt8(ascii: "}"))
            first = false
        }
        out.writeInteger(UInt8(ascii: "]"))
    }
}

extension ByteBuffer {
    @inline(__always)
    public mutating func writeDecimal(_ value: Int) {
        if value >= 0 && value < 10 {
            writeInteger(UInt8(ascii: "0") + UInt8(value))
        } else if value >= 10 && value < 100 {
            writeInteger(UInt8(ascii: "0") + UInt8(value / 10))
            writeInteger(UInt8(ascii: "0") + UInt8(value % 10))
        } else {
            writeString(String(value))
        }
    }
}
