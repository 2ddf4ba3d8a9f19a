import RelayConfig

/// The per-node read budget of PROFILE.md section 10: `limits.node_messages_per_second` /
/// `_burst` and `limits.node_bytes_per_second` / `_burst` (0 is unlimited).
struct NodeRates: Sendable, Equatable {
    var messagesPerSecond: Double
    var messagesBurst: Double
    var bytesPerSecond: Double
    var bytesBurst: Double
}

extension NodeRates {
    init(_ limits: RelayConfiguration.Limits) {
        self.init(
            messagesPerSecond: limits.nodeMessagesPerSecond, messagesBurst: Double(limits.nodeMessagesBurst),
            bytesPerSecond: limits.nodeBytesPerSecond, bytesBurst: Double(limits.nodeBytesBurst))
    }

    static let unlimited = NodeRates(messagesPerSecond: 0, messagesBurst: 0, bytesPerSecond: 0, bytesBurst: 0)

    /// Neither budget is set: a connection needs no `NodeRateLimiter` in its pipeline.
    var isUnlimited: Bool { messagesPerSecond <= 0 && bytesPerSecond <= 0 }
}

/// Frame caps of a connection (`FrameSizeCap` holds the one in force).
enum FrameCaps {
    /// The largest frame accepted before the HELLO binds a connection. The largest HELLO of
    /// CLIENT-FRAMES.md and SPEC.md (a relay's HELLO with its peering proof included) is well
    /// under 1 KiB; 16 KiB leaves room for long names and attributes, and is all a connection
    /// that has not said who it is can make the relay buffer.
    static let beforeHello = 16 * 1024

    /// The cap before the HELLO under `limits.max_frame_bytes` (0: no cap after the HELLO).
    static func beforeHello(maxFrameBytes: Int) -> Int {
        maxFrameBytes > 0 ? min(maxFrameBytes, beforeHello) : beforeHello
    }
}
