import NIOCore
import PTPProtocol
import RelayTLS

/// The last handler of a connection's pipeline: hands frames to the shard, tells it when bytes
/// came in (its idle sweep) and when the channel's writability changed (its outbound limits), and
/// closes on framing errors with a reason.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let shard: RelayShard
    /// The `mesh.peers` entry this connection was dialed to; nil for an accepted connection.
    private let dialedPeer: String?
    /// The cap the connection's frame decoder reads; the shard sets it.
    private let frameCap: FrameSizeCap?
    /// The connection's per-node read budget (just before this handler), told which frames were
    /// answers; nil where the pipeline has none.
    private let rateLimiter: NodeRateLimiter?
    private var connection: Connection?

    init(shard: RelayShard, dialedPeer: String? = nil, frameCap: FrameSizeCap? = nil, rateLimiter: NodeRateLimiter? = nil) {
        self.shard = shard
        self.dialedPeer = dialedPeer
        self.frameCap = frameCap
        self.rateLimiter = rateLimiter
    }

    func channelActive(context: ChannelHandlerContext) {
        connection = shard.open(context, dialedPeer: dialedPeer, frameCap: frameCap)
        shard.flushAll()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection else { return }
        if shard.handleFrame(connection, unwrapInboundIn(data)) {
            rateLimiter?.forgiveAnswer()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Any bytes (a partial frame too) keep it from idling; a flag, no clock read.
        connection?.readSinceSweep = true
        shard.scheduleFlush()
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
        if let framing = error as? FramingError {
            shard.counters.drop(.frameTooLarge)
            shard.close(connection, reason: framing.description)
        } else {
            shard.logger.debug("connection error", metadata: ["conn": "\(connection.logID)", "error": "\(error)"])
            shard.close(connection, reason: "\(error)")
        }
    }
}
