import NIOCore

/// The `sender_id` a frame is written with: `name@GUID` (`node@GUID` without a valid name),
/// rendered once per node and reused for every frame.
///
/// One pointer: the relay keeps a tag per node in several tables (the registry, each shard's
/// directory, the connection), where the address and the rendering in line cost 40 bytes a copy,
/// in buckets that outnumber the nodes.
public struct SenderTag: Sendable {
    @usableFromInline
    final class Storage: Sendable {
        @usableFromInline let address: NodeAddress
        @usableFromInline let rendered: [UInt8]

        init(_ address: NodeAddress) {
            self.address = address
            self.rendered = address.renderedBytes
        }
    }

    @usableFromInline let storage: Storage

    /// Inlinable: the hot path reads `address.id` of the sender's tag for every frame, and a call
    /// that returns the whole address retains its name (about 160 instructions a message).
    @inlinable public var address: NodeAddress { storage.address }
    @inlinable var rendered: [UInt8] { storage.rendered }

    public init(_ address: NodeAddress) {
        storage = Storage(address)
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
        // One capacity check, then plain stores: the head is at most this long.
        let maximum = 4 + 200 + sender.rendered.count
        out.writeInPlace(minimumWritableBytes: maximum) { buffer in
            var cursor = HeadCursor(buffer: buffer)
            cursor.put(UInt32(0))
            cursor.put("{\"msg_type\":\"")
            cursor.put(verb.wireName)
            cursor.put("\",\"msg_id\":\"")
            messageID.write(to: UnsafeMutableRawBufferPointer(rebasing: buffer[cursor.offset..<(cursor.offset + 36)]))
            cursor.offset += 36
            cursor.put("\",\"ttl\":")
            cursor.putDecimal(ttl)
            cursor.put(flood ? ",\"flood\":true,\"sender_id\":\"" : ",\"flood\":false,\"sender_id\":\"")
            sender.rendered.withUnsafeBytes { cursor.put($0) }
            cursor.put("\",\"target_id\":null,\"msg_data\":")
            return cursor.offset
        }
        return lengthIndex
    }

    /// Plain stores into the buffer: `writeInteger` and `setInteger` cost about 300 instructions
    /// together here (Benchmarks/instructions.sh), these a few dozen.
    @inline(__always)
    public static func end(_ out: inout ByteBuffer, lengthIndex: Int) {
        out.writeInPlace(minimumWritableBytes: 1) { buffer in
            buffer[0] = UInt8(ascii: "}")
            return 1
        }
        let length = UInt32(out.writerIndex - lengthIndex - 4)
        let offset = lengthIndex - out.readerIndex
        precondition(offset >= 0, "the frame's length field was read already")
        out.withUnsafeMutableReadableBytes { buffer in
            buffer.storeBytes(of: length.bigEndian, toByteOffset: offset, as: UInt32.self)
        }
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
        _ out: inout ByteBuffer, tape: JSONTape.View, bytes: UnsafeRawBufferPointer, object: Int, leadingComma: Bool,
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
    public static func copyValue(_ out: inout ByteBuffer, tape: JSONTape.View, bytes: UnsafeRawBufferPointer, token: Int) {
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

/// Stores into memory that was reserved for it; no bounds or uniqueness checks per store.
struct HeadCursor {
    let buffer: UnsafeMutableRawBufferPointer
    var offset = 0

    @inline(__always)
    mutating func put(_ text: StaticString) {
        let count = text.utf8CodeUnitCount
        (buffer.baseAddress! + offset).copyMemory(from: text.utf8Start, byteCount: count)
        offset += count
    }

    @inline(__always)
    mutating func put(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        (buffer.baseAddress! + offset).copyMemory(from: base, byteCount: bytes.count)
        offset += bytes.count
    }

    @inline(__always)
    mutating func put(_ value: UInt32) {
        buffer.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
        offset += 4
    }

    @inline(__always)
    mutating func putDecimal(_ value: Int) {
        if value >= 0 && value < 100 {
            if value >= 10 {
                buffer[offset] = UInt8(ascii: "0") + UInt8(value / 10)
                offset += 1
            }
            buffer[offset] = UInt8(ascii: "0") + UInt8(value % 10)
            offset += 1
        } else {
            var text = String(value)
            text.withUTF8 { put(UnsafeRawBufferPointer($0)) }
        }
    }
}

/// A frame the relay writes often that is the same bytes every time but for one or two ids: it is
/// rendered once with zero ids, then copied and the ids written in place.
public struct FrameTemplate: @unchecked Sendable {
    /// Allocated once and never freed or written after `init`: a relay has its templates for its
    /// lifetime, and reading one takes no reference counting on the hot path.
    private let bytes: UnsafeRawBufferPointer
    private let firstIDOffset: Int
    /// -1 for a template with one id.
    private let secondIDOffset: Int

    /// `render` writes the frame with `GUID.zero` for each of the `ids` (1 or 2) that `write`
    /// fills in, in the order it fills them, and nowhere else.
    init(ids: Int, _ render: (inout ByteBuffer) -> Void) {
        precondition(ids == 1 || ids == 2)
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        render(&buffer)
        let bytes = buffer.readBytes(length: buffer.readableBytes)!
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
        storage.copyBytes(from: bytes)
        self.bytes = UnsafeRawBufferPointer(storage)
        let found = bytes.offsets(of: Array(GUID.zero.description.utf8))
        precondition(found.count == ids, "a frame template must hold exactly \(ids) zero ids")
        firstIDOffset = found[0]
        secondIDOffset = ids == 2 ? found[1] : -1
    }

    /// The relay's ACK: the head's `msg_id`, then `msg_data.msg_id` (`msg_data.node_id` is the
    /// relay, not zero).
    public static func ack(relay: SenderTag) -> FrameTemplate {
        FrameTemplate(ids: 2) { RelayFrames.ack(&$0, messageID: .zero, acknowledging: .zero, relay: relay) }
    }

    /// The HELLO a relay without a mesh key sends every connection it accepts: the head's
    /// `msg_id` (`msg_data.node_id` is the relay). Rendering it took about 3,800 instructions
    /// of a handshake (Benchmarks/instructions-hs.sh).
    public static func hello(relay: SenderTag) -> FrameTemplate {
        FrameTemplate(ids: 1) { MeshFrames.hello(&$0, messageID: .zero, relay: relay, nonce: nil, proof: nil) }
    }

    /// A ROUTING with no entries (`nodes: []`): the head's `msg_id`. Most clients' first ROUTING
    /// (PROFILE.md section 4), which the chunked writer took about 2,000 instructions to render.
    public static func emptyRouting(relay: SenderTag) -> FrameTemplate {
        FrameTemplate(ids: 1) { RelayFrames.routing(&$0, entries: [], relay: relay) { .zero } }
    }

    /// A template with one id.
    @inline(__always)
    public func write(_ out: inout ByteBuffer, messageID: GUID) {
        let count = bytes.count
        let first = firstIDOffset
        let template = bytes
        out.writeInPlace(minimumWritableBytes: count) { buffer in
            buffer.baseAddress!.copyMemory(from: template.baseAddress!, byteCount: count)
            messageID.write(to: UnsafeMutableRawBufferPointer(rebasing: buffer[first..<(first + 36)]))
            return count
        }
    }

    /// A template with two ids, such as the ACK's.
    @inline(__always)
    public func write(_ out: inout ByteBuffer, messageID: GUID, acknowledging: GUID) {
        let count = bytes.count
        let first = firstIDOffset
        let second = secondIDOffset
        precondition(second >= 0, "a template with one id")
        let template = bytes
        out.writeInPlace(minimumWritableBytes: count) { buffer in
            buffer.baseAddress!.copyMemory(from: template.baseAddress!, byteCount: count)
            messageID.write(to: UnsafeMutableRawBufferPointer(rebasing: buffer[first..<(first + 36)]))
            acknowledging.write(to: UnsafeMutableRawBufferPointer(rebasing: buffer[second..<(second + 36)]))
            return count
        }
    }
}

extension [UInt8] {
    /// Where `needle` starts in these bytes, left to right, without overlaps: how a frame template
    /// finds the placeholders (zero ids, a key) its writer fills in.
    public func offsets(of needle: [UInt8]) -> [Int] {
        var found: [Int] = []
        var index = 0
        while index + needle.count <= count {
            if self[index..<(index + needle.count)].elementsEqual(needle) {
                found.append(index)
                index += needle.count
            } else {
                index += 1
            }
        }
        return found
    }
}
