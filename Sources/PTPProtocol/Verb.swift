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
        guard bytes.count >= 3, bytes.count <= 14 else { return nil }
        var folded: (UInt64, UInt64) = (0, 0)
        for (index, byte) in bytes.enumerated() {
            let upper = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) ? byte - 32 : byte
            if index < 8 {
                folded.0 |= UInt64(upper) << (8 * UInt64(index))
            } else {
                folded.1 |= UInt64(upper) << (8 * UInt64(index - 8))
            }
        }
        for verb in Verb.allCases {
            let name = verb.wireName
            guard name.utf8CodeUnitCount == bytes.count else { continue }
            var expected: (UInt64, UInt64) = (0, 0)
            for index in 0..<name.utf8CodeUnitCount {
                let byte = name.utf8Start[index]
                if index < 8 {
                    expected.0 |= UInt64(byte) << (8 * UInt64(index))
                } else {
                    expected.1 |= UInt64(byte) << (8 * UInt64(index - 8))
                }
            }
            if expected == folded {
                self = verb
                return
            }
        }
        return nil
    }
}
