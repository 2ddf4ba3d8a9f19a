#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A validating JSON parser that records where each value is instead of building a tree.
///
/// One pass over the bytes fills `tokens`: every value is one token holding its byte range and the
/// index of the token after it, so an object's members can be walked and skipped without
/// allocating. The token storage is reused from frame to frame.
public struct JSONTape: Sendable {
    public enum Kind: UInt8, Sendable {
        case object, array, string, number, `true`, `false`, null
    }

    public struct Token: Sendable {
        public var kind: Kind
        /// Strings only: the content holds a backslash escape.
        public var escaped: Bool
        /// Strings: the content between the quotes. Containers and scalars: the whole value.
        public var start: Int32
        public var end: Int32
        /// The index of the first token after this value (and after its members).
        public var next: Int32
    }

    /// Token memory, reused from frame to frame and grown when a frame needs more. Copies of a
    /// tape share it: read a copy before the next `parse`.
    private let storage = TokenStorage()
    /// `storage.base` as of the last parse (the storage moves only when a parse grows it): a
    /// token read is one load, not two. Shared like the storage it points into (see above).
    nonisolated(unsafe) private var base: UnsafeMutablePointer<Token>
    /// Tokens of the last parse.
    public private(set) var count = 0

    /// The tokens as an array (for tests and diagnostics; the relay reads them in place).
    public var tokens: [Token] { Array(UnsafeBufferPointer(start: base, count: count)) }
    /// The text has no white space outside strings and no byte above 0x7F: it may be copied to the
    /// wire as it is.
    public private(set) var isCompactASCII = true

    public static let maxDepth = 64

    public init() {
        base = storage.base
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case unexpected(offset: Int)
        case truncated
        case tooDeep
        case invalidUTF8(offset: Int)
        case trailingBytes(offset: Int)
        /// Token positions are 32-bit: a text of 2 GiB or more is refused whole.
        case tooLong(bytes: Int)

        public var description: String {
            switch self {
            case .unexpected(let offset): return "invalid JSON at byte \(offset)"
            case .truncated: return "JSON ends early"
            case .tooDeep: return "JSON nested deeper than \(JSONTape.maxDepth)"
            case .invalidUTF8(let offset): return "invalid UTF-8 at byte \(offset)"
            case .trailingBytes(let offset): return "bytes after the JSON value at byte \(offset)"
            case .tooLong(let bytes): return "JSON of \(bytes) bytes is too long to index"
            }
        }
    }

    /// Parses one JSON value spanning all of `bytes` (white space around it allowed).
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) throws(ParseError) {
        guard bytes.count < Int(Int32.max) else {
            count = 0
            throw .tooLong(bytes: bytes.count)
        }
        var parser = Parser(bytes: bytes, storage: .passUnretained(storage), base: storage.base, capacity: storage.capacity)
        defer {
            base = storage.base
            count = parser.count
            isCompactASCII = parser.compact
        }
        try parser.run()
    }

    /// Makes the tape `count` tokens that `fill` writes, as if a parse had made them: a frame read
    /// from a remembered one (`RepeatedMessage`) instead of parsed. `fill` must write a tape that
    /// `parse` would have made of the frame.
    mutating func replay(count: Int, isCompactASCII: Bool, _ fill: (UnsafeMutablePointer<Token>) -> Void) {
        while storage.capacity < count { storage.grow() }
        base = storage.base
        fill(base)
        self.count = count
        self.isCompactASCII = isCompactASCII
    }

    // MARK: Reading

    /// The tokens of the last parse as a plain pointer and count, without the storage's reference:
    /// copied without reference counting, where a copy of the tape retains its storage (the field
    /// reader and the frame writer each held one: an atomic retain and release per frame). Valid,
    /// as any copy of the tape, until the tape parses again.
    @inline(__always)
    public var view: View { View(base: base, count: count, isCompactASCII: isCompactASCII) }

    @inline(__always)
    public subscript(index: Int) -> Token { view[index] }

    /// See `View.member(_:in:of:)`.
    @inline(__always)
    public func member(_ key: StaticString, in object: Int, of bytes: UnsafeRawBufferPointer) -> Int? {
        view.member(key, in: object, of: bytes)
    }

    @inline(__always)
    public func forEachMember<E: Error>(of object: Int, _ body: (Int, Int) throws(E) -> Void) throws(E) {
        try view.forEachMember(of: object, body)
    }

    @inline(__always)
    public func forEachElement<E: Error>(of array: Int, _ body: (Int) throws(E) -> Void) throws(E) {
        try view.forEachElement(of: array, body)
    }

    public func count(of container: Int) -> Int { view.count(of: container) }

    @inline(__always)
    public static func equals(_ key: StaticString, _ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Bool {
        View.equals(key, bytes, start, end)
    }

    public func rawString(_ index: Int, of bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer { view.rawString(index, of: bytes) }

    public func string(_ index: Int, of bytes: UnsafeRawBufferPointer) -> String { view.string(index, of: bytes) }

    public func integer(_ index: Int, of bytes: UnsafeRawBufferPointer) -> Int? { view.integer(index, of: bytes) }

    /// A tape's tokens read in place (`JSONTape.view`). Every reader of a frame's tape on the hot
    /// path takes one of these.
    public struct View: @unchecked Sendable {
        let base: UnsafeMutablePointer<Token>
        /// Tokens of the parse.
        public let count: Int
        /// See `JSONTape.isCompactASCII`.
        public let isCompactASCII: Bool

        @inline(__always)
        init(base: UnsafeMutablePointer<Token>, count: Int, isCompactASCII: Bool) {
            self.base = base
            self.count = count
            self.isCompactASCII = isCompactASCII
        }

        @inline(__always)
        public subscript(index: Int) -> Token {
            precondition(UInt(bitPattern: index) < UInt(bitPattern: count), "token index out of range")
            return base[index]
        }

        /// The value of `key` in the object at `object`, or nil. Keys are compared as raw bytes; a key
        /// written with escapes never matches (protocol keys are plain lower-case ASCII).
        ///
        /// A key given twice: the last one counts, as in `MessageReader`'s one-pass reading of the
        /// head and `msg_data` and in most JSON readers (the clients'). With the first one here, a
        /// frame validated on one value was routed on another (found by Fuzz/fuzz-message-reader).
        public func member(_ key: StaticString, in object: Int, of bytes: UnsafeRawBufferPointer) -> Int? {
            guard object >= 0, object < count, self[object].kind == .object else { return nil }
            let end = Int(self[object].next)
            var index = object + 1
            var found: Int?
            while index < end {
                let keyToken = self[index]
                if !keyToken.escaped && Self.equals(key, bytes, Int(keyToken.start), Int(keyToken.end)) {
                    found = index + 1
                }
                index = Int(self[index + 1].next)
            }
            return found
        }

        /// Calls `body` with (key token index, value token index) for every member of an object.
        @inline(__always)
        public func forEachMember<E: Error>(of object: Int, _ body: (Int, Int) throws(E) -> Void) throws(E) {
            let end = Int(self[object].next)
            var index = object + 1
            while index < end {
                try body(index, index + 1)
                index = Int(self[index + 1].next)
            }
        }

        /// Calls `body` with the token index of every element of an array.
        @inline(__always)
        public func forEachElement<E: Error>(of array: Int, _ body: (Int) throws(E) -> Void) throws(E) {
            let end = Int(self[array].next)
            var index = array + 1
            while index < end {
                try body(index)
                index = Int(self[index].next)
            }
        }

        public func count(of container: Int) -> Int {
            var count = 0
            if self[container].kind == .object {
                forEachMember(of: container) { _, _ in count += 1 }
            } else {
                forEachElement(of: container) { _ in count += 1 }
            }
            return count
        }

        /// Whether `bytes[start..<end]` is `key`. With a literal key, inlined, the compiler turns the
        /// `memcmp` of a constant length into a few word compares (the byte loop it replaces cost about
        /// 5 instructions a byte on every key of every frame).
        @inline(__always)
        public static func equals(_ key: StaticString, _ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Bool {
            let length = key.utf8CodeUnitCount
            guard end - start == length else { return false }
            guard length > 0 else { return true }
            return memcmp(key.utf8Start, bytes.baseAddress! + start, length) == 0
        }

        /// The raw bytes of a string's content (escapes not decoded).
        public func rawString(_ index: Int, of bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
            let token = self[index]
            return UnsafeRawBufferPointer(rebasing: bytes[Int(token.start)..<Int(token.end)])
        }

        /// The decoded content of a string token.
        public func string(_ index: Int, of bytes: UnsafeRawBufferPointer) -> String {
            let token = self[index]
            let raw = rawString(index, of: bytes)
            if !token.escaped { return String(decoding: raw, as: UTF8.self) }
            return JSONTape.unescape(raw)
        }

        /// An integer token's value (nil for fractions, exponents or out-of-range numbers).
        public func integer(_ index: Int, of bytes: UnsafeRawBufferPointer) -> Int? {
            let token = self[index]
            guard token.kind == .number else { return nil }
            var value = 0
            var position = Int(token.start)
            let end = Int(token.end)
            var negative = false
            if bytes[position] == UInt8(ascii: "-") {
                negative = true
                position += 1
            }
            guard end - position <= 18 else { return nil }
            while position < end {
                let byte = bytes[position]
                guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                position += 1
            }
            return negative ? -value : value
        }
    }

    static func unescape(_ raw: UnsafeRawBufferPointer) -> String {
        var scalars = String.UnicodeScalarView()
        var utf8: [UInt8] = []
        var index = 0
        func flushUTF8() {
            if !utf8.isEmpty {
                scalars.append(contentsOf: String(decoding: utf8, as: UTF8.self).unicodeScalars)
                utf8.removeAll(keepingCapacity: true)
            }
        }
        func hex4(_ at: Int) -> UInt32 {
            var value: UInt32 = 0
            for offset in 0..<4 { value = value << 4 | UInt32(GUID.hexValue(raw[at + offset]) ?? 0) }
            return value
        }
        while index < raw.count {
            let byte = raw[index]
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                index += 1
                continue
            }
            flushUTF8()
            let escape = raw[index + 1]
            index += 2
            switch escape {
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "u"):
                var code = hex4(index)
                index += 4
                if (0xD800..<0xDC00).contains(code), index + 6 <= raw.count, raw[index] == UInt8(ascii: "\\"),
                    raw[index + 1] == UInt8(ascii: "u")
                {
                    let low = hex4(index + 2)
                    if (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        index += 6
                    }
                }
                scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
            default: scalars.append(Unicode.Scalar(escape))
            }
        }
        flushUTF8()
        return String(scalars)
    }
}

private struct Parser {
    /// Positions fit in the tokens' 32 bits (`JSONTape.parse` refuses longer texts), so they are
    /// stored, and advanced, without a range or overflow check each.
    /// The text, as a pointer that is never nil (an empty text points at a static byte it never
    /// reads) and its length: every byte read and bound check is then one instruction, where the
    /// buffer pointer's optional base cost a nil test at each (about a tenth of the parse).
    let bytes: UnsafePointer<UInt8>
    let length: Int
    var position = 0
    /// The tape's, which holds it for the whole parse: not retained again per frame (an init's
    /// class argument is retained for it, even into an `unowned(unsafe)` property).
    let storage: Unmanaged<TokenStorage>
    var base: UnsafeMutablePointer<JSONTape.Token>
    var capacity: Int
    var count = 0
    var compact = true

    init(bytes: UnsafeRawBufferPointer, storage: Unmanaged<TokenStorage>, base: UnsafeMutablePointer<JSONTape.Token>, capacity: Int) {
        self.bytes = bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? Parser.emptyText
        self.length = bytes.count
        self.storage = storage
        self.base = base
        self.capacity = capacity
    }

    @inline(__always)
    mutating func append(_ token: JSONTape.Token) {
        if count == capacity {
            let storage = storage.takeUnretainedValue()
            storage.grow()
            base = storage.base
            capacity = storage.capacity
        }
        (base + count).initialize(to: token)
        count &+= 1
    }

    /// One byte, allocated once, never read or written: what an empty text points at.
    nonisolated(unsafe) private static let emptyText = UnsafePointer<UInt8>(UnsafeMutablePointer<UInt8>.allocate(capacity: 1))

    mutating func run() throws(JSONTape.ParseError) {
        skipWhitespace()
        try value(depth: 0)
        skipWhitespace()
        if position != length { throw .trailingBytes(offset: position) }
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while position < length {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09:
                compact = false
                position &+= 1
            default:
                return
            }
        }
    }

    mutating func value(depth: Int) throws(JSONTape.ParseError) {
        guard position < length else { throw .truncated }
        switch bytes[position] {
        case UInt8(ascii: "{"): try object(depth: depth + 1)
        case UInt8(ascii: "["): try array(depth: depth + 1)
        case UInt8(ascii: "\""): try string()
        case UInt8(ascii: "t"): try literal("true", .true)
        case UInt8(ascii: "f"): try literal("false", .false)
        case UInt8(ascii: "n"): try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
        default: throw .unexpected(offset: position)
        }
    }

    mutating func object(depth: Int) throws(JSONTape.ParseError) {
        guard depth <= JSONTape.maxDepth else { throw .tooDeep }
        let index = count
        append(.init(kind: .object, escaped: false, start: Int32(truncatingIfNeeded: position), end: 0, next: 0))
        position &+= 1
        skipWhitespace()
        guard position < length else { throw .truncated }
        if bytes[position] != UInt8(ascii: "}") {
            // One string scan for keys and for the values that are strings (most of them): the
            // scan is inlined at one place (at two, the compiler called it for the values).
            var atKey = true
            while true {
                guard position < length else { throw .truncated }
                guard bytes[position] == UInt8(ascii: "\"") else { throw .unexpected(offset: position) }
                try string()
                if atKey {
                    skipWhitespace()
                    guard position < length else { throw .truncated }
                    guard bytes[position] == UInt8(ascii: ":") else { throw .unexpected(offset: position) }
                    position &+= 1
                    skipWhitespace()
                    if position < length && bytes[position] == UInt8(ascii: "\"") {
                        atKey = false
                        continue
                    }
                    try value(depth: depth)
                }
                atKey = true
                skipWhitespace()
                guard position < length else { throw .truncated }
                if bytes[position] == UInt8(ascii: ",") {
                    position &+= 1
                    skipWhitespace()
                    continue
                }
                guard bytes[position] == UInt8(ascii: "}") else { throw .unexpected(offset: position) }
                break
            }
        }
        position &+= 1
        base[index].end = Int32(truncatingIfNeeded: position)
        base[index].next = Int32(truncatingIfNeeded: count)
    }

    mutating func array(depth: Int) throws(JSONTape.ParseError) {
        guard depth <= JSONTape.maxDepth else { throw .tooDeep }
        let index = count
        append(.init(kind: .array, escaped: false, start: Int32(truncatingIfNeeded: position), end: 0, next: 0))
        position &+= 1
        skipWhitespace()
        guard position < length else { throw .truncated }
        if bytes[position] != UInt8(ascii: "]") {
            while true {
                try value(depth: depth)
                skipWhitespace()
                guard position < length else { throw .truncated }
                if bytes[position] == UInt8(ascii: ",") {
                    position &+= 1
                    skipWhitespace()
                    continue
                }
                guard bytes[position] == UInt8(ascii: "]") else { throw .unexpected(offset: position) }
                break
            }
        }
        position &+= 1
        base[index].end = Int32(truncatingIfNeeded: position)
        base[index].next = Int32(truncatingIfNeeded: count)
    }

    /// Inlined where it is called: a call per string (nearly half the tokens) cost its
    /// prologue and the scan's constants each time (callgrind: 315 instructions a message).
    @inline(__always)
    mutating func string() throws(JSONTape.ParseError) {
        position &+= 1
        let start = position
        var escaped = false
        while true {
            // Sixteen bytes at a time (SSE2 or NEON), then eight (the last bytes of the text), up
            // to the first quote, backslash, control or non-ASCII byte; on locals: with
            // `self.position` the loop stored it at every step.
            let text = UnsafeRawPointer(bytes)
            let end = length
            position = StringScan.firstStop(text, from: position, to: end).at
            guard position < length else { throw .truncated }
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") {
                escaped = true
                guard position + 1 < length else { throw .truncated }
                switch bytes[position + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                    UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    position &+= 2
                case UInt8(ascii: "u"):
                    guard position + 6 <= length else { throw .truncated }
                    for offset in 2..<6 where GUID.hexValue(bytes[position + offset]) == nil {
                        throw .unexpected(offset: position + offset)
                    }
                    position &+= 6
                default:
                    throw .unexpected(offset: position + 1)
                }
                continue
            }
            if byte < 0x20 { throw .unexpected(offset: position) }
            if byte >= 0x80 {
                compact = false
                try multiByteScalar()
                continue
            }
            position &+= 1
        }
        append(.init(kind: .string, escaped: escaped, start: Int32(truncatingIfNeeded: start), end: Int32(truncatingIfNeeded: position), next: Int32(truncatingIfNeeded: count + 1)))
        position &+= 1
    }

    /// Checks one UTF-8 sequence of two to four bytes (no overlongs, no surrogates).
    mutating func multiByteScalar() throws(JSONTape.ParseError) {
        let lead = bytes[position]
        let size: Int
        var lowest: UInt8 = 0x80
        var highest: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: size = 2
        case 0xE0: size = 3; lowest = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: size = 3
        case 0xED: size = 3; highest = 0x9F
        case 0xF0: size = 4; lowest = 0x90
        case 0xF1...0xF3: size = 4
        case 0xF4: size = 4; highest = 0x8F
        default: throw .invalidUTF8(offset: position)
        }
        guard position + size <= length else { throw .invalidUTF8(offset: position) }
        let second = bytes[position + 1]
        guard second >= lowest && second <= highest else { throw .invalidUTF8(offset: position) }
        for offset in 2..<size where bytes[position + offset] & 0xC0 != 0x80 {
            throw .invalidUTF8(offset: position + offset)
        }
        position &+= size
    }

    /// Inlined: with the literal known, its compare is one or two word compares, not a `memcmp` call.
    @inline(__always)
    mutating func literal(_ text: StaticString, _ kind: JSONTape.Kind) throws(JSONTape.ParseError) {
        let size = text.utf8CodeUnitCount
        guard position + size <= length else { throw .truncated }
        guard JSONTape.equals(text, UnsafeRawBufferPointer(start: bytes, count: length), position, position + size) else { throw .unexpected(offset: position) }
        append(.init(kind: kind, escaped: false, start: Int32(truncatingIfNeeded: position), end: Int32(truncatingIfNeeded: position + size), next: Int32(truncatingIfNeeded: count + 1)))
        position &+= size
    }

    mutating func number() throws(JSONTape.ParseError) {
        let start = position
        if bytes[position] == UInt8(ascii: "-") { position &+= 1 }
        guard position < length else { throw .truncated }
        if bytes[position] == UInt8(ascii: "0") {
            position &+= 1
        } else {
            try requireDigits()
        }
        if position < length && bytes[position] == UInt8(ascii: ".") {
            position &+= 1
            try requireDigits()
        }
        if position < length && (bytes[position] | 0x20) == UInt8(ascii: "e") {
            position &+= 1
            if position < length && (bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-")) {
                position &+= 1
            }
            try requireDigits()
        }
        append(.init(kind: .number, escaped: false, start: Int32(truncatingIfNeeded: start), end: Int32(truncatingIfNeeded: position), next: Int32(truncatingIfNeeded: count + 1)))
    }

    /// At least one digit. A number cut off after `.`, `e` or its sign is `truncated`: an
    /// `unexpected` offset must name a byte of the input (it was one past the end; found by
    /// Fuzz/fuzz-json-tape).
    @inline(__always)
    mutating func requireDigits() throws(JSONTape.ParseError) {
        guard digits() > 0 else { throw position == length ? .truncated : .unexpected(offset: position) }
    }

    @inline(__always)
    mutating func digits() -> Int {
        let start = position
        while position < length, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
            position &+= 1
        }
        return position - start
    }
}


/// The scan for the end of a JSON string's plain run: the parser's, and `RepeatedMessage`'s for
/// the strings it reads without a parse.
enum StringScan {
    /// The offset of the first quote, backslash, control or non-ASCII byte at or after `start`,
    /// sixteen bytes at a time, and true; or, when the text ends first, the offset of its last
    /// stretch of under 16 bytes, and false (the word loop reads that). Signed, a byte below 0x20
    /// is a control or (negative) non-ASCII, so three compares cover the four cases: 17
    /// instructions per 16 bytes, where the word loop takes 32 (callgrind).
    @inline(__always)
    static func scanBlocks(_ text: UnsafeRawPointer, from start: Int, to end: Int) -> (Int, Bool) {
        let quote = SIMD16<Int8>(repeating: 0x22)
        let backslash = SIMD16<Int8>(repeating: 0x5C)
        let space = SIMD16<Int8>(repeating: 0x20)
        var at = start
        while at &+ 16 <= end {
            let block = text.loadUnaligned(fromByteOffset: at, as: SIMD16<Int8>.self)
            let attention = (block .== quote) .| (block .== backslash) .| (block .< space)
            // Sixteen lanes of all ones or all zeros, read as two words: the first set byte
            // (the lowest, as the words are read little-endian) is the first stop.
            let lanes = unsafeBitCast(attention, to: SIMD2<UInt64>.self)
            let low = UInt64(littleEndian: lanes[0])
            let high = UInt64(littleEndian: lanes[1])
            if low | high != 0 {
                return (at &+ (low != 0 ? low.trailingZeroBitCount >> 3 : 8 &+ high.trailingZeroBitCount >> 3), true)
            }
            at &+= 16
        }
        return (at, false)
    }

    /// The high bit of every byte that is a quote, a backslash, a control or a non-ASCII byte. Only
    /// the lowest set bit is exact (borrows can mark later bytes), which is all the scan uses.
    @inline(__always)
    static func attentionMask(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        let hasQuote = (quote &- ones) & ~quote
        let hasBackslash = (backslash &- ones) & ~backslash
        let hasControl = (word &- ones &* 0x20) & ~word
        return (hasQuote | hasBackslash | hasControl | word) & highs
    }

    /// `scanBlocks`, then eight bytes at a time: the offset of the first quote, backslash,
    /// control or non-ASCII byte at or after `start` and true; or, when fewer than eight bytes
    /// are left before one, the offset of those last bytes and false (the caller reads them one
    /// by one).
    @inline(__always)
    static func firstStop(_ text: UnsafeRawPointer, from start: Int, to end: Int) -> (at: Int, found: Bool) {
        var (at, found) = scanBlocks(text, from: start, to: end)
        while !found && at &+ 8 <= end {
            let word = UInt64(littleEndian: text.loadUnaligned(fromByteOffset: at, as: UInt64.self))
            let attention = attentionMask(word)
            if attention == 0 {
                at &+= 8
                continue
            }
            at &+= attention.trailingZeroBitCount >> 3
            found = true
        }
        return (at, found)
    }

    /// Where the string whose content starts at `start` ends (the offset of its closing quote)
    /// when every byte before that quote is printable ASCII other than a backslash; nil when a
    /// backslash, control or non-ASCII byte comes first, or the text ends first.
    @inline(__always)
    static func plainRunEnd(_ text: UnsafeRawPointer, from start: Int, to end: Int) -> Int? {
        var (at, found) = firstStop(text, from: start, to: end)
        while !found && at < end {
            let byte = text.load(fromByteOffset: at, as: UInt8.self)
            if byte == 0x22 || byte == 0x5C || byte < 0x20 || byte >= 0x80 { found = true } else { at &+= 1 }
        }
        guard found, text.load(fromByteOffset: at, as: UInt8.self) == 0x22 else { return nil }
        return at
    }
}

/// The memory of a tape's tokens: allocated once, doubled when a frame has more tokens.
final class TokenStorage: @unchecked Sendable {
    private(set) var base: UnsafeMutablePointer<JSONTape.Token>
    private(set) var capacity: Int

    init(capacity: Int = 256) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    func grow() {
        let larger = UnsafeMutablePointer<JSONTape.Token>.allocate(capacity: capacity * 2)
        larger.moveInitialize(from: base, count: capacity)
        base.deallocate()
        base = larger
        capacity *= 2
    }

    deinit {
        base.deallocate()
    }
}
