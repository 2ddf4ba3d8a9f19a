import NIOCore
import PTPProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A sender's MESSAGE, written once with `FrameWriter` and then copied for every message with its two
/// ids and its send time written in place (as the relay's `FrameTemplate`): formatting a frame anew
/// per message would make the load generator the bottleneck.
///
/// `msg_data.message` is `payload` base64 characters: 16 hex digits of the send time in nanoseconds
/// of the monotonic clock (hex digits are valid base64, as relay-load writes them), then filler.
public struct MessageTemplate: Sendable {
    private let bytes: [UInt8]
    /// Where the head's `msg_id` goes; -1 with `BenchFrameHead.spec` (no head id).
    private let headIDOffset: Int
    private let dataIDOffset: Int
    private let stampOffset: Int

    /// The frame's length on the wire, length prefix included.
    public var count: Int { bytes.count }

    public init(
        from sender: SenderTag, to recipient: GUID, channelID: GUID, payload: Int, timestamp: String, head: BenchFrameHead = .client
    ) {
        precondition(payload >= BenchShape.minimumPayload, "the payload carries the 16 hex digits of the send time")
        let bytes = BenchFrames.frame(verb: .message, ttl: 32, head: head, sender: sender) { out in
            out.writeASCII("{\"msg_id\":")
            out.writeQuotedGUID(.zero)
            out.writeASCII(",\"node_id\":")
            out.writeQuotedGUID(sender.address.id)
            out.writeASCII(",\"recipient\":")
            FrameWriter.writeRecipients(&out, [recipient])
            out.writeASCII(",\"timestamp\":")
            out.writeJSONString(timestamp)
            out.writeASCII(",\"channel\":\"bench\",\"channel_id\":")
            out.writeQuotedGUID(channelID)
            out.writeASCII(",\"message\":\"")
            out.writeRepeatingByte(UInt8(ascii: "0"), count: 16)
            let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
            for index in 0..<(payload - 16) { out.writeInteger(alphabet[index % alphabet.count]) }
            out.writeASCII("\"}")
        }
        let zeros = bytes.offsets(of: Array(GUID.zero.description.utf8))
        precondition(zeros.count == (head == .client ? 2 : 1), "the MESSAGE template holds a placeholder id per id")
        let stamp = bytes.offsets(of: Array("\"message\":\"".utf8))
        precondition(stamp.count == 1, "the MESSAGE template holds one message")
        self.bytes = bytes
        headIDOffset = head == .client ? zeros[0] : -1
        dataIDOffset = zeros[zeros.count - 1]
        stampOffset = stamp[0] + 11
    }

    /// Appends one MESSAGE with `id` (head and `msg_data`) sent at `sentAt` (monotonic ns).
    @inline(__always)
    public func write(_ out: inout ByteBuffer, id: GUID, sentAt: UInt64) {
        let head = headIDOffset
        let data = dataIDOffset
        let stamp = stampOffset
        bytes.withUnsafeBytes { template in
            _ = out.writeWithUnsafeMutableBytes(minimumWritableBytes: template.count) { buffer in
                buffer.baseAddress!.copyMemory(from: template.baseAddress!, byteCount: template.count)
                // The id formatted once, then copied to its second place.
                id.write(to: UnsafeMutableRawBufferPointer(rebasing: buffer[data..<(data + 36)]))
                if head >= 0 { (buffer.baseAddress! + head).copyMemory(from: buffer.baseAddress! + data, byteCount: 36) }
                BenchFrames.writeHex(sentAt, to: buffer.baseAddress! + stamp)
                return template.count
            }
        }
    }

    /// Appends `count` MESSAGEs, all sent at `sentAt`, with the ids of `first` and the sequence
    /// numbers after it; the same bytes as `count` calls of `write(_:id:sentAt:)`, for less: one
    /// capacity check, the id and the send time formatted once, and each further MESSAGE a copy of
    /// the one before (in the cache: a block of ready copies per connection, 100 x 16 frames, was
    /// read from further away and cost more in `memmove`) with the id's last 17 characters written
    /// anew.
    public func write(_ out: inout ByteBuffer, first: BenchMessageID, count: Int, sentAt: UInt64) {
        guard count > 0 else { return }
        let head = headIDOffset
        let data = dataIDOffset
        let stamp = stampOffset
        bytes.withUnsafeBytes { template in
            let size = template.count
            _ = out.writeWithUnsafeMutableBytes(minimumWritableBytes: size * count) { buffer in
                var frame = buffer.baseAddress!
                frame.copyMemory(from: template.baseAddress!, byteCount: size)
                first.guid.write(to: UnsafeMutableRawBufferPointer(start: frame + data, count: 36))
                if head >= 0 { (frame + head).copyMemory(from: frame + data, byteCount: 36) }
                BenchFrames.writeHex(sentAt, to: frame + stamp)
                var sequence = first.sequence
                for _ in 1..<count {
                    let next = frame + size
                    next.copyMemory(from: frame, byteCount: size)
                    sequence = (sequence &+ 1) & BenchMessageID.sequenceMask
                    GUID.writeLowHalf(BenchMessageID.lowHalf(sequence: sequence), to: next + data + 19)
                    if head >= 0 { (next + head + 19).copyMemory(from: next + data + 19, byteCount: 17) }
                    frame = next
                }
                return size * count
            }
        }
    }
}

/// A recipient's `ACK {node_id, msg_id}` (`ttl` 1), written once and copied per ACK with its ids
/// written in place.
public struct AckFrameTemplate: Sendable {
    @usableFromInline let bytes: [UInt8]
    /// Where the ACK's own head `msg_id` goes (its first 19 characters, the node id's high half,
    /// written once); -1 with `BenchFrameHead.spec`.
    @usableFromInline let headIDOffset: Int
    @usableFromInline let dataIDOffset: Int

    /// The frame's length on the wire, length prefix included.
    @inlinable public var count: Int { bytes.count }

    public init(from node: SenderTag, head: BenchFrameHead = .client) {
        var bytes = BenchFrames.frame(verb: .ack, ttl: 1, head: head, sender: node) { out in
            out.writeASCII("{\"node_id\":")
            out.writeQuotedGUID(node.address.id)
            out.writeASCII(",\"msg_id\":")
            out.writeQuotedGUID(.zero)
            out.writeASCII("}")
        }
        let zeros = bytes.offsets(of: Array(GUID.zero.description.utf8))
        precondition(zeros.count == (head == .client ? 2 : 1), "the ACK template holds a placeholder id per id")
        headIDOffset = head == .client ? zeros[0] : -1
        dataIDOffset = zeros[zeros.count - 1]
        if head == .client {
            let at = headIDOffset
            bytes.withUnsafeMutableBytes {
                GUID(high: node.address.id.high, low: 0).write(to: UnsafeMutableRawBufferPointer(rebasing: $0[at..<(at + 36)]))
            }
        }
        self.bytes = bytes
    }

    @inline(__always)
    public func write(_ out: inout ByteBuffer, id: GUID, acknowledging: GUID) {
        let head = headIDOffset
        let data = dataIDOffset
        bytes.withUnsafeBytes { template in
            _ = out.writeWithUnsafeMutableBytes(minimumWritableBytes: template.count) { buffer in
                buffer.baseAddress!.copyMemory(from: template.baseAddress!, byteCount: template.count)
                if head >= 0 { id.write(to: UnsafeMutableRawBufferPointer(rebasing: buffer[head..<(head + 36)])) }
                acknowledging.write(to: UnsafeMutableRawBufferPointer(rebasing: buffer[data..<(data + 36)]))
                return template.count
            }
        }
    }

    /// Appends the ACK of the MESSAGE whose `msg_id` text (36 characters, as it came) is at
    /// `acknowledged`: copied, not parsed and formatted again. With the client head the ACK's own id
    /// is the node id's high half and `sequence` (the same bytes as `write(_:id:acknowledging:)` with
    /// `GUID(high: node id's high, low: sequence)`).
    @inline(__always)
    public func write(_ out: inout ByteBuffer, sequence: UInt64, acknowledging acknowledged: UnsafeRawPointer) {
        _ = out.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { buffer in
            write(to: buffer.baseAddress!, sequence: sequence, acknowledging: acknowledged)
            return count
        }
    }

    /// The same ACK written to `destination`, which has room for `count` bytes: a reader that
    /// answers many MESSAGEs of one read makes room for all their ACKs at once (a `ByteBuffer`
    /// write per ACK cost more than the copying).
    @inlinable @inline(__always)
    public func write(to destination: UnsafeMutableRawPointer, sequence: UInt64, acknowledging acknowledged: UnsafeRawPointer) {
        let head = headIDOffset
        let data = dataIDOffset
        bytes.withUnsafeBytes { template in
            destination.copyMemory(from: template.baseAddress!, byteCount: template.count)
        }
        if head >= 0 { GUID.writeLowHalf(sequence, to: destination + head + 19) }
        (destination + data).copyMemory(from: acknowledged, byteCount: 36)
    }
}

/// What the bench needs of a frame from the relay, found by key (any key order, any whitespace
/// around `:`) without parsing the whole JSON: its verb, `msg_data.msg_id`, and for a MESSAGE the
/// send time at the start of `msg_data.message`.
public struct ScannedFrame: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case message, ack, nack, routing, other
    }

    public var kind: Kind
    /// `msg_data.msg_id` of a MESSAGE, ACK or NACK.
    public var messageID: GUID?
    /// The send time (monotonic ns) a bench MESSAGE carries.
    public var sentAt: UInt64?
    /// `msg_data.reason` of a NACK.
    public var reason: String?

    public init(kind: Kind, messageID: GUID? = nil, sentAt: UInt64? = nil, reason: String? = nil) {
        self.kind = kind
        self.messageID = messageID
        self.sentAt = sentAt
        self.reason = reason
    }
}

/// Where the keys were in the last frame of a kind: a relay writes its frames in one layout, so the
/// key is usually at the same offset again and the search is skipped (as relay-load's hints do).
/// One per connection; a wrong hint only costs the search.
public struct ScanHints: Sendable {
    var messageData = 0
    var ackData = 0
    var messageText = 0
    var messageID = 0
    var ackID = 0

    public init() {}
}

/// Where the fields the bench reads lie in a frame body (byte offsets, -1 when absent): what
/// `BenchFrames.scan` parses, left as text so that the hot path can copy an id instead of parsing
/// and formatting it again.
public struct LocatedFrame: Equatable, Sendable {
    public var kind: ScannedFrame.Kind
    /// The 36 characters of `msg_data.msg_id` (the closing quote checked, not the characters).
    public var messageID: Int
    /// The first 16 characters of `msg_data.message` of a MESSAGE.
    public var sendTime: Int
    /// The value of `msg_data` (-1 when absent).
    public var data: Int

    public init(kind: ScannedFrame.Kind, messageID: Int = -1, sendTime: Int = -1, data: Int = -1) {
        self.kind = kind
        self.messageID = messageID
        self.sendTime = sendTime
        self.data = data
    }
}

/// Which head keys the bench's own frames carry.
public enum BenchFrameHead: String, CaseIterable, Sendable {
    /// `msg_type`, `ttl`, `flood`, `msg_data`: SPEC.md's frame, the bytes relay-load sends.
    case spec
    /// Also `msg_id`, `sender_id` and `target_id`, as `ptpchat send` writes them (FrameWriter; the
    /// existing client's head, PROFILE.md section 2): about 120 bytes more a frame for the relay to read.
    case client
}

public enum BenchFrames {
    /// Scans one frame body (the JSON, without its length prefix).
    public static func scan(_ frame: ByteBuffer, hints: inout ScanHints) -> ScannedFrame {
        frame.withUnsafeReadableBytes { scan($0, hints: &hints) }
    }

    public static func scan(_ frame: ByteBuffer) -> ScannedFrame {
        var hints = ScanHints()
        return scan(frame, hints: &hints)
    }

    public static func scan(_ bytes: UnsafeRawBufferPointer) -> ScannedFrame {
        var hints = ScanHints()
        return scan(bytes, hints: &hints)
    }

    /// `locate`, then the id and the send time parsed, and a NACK's reason.
    public static func scan(_ bytes: UnsafeRawBufferPointer, hints: inout ScanHints) -> ScannedFrame {
        let located = locate(bytes, hints: &hints)
        var scanned = ScannedFrame(kind: located.kind)
        if located.messageID >= 0 { scanned.messageID = id(at: located.messageID, in: bytes) }
        if located.sendTime >= 0 { scanned.sentAt = GUID.hexValue(sixteenDigitsAt: located.sendTime, in: bytes) }
        if located.kind == .nack, located.data >= 0, let reason = stringValue(of: "\"reason\"", in: bytes, from: located.data) {
            scanned.reason = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[reason]), as: UTF8.self)
        }
        return scanned
    }

    /// Finds the verb, `msg_data.msg_id` and a MESSAGE's send time. A `"key":"` pattern can only be
    /// a key: inside a JSON string every quote is escaped. The relay writes `msg_type` first and
    /// its frames in one layout: the verb is read at offset 13 and the ids where the hints say
    /// (checked), with the search as the fallback for any other layout.
    public static func locate(_ bytes: UnsafeRawBufferPointer, hints: inout ScanHints) -> LocatedFrame {
        let kind: ScannedFrame.Kind
        let relayLayout = bytes.count > 21 && bytes[0] == UInt8(ascii: "{") && isKey("\"msg_type\"", at: 1, in: bytes) && bytes[12] == UInt8(ascii: "\"")
        if relayLayout && bytes.loadUnaligned(fromByteOffset: 13, as: UInt64.self) == Self.messageVerbWord {
            kind = .message
        } else if relayLayout && bytes.loadUnaligned(fromByteOffset: 13, as: UInt32.self) == Self.ackVerbWord {
            kind = .ack
        } else {
            let verb: Range<Int>
            if relayLayout, let close = firstQuote(in: bytes, from: 13) {
                verb = 13..<close
            } else {
                guard let found = stringValue(of: "\"msg_type\"", in: bytes, from: 0) else { return LocatedFrame(kind: .other) }
                verb = found
            }
            switch verb.count {
            case 7 where equals(verb, "MESSAGE", in: bytes): kind = .message
            case 3 where equals(verb, "ACK", in: bytes): kind = .ack
            case 4 where equals(verb, "NACK", in: bytes): kind = .nack
            case 7 where equals(verb, "ROUTING", in: bytes): kind = .routing
            default: return LocatedFrame(kind: .other)
            }
        }
        guard kind != .routing else { return LocatedFrame(kind: .routing) }
        let data: Int
        switch kind {
        case .message: data = hinted("\"msg_data\"", in: bytes, hint: &hints.messageData)
        case .ack: data = hinted("\"msg_data\"", in: bytes, hint: &hints.ackData)
        default: data = find("\"msg_data\"", in: bytes, from: 0) ?? -1
        }
        guard data >= 0 else { return LocatedFrame(kind: kind) }
        var located = LocatedFrame(kind: kind, data: data)
        // A GUID is 36 characters: no need to look for the closing quote byte by byte.
        var id = -1
        switch kind {
        case .message: id = hintedValue("\"msg_id\"", in: bytes, after: data, hint: &hints.messageID)
        case .ack: id = hintedValue("\"msg_id\"", in: bytes, after: data, hint: &hints.ackID)
        default: id = valueStart(of: "\"msg_id\"", in: bytes, from: data) ?? -1
        }
        if id >= 0, id + 36 < bytes.count, bytes[id + 36] == UInt8(ascii: "\"") { located.messageID = id }
        if kind == .message {
            // Only the first 16 characters of the text are read: the send time.
            let text = hintedValue("\"message\"", in: bytes, after: data, hint: &hints.messageText)
            if text >= 0, text + 16 <= bytes.count { located.sendTime = text }
        }
        return located
    }

    /// Where the string value of `key` starts, at `hint` if the key is there (`"key":"` right before
    /// it, after `after`), else searched for from `after` (and the hint updated); -1 if absent.
    @inline(__always)
    private static func hintedValue(_ key: StaticString, in bytes: UnsafeRawBufferPointer, after: Int, hint: inout Int) -> Int {
        let count = key.utf8CodeUnitCount
        if hint > after + count + 1, hint < bytes.count, bytes[hint - 1] == UInt8(ascii: "\""),
            isKey(key, at: hint - count - 2, in: bytes)
        {
            return hint
        }
        guard let at = valueStart(of: key, in: bytes, from: after) else { return -1 }
        hint = at
        return at
    }

    /// The offset of `key` at `hint` if it is there, else searched for (and the hint updated); -1 if absent.
    @inline(__always)
    private static func hinted(_ key: StaticString, in bytes: UnsafeRawBufferPointer, hint: inout Int) -> Int {
        if hint > 0, isKey(key, at: hint, in: bytes) { return hint }
        guard let at = find(key, in: bytes, from: 0) else { return -1 }
        hint = at
        return at
    }

    /// `MESSAGE"` and `ACK"` as the words they are in memory (little-endian): the two verbs of the
    /// hot path told from one load each.
    static let messageVerbWord = UInt64(0x2245_4741_5353_454D)
    static let ackVerbWord = UInt32(0x224B_4341)

    /// `key` (quotes included) at `offset`, followed by `:` (a `memcmp` of constant length, which
    /// the compiler turns into word compares).
    @inline(__always)
    private static func isKey(_ key: StaticString, at offset: Int, in bytes: UnsafeRawBufferPointer) -> Bool {
        let count = key.utf8CodeUnitCount
        guard offset >= 0, offset + count + 1 < bytes.count else { return false }
        return memcmp(bytes.baseAddress! + offset, key.utf8Start, count) == 0 && bytes[offset + count] == UInt8(ascii: ":")
    }

    /// Where the string value of `key` starts (just past its opening quote), searching from `start`.
    static func valueStart(of key: StaticString, in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var from = start
        while let at = find(key, in: bytes, from: from) {
            var index = skipSpace(bytes, at + key.utf8CodeUnitCount)
            if index < bytes.count, bytes[index] == UInt8(ascii: ":") {
                index = skipSpace(bytes, index + 1)
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
                return index + 1
            }
            from = at + 1
        }
        return nil
    }

    /// The range of the string value of `key` (quotes included in `key`), searching from `start`.
    static func stringValue(of key: StaticString, in bytes: UnsafeRawBufferPointer, from start: Int) -> Range<Int>? {
        guard let valueStart = valueStart(of: key, in: bytes, from: start),
            let close = firstQuote(in: bytes, from: valueStart)
        else { return nil }
        return valueStart..<close
    }

    private static func skipSpace(_ bytes: UnsafeRawBufferPointer, _ start: Int) -> Int {
        var index = start
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 || bytes[index] == 0x0A || bytes[index] == 0x0D {
            index += 1
        }
        return index
    }

    /// The closing quote of a string starting at `start` (escaped quotes skipped).
    private static func firstQuote(in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var index = start
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""): return index
            case UInt8(ascii: "\\"): index += 2
            default: index += 1
            }
        }
        return nil
    }

    private static func equals(_ range: Range<Int>, _ text: StaticString, in bytes: UnsafeRawBufferPointer) -> Bool {
        memcmp(bytes.baseAddress! + range.lowerBound, text.utf8Start, text.utf8CodeUnitCount) == 0
    }

    /// libc's memchr (vectorised) for the needle's first byte, then the rest compared in line (a
    /// memcmp call per quote cost more than the search; Glibc's module does not export memmem).
    static func find(_ needle: StaticString, in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        let count = needle.utf8CodeUnitCount
        let pattern = needle.utf8Start
        var index = start
        while index + count <= bytes.count {
            guard let hit = memchr(base + index, Int32(pattern[0]), bytes.count - count + 1 - index) else { return nil }
            let at = base.distance(to: UnsafeRawPointer(hit))
            var matched = 1
            while matched < count && bytes[at + matched] == pattern[matched] { matched += 1 }
            if matched == count { return at }
            index = at + 1
        }
        return nil
    }

    /// A whole frame (length prefix included) whose `msg_data` is written by `body`, with the head
    /// `head` says. Not on the hot path: the templates are made once per connection.
    static func frame(verb: Verb, ttl: Int, head: BenchFrameHead, sender: SenderTag, body: (inout ByteBuffer) -> Void) -> [UInt8] {
        var buffer = ByteBuffer()
        switch head {
        case .client:
            FrameWriter.write(&buffer, verb: verb, messageID: .zero, ttl: ttl, flood: false, sender: sender, body: body)
        case .spec:
            // FrameWriter always writes the compat head keys (the relay's frames need them).
            buffer.writeInteger(UInt32(0))
            buffer.writeString("{\"msg_type\":\"\(verb.name)\",\"ttl\":\(ttl),\"flood\":false,\"msg_data\":")
            body(&buffer)
            buffer.writeString("}")
            buffer.setInteger(UInt32(buffer.readableBytes - 4), at: buffer.readerIndex)
        }
        return buffer.readBytes(length: buffer.readableBytes)!
    }

    /// The GUID whose 36 characters start at `offset` (a `LocatedFrame`'s `messageID`).
    @inline(__always)
    public static func id(at offset: Int, in bytes: UnsafeRawBufferPointer) -> GUID? {
        GUID(canonical: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + 36)]))
    }

    /// The 16 lower-case hex digits of `value`.
    @inline(__always)
    static func writeHex(_ value: UInt64, to destination: UnsafeMutableRawPointer) {
        destination.storeBytes(of: GUID.hexDigits(UInt32(truncatingIfNeeded: value >> 32)).littleEndian, toByteOffset: 0, as: UInt64.self)
        destination.storeBytes(of: GUID.hexDigits(UInt32(truncatingIfNeeded: value)).littleEndian, toByteOffset: 8, as: UInt64.self)
    }
}
