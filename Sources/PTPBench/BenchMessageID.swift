import PTPProtocol

/// The `msg_id` of a bench MESSAGE: a version-4-shaped GUID that carries the sending connection's
/// index, the run's id and a sequence number, as relay-load's ids do. A recipient and an ACK tell
/// from it alone whose message it is and which one, with no table.
///
/// high: index (32 bits) | run (16 bits) | `4` and 12 zero bits; low: `8` (4 bits) | sequence (60 bits).
public struct BenchMessageID: Equatable, Sendable {
    public var connection: UInt32
    public var run: UInt16
    public var sequence: UInt64

    public init(connection: UInt32, run: UInt16, sequence: UInt64) {
        self.connection = connection
        self.run = run
        self.sequence = sequence & Self.sequenceMask
    }

    @usableFromInline static let sequenceMask: UInt64 = (1 << 60) - 1

    public var guid: GUID {
        GUID(high: UInt64(connection) << 32 | UInt64(run) << 16 | 0x4000, low: Self.lowHalf(sequence: sequence))
    }

    /// The GUID's low half for `sequence` (the part that changes from one message to the next).
    @inline(__always)
    static func lowHalf(sequence: UInt64) -> UInt64 { 8 << 60 | sequence }

    /// Nil for a GUID that is not a bench id (of any run).
    public init?(_ guid: GUID) {
        guard guid.high & 0xFFFF == 0x4000, guid.low >> 60 == 8 else { return nil }
        connection = UInt32(truncatingIfNeeded: guid.high >> 32)
        run = UInt16(truncatingIfNeeded: guid.high >> 16)
        sequence = guid.low & Self.sequenceMask
    }
}

extension BenchMessageID {
    /// The first 20 characters of the canonical text of every id one connection sends in one run
    /// (`cccccccc-rrrr-4000-8`: the whole high half and the low half's tag digit), compared as
    /// three words: a reader that knows whose ids to expect checks them without parsing them.
    public struct TextPrefix: Equatable, Sendable {
        @usableFromInline let first: UInt64
        @usableFromInline let second: UInt64
        @usableFromInline let third: UInt32

        public init(connection: UInt32, run: UInt16) {
            var text = [UInt8](repeating: 0, count: 36)
            text.withUnsafeMutableBytes { BenchMessageID(connection: connection, run: run, sequence: 0).guid.write(to: $0) }
            (first, second, third) = text.withUnsafeBytes {
                ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                    $0.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
            }
        }

        /// Whether the 36 characters of `id` (as it came, lower case as the relay writes ids) start with this prefix.
        @inlinable @inline(__always)
        public func starts(_ id: UnsafeRawBufferPointer) -> Bool {
            precondition(id.count == 36)
            return id.loadUnaligned(fromByteOffset: 0, as: UInt64.self) == first
                && id.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == second
                && id.loadUnaligned(fromByteOffset: 16, as: UInt32.self) == third
        }

        /// The sequence number of `id` when it starts with this prefix; nil otherwise.
        @inlinable @inline(__always)
        public func sequence(of id: UnsafeRawBufferPointer) -> UInt64? {
            guard starts(id), let low = GUID.lowHalf(canonical: id) else { return nil }
            return low & BenchMessageID.sequenceMask
        }
    }
}
