/// A 128-bit GUID as used for node ids and message ids, kept as two integers so that it hashes and
/// compares without touching the heap.
public struct GUID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public static let zero = GUID(high: 0, low: 0)

    public var isZero: Bool { high == 0 && low == 0 }

    public static func < (lhs: GUID, rhs: GUID) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }

    /// A random version-4 GUID.
    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> GUID {
        var high = generator.next() as UInt64
        var low = generator.next() as UInt64
        high = (high & ~0xF000) | 0x4000
        low = (low & ~(0xC << 60)) | (0x8 << 60)
        return GUID(high: high, low: low)
    }

    public static func random() -> GUID {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    /// Parses the 36-character canonical form (`8-4-4-4-12` hex digits, any case): all 36 bytes
    /// checked sixteen at a time (`isCanonical`), then eight digits a word, the four-digit groups
    /// read in pairs, each pair as one word.
    @inlinable @inline(__always)
    public init?(canonical bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 36, GUID.isCanonical(bytes) else { return nil }
        let first = GUID.hexWordValue(GUID.word(bytes, at: 0))
        let second = GUID.hexWordValue(GUID.word(bytes, at: 9, and: 14))
        let third = GUID.hexWordValue(GUID.word(bytes, at: 19, and: 24))
        let last = GUID.hexWordValue(GUID.word(bytes, at: 28))
        self.init(high: first << 32 | second, low: third << 32 | last)
    }

    /// Whether the 36 bytes are hex digits (any case) with dashes at 8, 13, 18 and 23: three
    /// overlapping loads of sixteen bytes (SSE2 or NEON), where the word-at-a-time check took
    /// about half of a parse (callgrind: 190 instructions an id).
    @inlinable @inline(__always)
    static func isCanonical(_ bytes: UnsafeRawBufferPointer) -> Bool {
        precondition(bytes.count == 36)
        let text = bytes.baseAddress!
        // The dashes' lanes count as valid in the digit check and are checked on their own.
        // Lanes are read as two little-endian words: lane n is byte n % 8 of word n / 8.
        let first = GUID.hexLanes(text.loadUnaligned(as: SIMD16<UInt8>.self))  // bytes 0-15, dashes at 8 and 13
        let second = GUID.hexLanes(text.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self))  // 16-31: 18 and 23
        let third = GUID.hexLanes(text.loadUnaligned(fromByteOffset: 20, as: SIMD16<UInt8>.self))  // 20-35: 23
        let all = ~UInt64(0)
        let digits =
            (first.0 == all) && (first.1 | 0x0000_FF00_0000_00FF == all)
            && (second.0 | 0xFF00_0000_00FF_0000 == all) && (second.1 == all)
            && (third.0 | 0x0000_0000_FF00_0000 == all) && (third.1 == all)
        let dash = UInt8(ascii: "-")
        return digits && text.load(fromByteOffset: 8, as: UInt8.self) == dash
            && text.load(fromByteOffset: 13, as: UInt8.self) == dash
            && text.load(fromByteOffset: 18, as: UInt8.self) == dash
            && text.load(fromByteOffset: 23, as: UInt8.self) == dash
    }

    /// All ones in each lane that is `0-9`, `a-f` or `A-F`, as two little-endian words. Against
    /// vector constants the compares compile to vector instructions (against scalars, to a loop).
    @inlinable @inline(__always)
    static func hexLanes(_ block: SIMD16<UInt8>) -> (UInt64, UInt64) {
        let digit = (block &- SIMD16<UInt8>(repeating: 0x30)) .< SIMD16<UInt8>(repeating: 10)
        let letter = ((block | SIMD16<UInt8>(repeating: 0x20)) &- SIMD16<UInt8>(repeating: 0x61)) .< SIMD16<UInt8>(repeating: 6)
        let lanes = unsafeBitCast(digit .| letter, to: SIMD2<UInt64>.self)
        return (UInt64(littleEndian: lanes[0]), UInt64(littleEndian: lanes[1]))
    }

    /// Eight ASCII hex digits already checked (first digit in the lowest byte) to their 32-bit value.
    @inlinable @inline(__always)
    static func hexWordValue(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let lower = word | (ones &* 0x20)
        var value = (lower & (ones &* 0x0F)) &+ 9 &* ((lower >> 6) & ones)
        value = ((value << 4) | (value >> 8)) & 0x00FF_00FF_00FF_00FF
        value = ((value << 8) | (value >> 16)) & 0x0000_FFFF_0000_FFFF
        value = ((value << 16) | (value >> 32)) & 0xFFFF_FFFF
        return value
    }

    /// The low half of the GUID whose canonical text is `bytes` (36 bytes), from its last 17
    /// characters alone (`xxxx-xxxxxxxxxxxx` and the dash before them); nil when they are not that.
    /// A reader that knows what the first half must be compares it as text and parses only this.
    @inlinable @inline(__always)
    public static func lowHalf(canonical bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard bytes.count == 36, bytes[18] == UInt8(ascii: "-"), bytes[23] == UInt8(ascii: "-"),
            let third = GUID.hexWord(GUID.word(bytes, at: 19, and: 24)),
            let last = GUID.hexWord(GUID.word(bytes, at: 28))
        else { return nil }
        return third << 32 | last
    }

    /// The value of the 16 hex digits (any case, first digit the most significant) at `offset`;
    /// nil when one is not a hex digit.
    @inlinable @inline(__always)
    public static func hexValue(sixteenDigitsAt offset: Int, in bytes: UnsafeRawBufferPointer) -> UInt64? {
        precondition(offset >= 0 && offset + 16 <= bytes.count)
        guard let high = GUID.hexWord(GUID.word(bytes, at: offset)), let low = GUID.hexWord(GUID.word(bytes, at: offset + 8)) else {
            return nil
        }
        return high << 32 | low
    }

    /// The eight bytes at `offset`, the first in the lowest byte.
    @inlinable @inline(__always)
    static func word(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// The four bytes at `offset` then the four at `next`, as one word.
    @inlinable @inline(__always)
    static func word(_ bytes: UnsafeRawBufferPointer, at offset: Int, and next: Int) -> UInt64 {
        let low = UInt64(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        let high = UInt64(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: next, as: UInt32.self)))
        return low | high << 32
    }

    /// Eight ASCII hex digits (first digit in the lowest byte) to their 32-bit value, in a few
    /// word operations; nil when a byte is not `0-9`, `a-f` or `A-F`.
    @inlinable @inline(__always)
    static func hexWord(_ word: UInt64) -> UInt64? {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        @inline(__always) func between(_ x: UInt64, _ low: UInt64, _ high: UInt64) -> UInt64 {
            // High bit of each byte b with low < b < high (for bytes below 0x80).
            let seven = ones &* 127
            return ((ones &* (127 &+ high)) &- (x & seven)) & ~x & ((x & seven) &+ ones &* (127 &- low)) & highs
        }
        let lower = word | (ones &* 0x20)
        let valid = between(word, 0x2F, 0x3A) | between(lower, 0x60, 0x67)
        guard valid == highs, word & highs == 0 else { return nil }
        return hexWordValue(word)
    }

    public init?(_ string: String) {
        var copy = string
        let parsed = copy.withUTF8 { GUID(canonical: UnsafeRawBufferPointer($0)) }
        guard let parsed else { return nil }
        self = parsed
    }

    @inline(__always)
    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte &- UInt8(ascii: "A") &+ 10
        default: return nil
        }
    }

    /// Writes the lower-case canonical form (36 bytes) to `destination`, eight digits a word.
    @inlinable @inline(__always)
    public func write(to destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count >= 36)
        @inline(__always) func store(_ digits: UInt64, at offset: Int) {
            destination.storeBytes(of: digits.littleEndian, toByteOffset: offset, as: UInt64.self)
        }
        @inline(__always) func store(_ digits: UInt32, at offset: Int) {
            destination.storeBytes(of: digits.littleEndian, toByteOffset: offset, as: UInt32.self)
        }
        let middle = GUID.hexDigits(UInt32(truncatingIfNeeded: high))  // bbbbcccc
        store(GUID.hexDigits(UInt32(truncatingIfNeeded: high >> 32)), at: 0)
        destination[8] = UInt8(ascii: "-")
        store(UInt32(truncatingIfNeeded: middle), at: 9)
        destination[13] = UInt8(ascii: "-")
        store(UInt32(truncatingIfNeeded: middle >> 32), at: 14)
        destination[18] = UInt8(ascii: "-")
        GUID.writeLowHalf(low, to: destination.baseAddress! + 19)
    }

    /// Writes the last 17 characters of the canonical form of a GUID whose low half is `low`
    /// (`xxxx-xxxxxxxxxxxx`, lower case) at `destination`: all a writer of many ids of one sender
    /// needs to write anew per id.
    @inlinable @inline(__always)
    public static func writeLowHalf(_ low: UInt64, to destination: UnsafeMutableRawPointer) {
        let fourth = GUID.hexDigits(UInt32(truncatingIfNeeded: low >> 32))  // ddddeeee
        destination.storeBytes(of: UInt32(truncatingIfNeeded: fourth).littleEndian, toByteOffset: 0, as: UInt32.self)
        destination.storeBytes(of: UInt8(ascii: "-"), toByteOffset: 4, as: UInt8.self)
        destination.storeBytes(of: UInt32(truncatingIfNeeded: fourth >> 32).littleEndian, toByteOffset: 5, as: UInt32.self)
        destination.storeBytes(of: GUID.hexDigits(UInt32(truncatingIfNeeded: low)).littleEndian, toByteOffset: 9, as: UInt64.self)
    }

    /// The eight lower-case hex digits of `value`, most significant first, as the bytes of a
    /// little-endian word (the inverse of `hexWord`), in a few word operations.
    @inlinable @inline(__always)
    public static func hexDigits(_ value: UInt32) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        // One nibble a byte, lowest nibble in the lowest byte ...
        var x = UInt64(value)
        x = (x | x << 16) & 0x0000_FFFF_0000_FFFF
        x = (x | x << 8) & 0x00FF_00FF_00FF_00FF
        x = (x | x << 4) & 0x0F0F_0F0F_0F0F_0F0F
        // ... then the most significant first, and each nibble to `0-9` or `a-f`.
        x = x.byteSwapped
        let letters = ((x &+ ones &* 6) >> 4) & ones
        return x &+ ones &* 0x30 &+ letters &* 39
    }

    /// One mixing multiply instead of two hasher rounds: ids are random or chosen by peers, and
    /// the table's per-process seed still applies.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(high ^ (low &* 0x9E37_79B9_7F4A_7C15))
    }

    /// What `Dictionary` and `Set` call for a bucket: murmur3's 64-bit finalizer over the folded id
    /// and the table's seed, in place of a `Hasher` (SipHash-1-3 costs about 150 instructions a
    /// lookup, and every relayed message looks ids up several times: Benchmarks/instructions.sh).
    /// Ids that fold to the same word collide here as they do in `hash(into:)`; others scatter by
    /// the per-table seed.
    public func _rawHashValue(seed: Int) -> Int {
        var x = (high ^ (low &* 0x9E37_79B9_7F4A_7C15)) ^ UInt64(truncatingIfNeeded: seed)
        x = (x ^ (x >> 33)) &* 0xFF51_AFD7_ED55_8CCD
        x = (x ^ (x >> 33)) &* 0xC4CE_B9FE_1A85_EC53
        return Int(truncatingIfNeeded: x ^ (x >> 33))
    }

    public var description: String {
        String(unsafeUninitializedCapacity: 36) { buffer in
            write(to: UnsafeMutableRawBufferPointer(buffer))
            return 36
        }
    }
}

/// A node's id with the display name it gave (`name@GUID`). Identity is the GUID alone.
public struct NodeAddress: Hashable, Sendable, CustomStringConvertible {
    public var id: GUID
    /// Letters and digits only, or `nil` when the node gave none (or one the relay will not write).
    public var name: String?

    public init(id: GUID, name: String?) {
        self.id = id
        self.name = name.flatMap { NodeAddress.isValidName($0) ? $0 : nil }
    }

    /// Parses `GUID` or `name@GUID`. A name that is not letters and digits is dropped, not refused.
    public init?(bytes: UnsafeRawBufferPointer) {
        if bytes.count == 36, let id = GUID(canonical: bytes) {
            self.init(id: id, name: nil)
            return
        }
        guard bytes.count > 36, bytes[bytes.count - 37] == UInt8(ascii: "@"),
            let id = GUID(canonical: UnsafeRawBufferPointer(rebasing: bytes[(bytes.count - 36)...]))
        else { return nil }
        let nameBytes = UnsafeRawBufferPointer(rebasing: bytes[..<(bytes.count - 37)])
        let name = NodeAddress.isValidName(nameBytes) ? String(decoding: nameBytes, as: UTF8.self) : nil
        self.init(id: id, name: name)
    }

    public init?(_ string: String) {
        var copy = string
        guard let parsed = copy.withUTF8({ NodeAddress(bytes: UnsafeRawBufferPointer($0)) }) else { return nil }
        self = parsed
    }

    public static func isValidName(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !bytes.isEmpty, bytes.count <= 64 else { return false }
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"):
                continue
            default:
                return false
            }
        }
        return true
    }

    public static func isValidName(_ name: String) -> Bool {
        var copy = name
        return copy.withUTF8 { isValidName(UnsafeRawBufferPointer($0)) }
    }

    /// `name@GUID`, with `node` standing in for a missing name.
    public var description: String { String(decoding: renderedBytes, as: UTF8.self) }

    /// `description`'s bytes, written in place: a tag is rendered for every node that says HELLO,
    /// and the interpolation and copy cost about 2,000 instructions of a handshake
    /// (Benchmarks/instructions-hs.sh).
    public var renderedBytes: [UInt8] {
        var name = self.name ?? "node"
        return name.withUTF8 { name in
            let count = name.count + 1 + 36
            return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                let bytes = UnsafeMutableRawBufferPointer(buffer)
                bytes.copyMemory(from: UnsafeRawBufferPointer(name))
                bytes[name.count] = UInt8(ascii: "@")
                id.write(to: UnsafeMutableRawBufferPointer(rebasing: bytes[(name.count + 1)...]))
                initialized = count
            }
        }
    }
}

/// A fast, non-cryptographic generator for the relay's own message ids (xoshiro256**), seeded from
/// the system generator. Message ids need to be unique, not secret.
public struct FastRandom: RandomNumberGenerator, Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    public init() {
        var system = SystemRandomNumberGenerator()
        state = (system.next(), system.next(), system.next(), system.next() | 1)
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotl(state.3, 45)
        return result
    }

    @inline(__always)
    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

/// SplitMix64: a small generator from a seed, so a randomized test or simulation can be replayed
/// (tests and benchmarks only; the relay's ids come from `FastRandom`).
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
