import NIOCore

/// The connection is a proven peer relay (PROFILE.md section 9): exempt from the per-node limits
/// from now on. The shard sends it as an outbound user event from `ConnectionHandler`'s context;
/// `NodeRateLimiter` takes it and passes it no further.
struct PeerRelayProven: Sendable {}

/// Where a connection's read budget comes from and where throttling is reported: the shard.
/// One reference per limiter (two closures cost two boxes on every connection).
protocol NodeRatePolicy: AnyObject {
    /// The budget in force, asked at each `read()` (a reload changes it for open connections).
    var nodeRates: NodeRates { get }
    /// Called once per throttling episode (a counter and a debug line), with the channel.
    func noteThrottled(_ channel: Channel)
}

/// Messages and bytes per second per node (PROFILE.md section 10), enforced by not reading: bytes
/// are counted as they pass, frames as `ConnectionHandler` splits them (`countFrame`); when a
/// budget is spent, the next `read()` is held back (as SwiftNIO's `HTTPServerPipelineHandler` does)
/// until a timer says the budget allows more. The kernel's buffers fill and TCP slows the sender;
/// nothing is dropped, and frames already read are still delivered.
///
/// Sits just before `ConnectionHandler` (after TLS, if any), where the reads pass whole. Everything
/// here runs on the connection's event loop.
///
/// What one read cycle takes in is delivered whatever the budget (up to `Reads.normal`: 16 reads
/// of up to 32 KiB), so during a throttling episode the connection reads in small pieces
/// (`Reads.throttled`: one read of 16 KiB a cycle): the overshoot past the budget stays small.
final class NodeRateLimiter: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = NIOAny

    // Set once.
    private let policy: any NodeRatePolicy

    // Owned by the connection's event loop.
    private var messages = TokenBucket(rate: 0, burst: 0, now: .uptimeNanoseconds(0))
    private var bytes = TokenBucket(rate: 0, burst: 0, now: .uptimeNanoseconds(0))
    /// Frames and bytes passed on since the buckets were last charged.
    private var uncountedFrames = 0
    private var uncountedBytes = 0
    private var isExempt = false
    /// A `read()` arrived while over budget and was not passed on.
    private var isReadHeld = false
    /// Over budget since the last `read()` that was passed on (one count per episode).
    private var isThrottled = false
    private var resumeTimer: Scheduled<Void>?

    /// How a connection reads: read calls per cycle, and their buffer sizes.
    enum Reads {
        /// NIO's default, which a connection starts with: a HELLO, a chat, an ACK each take one read.
        /// Setting it costs about 2,400 instructions in NIO's option casts, 2 % of a handshake.
        static let initialMaxMessagesPerRead: UInt = 4
        /// A connection whose read cycle used all of those reads (each one filled its buffer) is
        /// raised to this, once (`ConnectionHandler`): a window of 64 frames takes fewer cycles.
        static let normalMaxMessagesPerRead: UInt = 16
        /// Each channel keeps its last receive buffer for the next read (NIO's pooled receive
        /// buffers), idle or not: start small (a HELLO fits) and let busy connections grow it (a
        /// read that fills it makes the next one larger). 16 KiB here cost 16 KiB per idle connection, 1 KiB about
        /// 0.5 KiB more than 512 bytes (Benchmarks/security.sh memory row).
        ///
        /// The pool never gives a grown buffer back (NIO 2.101: `clear(minimumCapacity:)` does
        /// not shrink, and no option drops it): what a connection reached in one burst it keeps
        /// while it is open. At most 32 KiB then, not 256 KiB: 200 connections that each sent
        /// 2 MiB of keepalives once and went quiet kept 256 KiB each, now 17 KiB (Benchmarks/
        /// memory.sh burst). Callgrind (thr shape) counts no more instructions per message at
        /// 32 KiB; at 16 KiB (4 KiB kept) 5 % more: more read cycles for a window of 64 frames.
        static let normalAllocator = CompactReceiveAllocator(initial: 512)
        static let throttledAllocator = FixedSizeRecvByteBufferAllocator(capacity: 16 * 1024)
    }

    init(policy: any NodeRatePolicy) {
        self.policy = policy
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !isExempt {
            // Length prefixes and keepalives count too: they are bytes the peer made the relay read.
            uncountedBytes += unwrapInboundIn(data).readableBytes
        }
        context.fireChannelRead(data)
    }

    /// `ConnectionHandler` split one more frame out of the bytes passed on, and it was not an ACK or
    /// NACK. An answer to what the relay sent comes at the pace the relay sends, so it is not
    /// charged to the message budget (its bytes still are). Otherwise a recipient taking a stored
    /// backlog faster than the budget could not ACK it in time, and the relay would deliver it
    /// again (`timeouts.ack`).
    func countFrame() {
        if !isExempt { uncountedFrames += 1 }
    }

    func read(context: ChannelHandlerContext) {
        if isExempt {
            context.read()
            return
        }
        isReadHeld = true
        // A read held back waits for its timer.
        if resumeTimer == nil { passReadIfAllowed(context: context, onTimer: false) }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is PeerRelayProven else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        isExempt = true
        resumeTimer?.cancel()
        resumeTimer = nil
        if isThrottled { endEpisode(context: context) }
        promise?.succeed(())
        if isReadHeld {
            isReadHeld = false
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
    }

    private func cancelTimer() {
        resumeTimer?.cancel()
        resumeTimer = nil
    }

    /// Charges what was read, then passes the held `read()` on, or holds it and sets a timer.
    /// A throttling episode ends when a `read()` passes at once (not on its timer) with half of
    /// each burst back: a sender that keeps sending over budget is one episode.
    private func passReadIfAllowed(context: ChannelHandlerContext, onTimer: Bool) {
        let now = context.eventLoop.now
        let rates = policy.nodeRates
        messages.reconfigure(rate: rates.messagesPerSecond, burst: rates.messagesBurst, now: now)
        bytes.reconfigure(rate: rates.bytesPerSecond, burst: rates.bytesBurst, now: now)
        messages.charge(Double(uncountedFrames), now: now)
        bytes.charge(Double(uncountedBytes), now: now)
        uncountedFrames = 0
        uncountedBytes = 0
        if messages.holds(Self.tiny) && bytes.holds(Self.tiny) {
            if isThrottled && !onTimer && messages.holds(messages.burst / 2) && bytes.holds(bytes.burst / 2) {
                endEpisode(context: context)
            }
            isReadHeld = false
            context.read()
            return
        }
        if !isThrottled {
            isThrottled = true
            policy.noteThrottled(context.channel)
            setReads(maxMessagesPerRead: 1, allocator: Reads.throttledAllocator, on: context.channel)
        }
        // Read again once 50 ms worth of budget is back (not one token at a time: fewer wake-ups).
        let wait = max(
            messages.timeUntil(holding: Self.resumeLevel(messages)), bytes.timeUntil(holding: Self.resumeLevel(bytes)))
        resumeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: max(wait, .milliseconds(1))) { [self] in
            resumeTimer = nil
            if isReadHeld { passReadIfAllowed(context: context, onTimer: true) }
        }
    }

    /// The sender came back under budget (half of each burst is there again): normal reads again.
    private func endEpisode(context: ChannelHandlerContext) {
        isThrottled = false
        setReads(maxMessagesPerRead: Reads.normalMaxMessagesPerRead, allocator: Reads.normalAllocator, on: context.channel)
    }

    private func setReads(maxMessagesPerRead: UInt, allocator: RecvByteBufferAllocator, on channel: Channel) {
        guard let options = channel.syncOptions else { return }
        try? options.setOption(.maxMessagesPerRead, value: maxMessagesPerRead)
        try? options.setOption(.recvAllocator, value: allocator)
    }

    /// Above zero: a budget spent to exactly 0 is spent.
    private static let tiny = 1e-9

    private static func resumeLevel(_ bucket: TokenBucket) -> Double {
        min(bucket.burst, max(1, bucket.rate / 20))
    }
}
