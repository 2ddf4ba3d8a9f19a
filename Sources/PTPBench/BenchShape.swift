/// Who sends to whom, as `relay-load --pattern` (../shared/bench/README.md) defines it, so that the
/// two load generators put the same load on a relay.
public enum BenchPattern: String, CaseIterable, Sendable {
    /// Connections 2i and 2i+1 send to each other (an odd last connection sits idle).
    case pair
    /// Connection 2i sends to 2i+1, which only receives and ACKs.
    case oneway
    /// Connection i sends to i+1, the last one to the first.
    case ring

    /// The connection that `index` sends to, nil when it only receives.
    public func peer(of index: Int, count: Int) -> Int? {
        switch self {
        case .pair:
            let peer = index ^ 1
            return peer < count ? peer : nil
        case .oneway:
            return index.isMultiple(of: 2) && index + 1 < count ? index + 1 : nil
        case .ring:
            return count > 1 ? (index + 1) % count : nil
        }
    }

    /// The connection `index` receives from, nil when nothing is sent to it.
    public func sender(to index: Int, count: Int) -> Int? {
        (0..<count).first { peer(of: $0, count: count) == index }
    }

    /// How many of `count` connections send.
    public func senderCount(of count: Int) -> Int {
        (0..<count).reduce(0) { $0 + (peer(of: $1, count: count) == nil ? 0 : 1) }
    }
}

/// The shape of one run, as the user asked for it; owned by the `bench` command, read by the runner
/// and printed in the summary.
public struct BenchShape: Sendable, Equatable {
    public var connections: Int
    public var pattern: BenchPattern
    /// MESSAGEs a sender keeps un-ACKed at most.
    public var window: Int
    /// Characters of the base64 `message` field; the first 16 carry the send time.
    public var payload: Int
    /// The send phase ends after this many seconds...
    public var duration: Double
    /// ...or once this many MESSAGEs were sent (over all senders) and ACKed, whichever comes first.
    public var messages: UInt64
    /// Seconds at the start of the send phase whose events are left out of rates and latencies.
    public var warmup: Double
    /// Seconds to wait after the send phase for outstanding deliveries and ACKs.
    public var drain: Double
    /// The head keys of the bench's MESSAGEs and ACKs.
    public var head: BenchFrameHead

    public init(
        connections: Int, pattern: BenchPattern, window: Int, payload: Int, duration: Double, messages: UInt64,
        warmup: Double = 0, drain: Double = 2, head: BenchFrameHead = .spec
    ) {
        self.head = head
        self.connections = connections
        self.pattern = pattern
        self.window = window
        self.payload = payload
        self.duration = duration
        self.messages = messages
        self.warmup = warmup
        self.drain = drain
    }

    /// The smallest payload: the 16 hex digits of the send time.
    public static let minimumPayload = 16

    /// The share of `messages` that sender number `rank` (0-based, among `senders`) sends: as even as
    /// possible, the first `messages % senders` one more.
    public static func budget(messages: UInt64, senders: Int, rank: Int) -> UInt64 {
        guard senders > 0 else { return 0 }
        let each = messages / UInt64(senders)
        return each + (UInt64(rank) < messages % UInt64(senders) ? 1 : 0)
    }
}
