/// The thirteen verbs of SPEC.md.
public enum Verb: UInt8, CaseIterable, Sendable {
    case hello, ack, nack, join, leave, channel, getCertificate, certificate, getKey, key, message, routing, connect

    public var wireName: StaticString {
        switch self {
        case .hello: "HELLO"
        case .ack: "ACK"
        case .nack: "NACK"
        case .join: "JOIN"
        case .leave: "LEAVE"
        case .channel: "CHANNEL"
        case .getCertificate: "GETCERTIFICATE"
        case .certificate: "CERTIFICATE"
        case .getKey: "GETKEY"
        case .key: "KEY"
        case .message: "MESSAGE"
        case .routing: "ROUTING"
        case .connect: "CONNECT"
        }
    }

    public var name: String { wireName.description }

    /// `ttl` and `flood` when the head leaves them out (SPEC.md).
    public var defaultTTL: Int {
        switch self {
        case .hello, .ack, .routing: 1
        default: 32
        }
    }

    public var defaultFlood: Bool {
        switch self {
        case .join, .leave, .channel: true
        default: false
        }
    }

    /// Verbs relayed to one node by id, with hop-by-hop ACK.
    public var isAcknowledgedUnicast: Bool {
        switch self {
        case .message, .certificate, .key, .getCertificate, .getKey: true
        default: false
        }
    }

    /// Matches the verb in any letter case.
    public init?(bytes: UnsafeRawBufferPointer) {
        let count = bytes.count
        guard count >= 3, count <= 14, let base = bytes.baseAddress else { return nil }
        // The name in two little-endian words, zero-padded, read with overlapping loads that stay
        // inside the bytes (bytes read twice land on the same place, so OR-ing the loads is exact).
        @inline(__always) func load32(_ offset: Int) -> UInt64 {
            UInt64(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        }
        @inline(__always) func load64(_ offset: Int) -> UInt64 {
            UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        var low: UInt64
        var high: UInt64 = 0
        if count >= 8 {
            low = load64(0)
            if count > 8 {
                high = count >= 12 ? load64(count - 8) >> (8 * UInt64(16 - count)) : load32(count - 4) >> (8 * UInt64(12 - count))
            }
        } else if count >= 4 {
            low = load32(0) | load32(count - 4) << (8 * UInt64(count - 4))
        } else {
            low = UInt64(UInt16(littleEndian: base.loadUnaligned(as: UInt16.self))) | UInt64(bytes[2]) << 16
        }
        // Clearing bit 5 of each byte maps `a-z` onto `A-Z` and no other byte onto a capital
        // letter: a match means each byte was the name's letter in one case or the other.
        let fold: UInt64 = ~0x2020_2020_2020_2020
        low &= fold
        high &= fold
        // The names of that length, compared with two word compares each (a scan of all thirteen
        // cost about 80 instructions a frame: Benchmarks/instructions.sh).
        let names = Verb.packedNames
        @inline(__always) func matches(_ verb: Verb) -> Bool {
            let entry = names[Int(verb.rawValue)]
            return entry.low == low && entry.high == high
        }
        let found: Verb?
        switch count {
        case 3: found = matches(.ack) ? .ack : matches(.key) ? .key : nil
        case 4: found = matches(.nack) ? .nack : matches(.join) ? .join : nil
        case 5: found = matches(.hello) ? .hello : matches(.leave) ? .leave : nil
        case 6: found = matches(.getKey) ? .getKey : nil
        case 7:
            found =
                matches(.message) ? .message : matches(.channel) ? .channel : matches(.routing) ? .routing : matches(.connect) ? .connect : nil
        case 11: found = matches(.certificate) ? .certificate : nil
        case 14: found = matches(.getCertificate) ? .getCertificate : nil
        default: found = nil
        }
        guard let found else { return nil }
        self = found
    }

    /// Each verb's name packed into two little-endian words, for comparison without loops; at the
    /// verb's raw value.
    private static let packedNames: [(low: UInt64, high: UInt64)] = Verb.allCases.map { verb in
        var packed: (UInt64, UInt64) = (0, 0)
        let name = verb.wireName
        for index in 0..<name.utf8CodeUnitCount {
            let byte = UInt64(name.utf8Start[index])
            if index < 8 {
                packed.0 |= byte << (8 * UInt64(index))
            } else {
                packed.1 |= byte << (8 * UInt64(index - 8))
            }
        }
        return packed
    }
}
