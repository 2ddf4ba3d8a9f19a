#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A MESSAGE a connection sent, kept so that the next ones can be read without parsing them again.
///
/// A client writes the messages of one conversation from one template: the same keys in the same
/// order, its own node id, the same recipients and channel; only the message's id, its timestamp
/// and its text change (the existing C# client's chat frames and relay-load's MESSAGEs both do;
/// CLIENT-FRAMES.md). Those string values are the frame's holes; the bytes between them are its
/// constant stretches. A frame that has the remembered frame's constant stretches, in order, with
/// a canonical GUID in each id hole and a plain run in each text hole (printable ASCII, no
/// backslash, up to the closing quote that starts the next stretch) is the same JSON with the
/// same structure: its tokens are the remembered ones, moved by what the holes grew or shrank;
/// its validation and its envelope are the remembered ones, but for the ids. Any other frame is
/// parsed as usual (and may become the next remembered one).
///
/// Made by `MessageReader.repeatedMessage(_:_:)` right after the full read of a MESSAGE (a
/// labelled chat included) after the handshake. Owned by the connection it came from (one per
/// connection, on its event loop: its miss count and its envelope's ids change there only, hence
/// `@unchecked Sendable`); dropped when the connection goes quiet.
public final class RepeatedMessage: @unchecked Sendable {
    /// The most constant bytes remembered: a chat frame's are 300-500 (the text is a hole, not
    /// kept). A frame with more (many recipients, attachments) is parsed every time instead of
    /// pinning that much memory on its connection (at most about 3 KiB with these two limits).
    public static let maximumConstantBytes = 1024
    /// The most tokens remembered (a chat frame has 25-35; each further recipient adds 3).
    public static let maximumTokens = 64

    enum HoleKind: UInt8 {
        /// `msg_data.msg_id`: 36 characters, a canonical GUID.
        case dataID
        /// The head `msg_id`: 36 characters, a canonical GUID.
        case headID
        /// `msg_data.timestamp` or `msg_data.message`: any plain run.
        case text
    }

    struct Hole {
        var kind: HoleKind
        /// The string token the hole is the content of.
        var token: Int32
        /// Where its content ended in the remembered frame.
        var rememberedEnd: Int32
        /// The constant stretch before it, in `constant`.
        var stretchStart: Int32
        var stretchLength: Int32
    }

    /// One allocation holds all of it: `tokens`, `segments`, `holes`, `constant`.
    private let memory: UnsafeMutableRawPointer
    /// The remembered frame's tape.
    private let tokens: UnsafeMutablePointer<JSONTape.Token>
    private let tokenCount: Int
    /// Per token, two bytes: how many holes end at or before its start, and at or before its end
    /// (which of the shifts below moves each).
    private let segments: UnsafeMutablePointer<UInt8>
    private let holes: UnsafeMutablePointer<Hole>
    private let holeCount: Int
    /// The constant stretches, one after the other.
    private let constant: UnsafeMutableRawPointer
    /// The stretch after the last hole, in `constant`.
    private let lastStretchStart: Int
    private let lastStretchLength: Int
    private let hasHeadIDHole: Bool
    /// MESSAGEs read in full in a row since the last repeat (`noteMiss`).
    private var misses = 0
    /// The frame's envelope, in memory of its own: a repeat's is this one with the repeat's ids,
    /// written into it and lent in place (`read`). A copy per repeat (328 bytes, made, moved
    /// twice and destroyed) cost about 470 instructions (Benchmarks/instructions.sh).
    private let envelope: UnsafeMutablePointer<Envelope>
    /// The envelope of the last frame read: the remembered one or its last repeat's.
    public var remembered: Envelope { envelope.pointee }

    /// nil when the holes cannot stand for the frame (see `MessageReader.repeatedMessage`).
    init?(frame bytes: UnsafeRawBufferPointer, tape: JSONTape.View, envelope: Envelope, holes found: [(kind: HoleKind, token: Int)]) {
        guard envelope.verb == .message, tape.isCompactASCII, tape.count <= Self.maximumTokens, let frameBase = bytes.baseAddress,
            found.contains(where: { $0.kind == .dataID })
        else { return nil }
        let sorted = found.sorted { tape[$0.token].start < tape[$1.token].start }
        var holeBytes = 0
        for hole in sorted { holeBytes += Int(tape[hole.token].end - tape[hole.token].start) }
        let constantBytes = bytes.count - holeBytes
        guard constantBytes <= Self.maximumConstantBytes else { return nil }

        let tokensSize = tape.count * MemoryLayout<JSONTape.Token>.stride
        let holesOffset = (tokensSize + 2 * tape.count + 7) & ~7
        let constantOffset = holesOffset + sorted.count * MemoryLayout<Hole>.stride
        memory = .allocate(byteCount: constantOffset + constantBytes, alignment: 16)
        tokens = memory.bindMemory(to: JSONTape.Token.self, capacity: tape.count)
        segments = (memory + tokensSize).bindMemory(to: UInt8.self, capacity: 2 * tape.count)
        holes = (memory + holesOffset).bindMemory(to: Hole.self, capacity: sorted.count)
        constant = memory + constantOffset
        tokenCount = tape.count
        holeCount = sorted.count

        var from = 0
        var written = 0
        for (index, hole) in sorted.enumerated() {
            let token = tape[hole.token]
            let length = Int(token.start) - from
            constant.advanced(by: written).copyMemory(from: frameBase + from, byteCount: length)
            (holes + index).initialize(to: Hole(kind: hole.kind, token: Int32(hole.token), rememberedEnd: token.end, stretchStart: Int32(written), stretchLength: Int32(length)))
            written += length
            from = Int(token.end)
        }
        lastStretchStart = written
        lastStretchLength = bytes.count - from
        constant.advanced(by: written).copyMemory(from: frameBase + from, byteCount: lastStretchLength)

        for index in 0..<tape.count {
            let token = tape[index]
            var startSegment: UInt8 = 0
            var endSegment: UInt8 = 0
            for hole in UnsafeBufferPointer(start: holes, count: holeCount) {
                // Not its own hole: an empty hole ends where it starts, and its token's start
                // moves with the holes before it only.
                if hole.rememberedEnd <= token.start && Int(hole.token) != index { startSegment += 1 }
                if hole.rememberedEnd <= token.end { endSegment += 1 }
            }
            (tokens + index).initialize(to: token)
            segments[2 * index] = startSegment
            segments[2 * index + 1] = endSegment
        }
        hasHeadIDHole = sorted.contains { $0.kind == .headID }
        self.envelope = .allocate(capacity: 1)
        self.envelope.initialize(to: envelope)
    }

    deinit {
        envelope.deinitialize(count: 1)
        envelope.deallocate()
        memory.deallocate()
    }

    /// Reads `bytes` when they repeat this MESSAGE but for its holes: true, with `tape` made what
    /// their parse would make and the envelope (`withEnvelope`) what `MessageReader.read` would
    /// give; false (and nothing changed) when they do not, or when their ids would need the
    /// reader's judgement (not canonical, or no non-zero id at all): parse them then.
    public func read(_ bytes: UnsafeRawBufferPointer, into tape: inout JSONTape) -> Bool {
        // Token positions are 32-bit: the parser refuses a text of 2 GiB or more (`tooLong`),
        // and so does a repeat (its offsets would wrap).
        guard let base = bytes.baseAddress, bytes.count < Int(Int32.max) else { return false }
        let count = bytes.count
        // shifts[k]: how far the bytes after the k-th hole moved (shifts[0] = 0).
        var shifts = SIMD8<Int32>()
        var moved = false
        var dataID = GUID.zero
        var headID = GUID.zero
        var position = 0
        for index in 0..<holeCount {
            let hole = holes[index]
            let length = Int(hole.stretchLength)
            guard count - position >= length, memcmp(base + position, constant + Int(hole.stretchStart), length) == 0 else { return false }
            position += length
            switch hole.kind {
            case .dataID, .headID:
                // The closing quote is the next stretch's first byte.
                guard count - position >= 36, let id = GUID(canonical: UnsafeRawBufferPointer(start: base + position, count: 36)) else { return false }
                if hole.kind == .dataID { dataID = id } else { headID = id }
                position += 36
            case .text:
                guard let end = StringScan.plainRunEnd(base, from: position, to: count) else { return false }
                position = end
            }
            let shift = Int32(truncatingIfNeeded: position) &- hole.rememberedEnd
            shifts[index &+ 1] = shift
            moved = moved || shift != 0
        }
        guard count - position == lastStretchLength, memcmp(base + position, constant + lastStretchStart, lastStretchLength) == 0 else { return false }

        // As the reader takes them: a zero head id is none; `msg_data.msg_id` unless it is all
        // zeros, then the head's; a MESSAGE without either is refused by the reader.
        let headMessageID = hasHeadIDHole ? (headID.isZero ? nil : headID) : envelope.pointee.headMessageID
        guard let messageID = dataID.isZero ? headMessageID : dataID else { return false }

        tape.replay(count: tokenCount, isCompactASCII: true) { out in
            guard moved else {
                out.initialize(from: tokens, count: tokenCount)
                return
            }
            for index in 0..<tokenCount {
                var token = tokens[index]
                token.start &+= shifts[Int(segments[2 &* index])]
                token.end &+= shifts[Int(segments[2 &* index &+ 1])]
                (out + index).initialize(to: token)
            }
        }
        envelope.pointee.headMessageID = headMessageID
        envelope.pointee.messageID = messageID
        misses = 0
        return true
    }

    /// Counts a MESSAGE of its connection that had to be parsed; true once two in a row did, when
    /// the connection has most likely moved on to another layout (another recipient, another
    /// channel) and the parsed one should be remembered instead. A client that alternates between
    /// two conversations keeps the one remembered: making one costs more than a parse.
    public func noteMiss() -> Bool {
        misses += 1
        return misses >= 2
    }

    /// `body` with the envelope of the last frame read (the remembered one or its last repeat),
    /// lent in place. `body` must not read a frame with this instance.
    @inline(__always)
    public func withEnvelope<Result>(_ body: (Envelope) -> Result) -> Result {
        body(envelope.pointee)
    }

    /// The envelope of `bytes` read as a repeat, copied; nil when `read` says false (for tests
    /// and checks).
    public func envelope(of bytes: UnsafeRawBufferPointer, into tape: inout JSONTape) -> Envelope? {
        read(bytes, into: &tape) ? envelope.pointee : nil
    }
}

extension MessageReader {
    /// A MESSAGE that `read` just returned `envelope` for (after the handshake), kept for
    /// `RepeatedMessage.envelope(of:into:)`; nil for other verbs, for a frame that is not compact
    /// ASCII or too large to keep, or when its `msg_data.msg_id` is not a plain canonical GUID
    /// given once. The head `msg_id`, `msg_data.timestamp` and `msg_data.message` are holes when
    /// given once as strings (the ids without escapes); everything else must repeat byte for byte.
    public func repeatedMessage(_ bytes: UnsafeRawBufferPointer, _ envelope: Envelope) -> RepeatedMessage? {
        guard envelope.verb == .message, tape.isCompactASCII, tape.count <= RepeatedMessage.maximumTokens,
            let data = onlyMember("msg_data", in: 0, bytes), tape[data].kind == .object,
            let dataID = plainGUIDToken(onlyMember("msg_id", in: data, bytes), bytes)
        else { return nil }
        var holes: [(kind: RepeatedMessage.HoleKind, token: Int)] = [(.dataID, dataID)]
        if let headID = plainGUIDToken(onlyMember("msg_id", in: 0, bytes), bytes) {
            holes.append((.headID, headID))
        }
        for key: StaticString in ["timestamp", "message"] {
            if let text = onlyMember(key, in: data, bytes), tape[text].kind == .string {
                // Text with an escape: the next ones from this client most likely have one too,
                // and a repeat reads only plain text; keep the one remembered before.
                guard !tape[text].escaped else { return nil }
                holes.append((.text, text))
            }
        }
        return RepeatedMessage(frame: bytes, tape: tape.view, envelope: envelope, holes: holes)
    }

    /// The string token itself when it is a canonical GUID without escapes.
    private func plainGUIDToken(_ token: Int?, _ bytes: UnsafeRawBufferPointer) -> Int? {
        plainGUID(token, bytes) == nil ? nil : token
    }
}
