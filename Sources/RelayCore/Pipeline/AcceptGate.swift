import Logging
import NIOCore

/// The first handler of every listening channel: sees each accepted connection before its
/// pipeline exists (before `childChannelInitializer`, before registration) and closes it there when
/// it is over `limits.max_connections`, `limits.per_ip_connections` or the per-IP new-connection
/// rate. An admitted connection is counted until it closes.
///
/// Runs on the listening channel's event loop, which is a shard's loop: refusals are counted on
/// that shard.
final class AcceptGate: ChannelInboundHandler {
    typealias InboundIn = Channel
    typealias InboundOut = Channel

    private let limiter: AcceptLimiter
    /// The shard whose loop the listening channel runs on (counters and logs).
    private let shard: RelayShard

    init(limiter: AcceptLimiter, shard: RelayShard) {
        self.limiter = limiter
        self.shard = shard
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        let remote = child.remoteAddress
        let key = AddressKey(remote)
        switch limiter.admit(key) {
        case .admit:
            let limiter = self.limiter
            child.closeFuture.whenComplete { _ in limiter.release(key) }
            context.fireChannelRead(data)
        case .refuse(let reason, let warn):
            shard.counters.drop(reason)
            let ip = remote?.ipAddress ?? "?"
            shard.logger.debug("connection refused at accept", metadata: ["ip": "\(ip)", "reason": "\(reason.rawValue)"])
            if let refused = warn {
                // The line fail2ban matches (deploy/fail2ban/ptpchat-relay.conf): keep its shape.
                // Its filter expects `ip=` right after the message: the log handler sorts keys, and
                // none here or in the shard's logger (`loop`) sorts before `ip`.
                var metadata: Logger.Metadata = ["ip": "\(ip)", "reason": "\(reason.rawValue)", "refused": "\(refused)"]
                if let key, case .v6 = key { metadata["prefix"] = "\(key)" }
                shard.logger.warning("connections refused at accept", metadata: metadata)
            }
            child.close(promise: nil)
        }
    }
}
