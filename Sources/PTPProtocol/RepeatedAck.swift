#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An ACK a connection sent, kept so that the next one can be read without parsing it again.
///
/// A client writes every ACK from one template: the same keys in the same order, its own node id,
/// and only the acknowledged message's id changes (the existing C# client's and relay-load's ACKs
/// both do; CLIENT-FRAMES.md). A frame with the same bytes as this one outside the id fields, and
/// a canonical GUID in each of them, is the same JSON with the same structure: its tokens, its
/// validation and its envelope are this one's, but for the ids. Reading them there and comparing
/// the rest takes a tenth of a parse; any other frame is parsed as usual.
///
/// Made by `MessageReader.repeatedAck(_:_:)` right after the full read of an ACK. Owned by the
/// connection it came from (one per connection, on its event loop).
public final class RepeatedAck: @unchecked Sendable {
    /// The longest ACK remembered. A client's ACK is about 150-200 bytes; one padded up to the
    /// frame cap (white space, extra keys) is parsed every time instead of pinning that much
    /// memory on its connection.
    public static let maximumBytes = 512

    /// The validated frame. Allocated once per instance, never written after `init`.
    private let frame: UnsafeMutableRawBufferPointer
    /// Where `msg_data.msg_id`'s 36 characters are.
    private let dataIDOffset: Int
    /// Where the head `msg_id`'s 36 characters are when it is a GUID (the existing client sends
    /// all zeros there, relay-load none), else -1: its bytes are then compared as the rest.
    private let headIDOffset: Int
    /// The frame's envelope: a repeat's is this one with the repeat's ids.
    public let remembered: Envelope

    init?(frame bytes: UnsafeRawBufferPointer, envelope: Envelope, dataIDOffset: Int, headIDOffset: Int?) {
        guard envelope.verb == .ack, !bytes.isEmpty else { return nil }
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
        copy.copyMemory(from: bytes)
        frame = copy
        self.dataIDOffset = dataIDOffset
        self.headIDOffset = headIDOffset ?? -1
        remembered = envelope
    }

    deinit {
        frame.deallocate()
    }

    /// The envelope of `bytes` when they repeat this ACK but for its ids, as `MessageReader.read`
    /// would give it; nil when they do not (or when its ids would need the reader's judgement:
    /// not canonical, or no non-zero id at all): parse them then.
    public func envelope(of bytes: UnsafeRawBufferPointer) -> Envelope? {
        guard let ids = ids(of: bytes) else { return nil }
        var repeated = remembered
        repeated.messageID = ids.messageID
        repeated.headMessageID = ids.headMessageID
        return repeated
    }

    /// `envelope(of:)`'s message id alone, without a copy of the envelope (which is the
    /// remembered one's in everything else): what handling an ACK needs.
    @inline(__always)
    public func messageID(of bytes: UnsafeRawBufferPointer) -> GUID? {
        ids(of: bytes)?.messageID
    }

    private func ids(of bytes: UnsafeRawBufferPointer) -> (messageID: GUID, headMessageID: GUID?)? {
        guard bytes.count == frame.count, let base = bytes.baseAddress else { return nil }
        let template = UnsafeRawPointer(frame.baseAddress!)
        // The stretches around the one or two id fields, in order.
        var first = dataIDOffset
        var second = headIDOffset
        if second >= 0 && second < first { swap(&first, &second) }
        guard memcmp(base, template, first) == 0 else { return nil }
        var from = first + 36
        if second >= 0 {
            guard memcmp(base + from, template + from, second - from) == 0 else { return nil }
            from = second + 36
        }
        guard memcmp(base + from, template + from, bytes.count - from) == 0 else { return nil }

        guard let dataID = GUID(canonical: UnsafeRawBufferPointer(start: base + dataIDOffset, count: 36)) else { return nil }
        // Without a head id field its bytes are the template's, and so is what the reader made of them.
        var headMessageID = remembered.headMessageID
        if headIDOffset >= 0 {
            guard let headID = GUID(canonical: UnsafeRawBufferPointer(start: base + headIDOffset, count: 36)) else { return nil }
            headMessageID = headID.isZero ? nil : headID
        }
        // As the reader takes them: `msg_data.msg_id` unless it is all zeros, then the head's.
        guard let messageID = dataID.isZero ? headMessageID : dataID else { return nil }
        return (messageID, headMessageID)
    }
}

extension MessageReader {
    /// An ACK that `read` just returned `envelope` for, kept for `RepeatedAck.envelope(of:)`;
    /// nil for other verbs, or when an id field is not a plain 36-character string (an escape in
    /// it, say), which a byte compare cannot stand for.
    public func repeatedAck(_ bytes: UnsafeRawBufferPointer, _ envelope: Envelope) -> RepeatedAck? {
        guard envelope.verb == .ack, bytes.count <= RepeatedAck.maximumBytes, let data = onlyMember("msg_data", in: 0, bytes), tape[data].kind == .object,
            let dataID = plainGUID(onlyMember("msg_id", in: data, bytes), bytes)
        else { return nil }
        var headID: Int?
        if let head = onlyMember("msg_id", in: 0, bytes) {
            headID = plainGUID(head, bytes)
        }
        return RepeatedAck(frame: bytes, envelope: envelope, dataIDOffset: dataID, headIDOffset: headID)
    }

    /// `key`'s value in `object` when the key is there once: with a repeated key, which value the
    /// reader took is a rule this type would have to repeat; such a frame is parsed every time.
    func onlyMember(_ key: StaticString, in object: Int, _ bytes: UnsafeRawBufferPointer) -> Int? {
        var found: Int?
        var count = 0
        tape.forEachMember(of: object) { keyToken, value in
            let token = tape[keyToken]
            if !token.escaped && JSONTape.equals(key, bytes, Int(token.start), Int(token.end)) {
                found = value
                count += 1
            }
        }
        return count == 1 ? found : nil
    }

    /// Where the 36 characters of a string token start, when it is a canonical GUID without escapes.
    func plainGUID(_ token: Int?, _ bytes: UnsafeRawBufferPointer) -> Int? {
        guard let token else { return nil }
        let value = tape[token]
        guard value.kind == .string, !value.escaped, value.end - value.start == 36,
            GUID(canonical: UnsafeRawBufferPointer(rebasing: bytes[Int(value.start)..<Int(value.end)])) != nil
        else { return nil }
        return Int(value.start)
    }
}
