import Logging
import NIOCore

/// The first handler of every listening channel: sees each accepted connection before its
/// pipeline exists (before `childChannelInitializer`, before registration) and closes it there when
/// it is over `limits.max_connections`, `limits.per_ip_connections` or the per-IP new-connection
/// rate. An admitted connection is counted until it closes, and placed on a loop (`LoopPlacer`):
/// passed on to be served where it was accepted, or moved.
///
/// Every connection closed here costs an accept, a close and NIO's channel for it (about 18 µs
/// in all), however cheap the verdict: a flood of them takes the CPU of the connections that are
/// working. So refusals have a budget of their own, shared by all listeners
/// (`limits.accept_refusals_per_second` / `_burst`): over it, the listener stops accepting (its
/// `read()` is held back, as `NodeRateLimiter` does for a connection) until a tenth of a second's
/// worth of budget is back. Meanwhile the kernel's backlog holds new connections, and drops
/// SYNs once it is full; open connections are untouched. Each listener (one per event loop and
/// address) pauses on its own, when it refuses over the shared budget; the warning line is the
/// relay's, at most one a minute.
///
/// An address refused `limits.ban_after_refusals` times within a minute is banned at the
/// listening sockets (`ListenerBans`): the kernel drops its SYNs until the ban ends.
///
/// Runs on the listening channel's event loop, which is a shard's loop: refusals are counted on
/// that shard.
final class AcceptGate: ChannelDuplexHandler {
    typealias InboundIn = Channel
    typealias InboundOut = Channel
    typealias OutboundIn = NIOAny

    // Set once.
    private let limiter: AcceptLimiter
    private let bans: ListenerBans
    /// The shard whose loop the listening channel runs on (counters and logs).
    private let shard: RelayShard
    /// Where admitted connections are served; nil: where they were accepted.
    private let placer: LoopPlacer?

    // Owned by the listening channel's event loop.
    /// Whether the listener is a TCP one (its connections have a remote IP), found once when it
    /// becomes active: asked per connection, it cost a formatted address each time.
    private var listensOnIP = true
    /// Set while accepting is paused: the `read()` that ends the pause.
    private var resumeTimer: Scheduled<Void>?
    /// A `read()` arrived during the pause and was not passed on.
    private var isReadHeld = false

    init(limiter: AcceptLimiter, bans: ListenerBans, shard: RelayShard, placer: LoopPlacer? = nil) {
        self.limiter = limiter
        self.bans = bans
        self.shard = shard
        self.placer = placer
    }

    func channelActive(context: ChannelHandlerContext) {
        // Bound now (the initializer runs before the bind; an inherited socket is active once
        // registered), and nothing is accepted before this: its address is known.
        if let local = context.channel.localAddress { listensOnIP = Self.hasIP(local) }
        if listensOnIP { bans.register(context.channel) }
        context.fireChannelActive()
    }

    private static func hasIP(_ address: SocketAddress) -> Bool {
        switch address {
        case .v4, .v6: return true
        default: return false
        }
    }

    // A flood is refused here, tens of thousands of times a second: the refusal formats nothing
    // (an address becomes text only for a log line that is written) and touches the ledger once.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        let remote = child.remoteAddress
        if remote == nil, listensOnIP {
            // A TCP peer that reset the connection before the accept leaves no address to count it
            // by. Admitting it uncounted would let a flood of connect-and-reset past the per-IP
            // rate: it is dead anyway, so it is closed here.
            shard.counters.drop(.goneAtAccept)
            shard.logger.debug("connection gone at accept", metadata: ["reason": "\(DropReason.goneAtAccept.rawValue)"])
            child.close(promise: nil)
            if let pause = limiter.chargeRefusal() { pauseAccepting(context: context, for: pause) }
            return
        }
        let key = AddressKey(remote)
        let (verdict, pause, countedAs) = limiter.admit(key)
        switch verdict {
        case .admit:
            let limiter = self.limiter
            if let placer, placer.moved(child, limiter: limiter, countedAs: countedAs) { return }
            child.closeFuture.whenComplete { _ in limiter.release(countedAs) }
            context.fireChannelRead(data)
        case .refuse(let reason, let warn, let ban):
            shard.counters.drop(reason)
            shard.logger.debug(
                "connection refused at accept", metadata: ["ip": "\(remote?.ipAddress ?? "?")", "reason": "\(reason.rawValue)"])
            if let refused = warn {
                let ip = remote?.ipAddress ?? "?"
                // The line fail2ban matches (deploy/fail2ban/ptpchat-relay.conf): keep its shape.
                // Its filter expects `ip=` right after the message: the log handler sorts keys, and
                // none here or in the shard's logger (`loop`) sorts before `ip`.
                var metadata: Logger.Metadata = ["ip": "\(ip)", "reason": "\(reason.rawValue)", "refused": "\(refused)"]
                if let key, case .v6 = key { metadata["prefix"] = "\(key)" }
                shard.logger.warning("connections refused at accept", metadata: metadata)
            }
            if ban, let key, bans.ban(key, on: context.eventLoop) {
                noteBan(key, remote: remote, reason: reason)
            }
            child.close(promise: nil)
            if let pause { pauseAccepting(context: context, for: pause) }
        }
    }

    private func noteBan(_ key: AddressKey, remote: SocketAddress?, reason: DropReason) {
        shard.counters.drop(.addressBanned)
        let settings = bans.settings
        var metadata: Logger.Metadata = [
            "ip": "\(remote?.ipAddress ?? "?")", "reason": "\(DropReason.addressBanned.rawValue)", "refused_by": "\(reason.rawValue)",
            "refusals": "\(settings.afterRefusals)", "seconds": "\(settings.duration.nanoseconds / 1_000_000_000)",
        ]
        if case .v6 = key { metadata["prefix"] = "\(key)" }
        shard.logger.warning("address banned at the listening sockets", metadata: metadata)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        placer?.cycleEnded()
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        guard resumeTimer == nil else {
            isReadHeld = true
            return
        }
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelPause()
        bans.unregister(context.channel)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelPause()
        bans.unregister(context.channel)
    }

    private func cancelPause() {
        resumeTimer?.cancel()
        resumeTimer = nil
    }

    /// Stops accepting for `pause` (the rest of the current read cycle's connections still come,
    /// and meet the limits as usual). One count and one timer per pause.
    private func pauseAccepting(context: ChannelHandlerContext, for pause: TimeAmount) {
        guard resumeTimer == nil else { return }
        shard.counters.drop(.acceptPaused)
        if let pauses = limiter.notePause() {
            shard.logger.warning(
                "accepting paused: too many connections closed at accept",
                metadata: [
                    "reason": "\(DropReason.acceptPaused.rawValue)", "pause_ms": "\(pause.nanoseconds / 1_000_000)",
                    "pauses": "\(pauses)", "limit": "limits.accept_refusals_per_second",
                ])
        }
        resumeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: pause) { [self] in
            resumeTimer = nil
            if isReadHeld {
                isReadHeld = false
                context.read()
            }
        }
    }
}
