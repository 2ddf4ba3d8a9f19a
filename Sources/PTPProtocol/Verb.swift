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
        guard count >= 3, count <= 14 else { return nil }
        // The name in two little-endian words, zero-padded, read with two copies instead of a loop.
        var low: UInt64 = 0
        var high: UInt64 = 0
        withUnsafeMutableBytes(of: &low) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.prefix(8))) }
        if count > 8 {
            withUnsafeMutableBytes(of: &high) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[8...])) }
        }
        // Clearing bit 5 of each byte maps `a-z` onto `A-Z` and no other byte onto a capital
        // letter: a match means each byte was the name's letter in one case or the other.
        let fold: UInt64 = ~0x2020_2020_2020_2020
        let folded = (UInt64(littleEndian: low) & fold, UInt64(littleEndian: high) & fold)
        for entry in Verb.packedNames where entry.length == count && entry.low == folded.0 && entry.high == folded.1 {
            self = entry.verb
            return
        }
        return nil
    }

    /// Each verb's name packed into two little-endian words, for comparison without loops.
    private static let packedNames: [(verb: Verb, length: Int, low: UInt64, high: UInt64)] = Verb.allCases.map { verb in
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
        return (verb, name.utf8CodeUnitCount, packed.0, packed.1)
    }
}
