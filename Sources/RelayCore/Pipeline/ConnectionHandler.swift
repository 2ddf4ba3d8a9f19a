import NIOCore
import PTPProtocol
import RelayTLS

/// The last handler of a connection's pipeline: splits the bytes read into frames and hands each to
/// the shard (no channel handler hop per frame: a read of 64 frames is one `channelRead`), tells it
/// when bytes came in (its idle sweep) and when the channel's writability changed (its outbound
/// limits), and closes on framing errors with a reason.
///
/// It is the connection's `FrameSizeCap`: `bytes` is read for every frame; the shard raises it at
/// the HELLO and a reload lowers it.
final class ConnectionHandler: FrameSizeCap, ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    // Set once.
    private let shard: RelayShard
    /// The `mesh.peers` entry this connection was dialed to; nil for an accepted connection.
    private let dialedPeer: String?
    /// False: the cap stays at what it was made with (the tests' fixed caps); true: the shard sets it.
    private let shardSetsCap: Bool
    /// Nothing between this handler and the socket changes the bytes (no TLS): the shard may write
    /// to the socket directly (`DirectSocketWrites`).
    private let plaintext: Bool
    // Owned by the connection's event loop.
    /// The connection's per-node read budget (just before this handler), told of every frame that
    /// is not an answer; nil while the pipeline has none (`RelayShard.applyNodeBudget` adds it).
    private(set) var rateLimiter: NodeRateLimiter?
    private var connection: Connection?
    private var splitter = FrameSplitter()
    /// The channel's allocator (for a frame split over reads), read once: through the context at
    /// every read it cost about 340 instructions a message on `lat` (callgrind), a tenth of the
    /// relay's own per-read work.
    private var allocator = ByteBufferAllocator()
    /// A frame was over the cap: the connection is closing, and anything more the peer sends is
    /// dropped unread (its bytes would start mid-frame).
    private var framingFailed = false
    /// NIO's reads in this read cycle (a `channelRead` each, then one `channelReadComplete`).
    private var readsThisCycle: UInt = 0
    /// Raised to `Reads.normalMaxMessagesPerRead` already (once per connection).
    private var readsRaised = false

    init(shard: RelayShard, dialedPeer: String? = nil, maxFrameBytes: Int, shardSetsCap: Bool = true, plaintext: Bool = true) {
        self.shard = shard
        self.dialedPeer = dialedPeer
        self.shardSetsCap = shardSetsCap
        self.plaintext = plaintext
        super.init(bytes: maxFrameBytes)
    }

    /// Puts a read budget just before this handler, where there is none yet (the shard decides
    /// when: `RelayShard.applyNodeBudget`). An unused budget is left out of the pipeline: it was a
    /// channel handler hop on every read, 3 % of the relay's time on `conn` with `perf`.
    func addRateLimiter(policy: any NodeRatePolicy, context: ChannelHandlerContext) throws {
        guard rateLimiter == nil else { return }
        let limiter = NodeRateLimiter(policy: policy)
        try context.pipeline.syncOperations.addHandler(limiter, position: .before(self))
        rateLimiter = limiter
    }

    func handlerAdded(context: ChannelHandlerContext) {
        allocator = context.channel.allocator
    }

    func channelActive(context: ChannelHandlerContext) {
        let connection = shard.open(context, dialedPeer: dialedPeer, frameCap: shardSetsCap ? self : nil, plaintext: plaintext)
        self.connection = connection
        // Before NIO's first `read()`, which follows this event.
        shard.applyNodeBudget(to: connection, handler: self)
        shard.flushAll()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        readsThisCycle &+= 1
        guard !framingFailed, let connection else { return }
        var input = unwrapInboundIn(data)
        // Read once a read, not once a frame (each read of a class's property retains it). A frame
        // that closes the connection leaves it `.closing`: `handleFrame` drops the rest.
        let shard = self.shard
        let rateLimiter = self.rateLimiter
        do {
            try splitter.split(&input, cap: bytes, allocator: allocator) { frame in
                if !shard.handleFrame(connection, frame) {
                    rateLimiter?.countFrame()
                }
            }
        } catch {
            framingFailed = true
            splitter.reset()
            shard.counters.drop(.frameTooLarge)
            shard.close(connection, reason: error.description)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Any bytes (a partial frame too) keep it from idling; a flag, no clock read.
        connection?.readSinceSweep = true
        // Every read of the cycle filled its buffer: more is waiting, and the connection is busy.
        // (A throttled one reads once per cycle: never here.)
        if readsThisCycle >= NodeRateLimiter.Reads.initialMaxMessagesPerRead && !readsRaised {
            readsRaised = true
            try? context.channel.syncOptions?.setOption(.maxMessagesPerRead, value: NodeRateLimiter.Reads.normalMaxMessagesPerRead)
        }
        readsThisCycle = 0
        shard.readCycleEnded()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let connection {
            shard.writabilityChanged(connection, isWritable: context.channel.isWritable)
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let connection {
            shard.closed(connection)
        }
        connection = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let proven = event as? ProvenNodeIdentity {
            connection?.provenNodeID = proven.nodeID
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let connection else {
            context.close(promise: nil)
            return
        }
        shard.logger.debug("connection error", metadata: ["conn": "\(connection.logID)", "error": "\(error)"])
        shard.close(connection, reason: "\(error)")
    }
}
