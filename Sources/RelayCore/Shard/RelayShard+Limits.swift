import NIOCore
import PTPProtocol
import RelayConfig

/// The per-connection limits of PROFILE.md section 10 the shard applies: the frame cap before and
/// after the HELLO, the per-node read budget's exemption for peers, and CONNECT per node and per
/// pair of nodes.
extension RelayShard {
    /// The frame cap for `connection` now: `FrameCaps.beforeHello` until its HELLO binds it, then
    /// `limits.max_frame_bytes`.
    func frameCapBytes(for connection: Connection) -> Int {
        let maxFrameBytes = configuration.limits.maxFrameBytes
        return connection.phase == .awaitingHello ? FrameCaps.beforeHello(maxFrameBytes: maxFrameBytes) : maxFrameBytes
    }

    /// Sets the decoder's cap of `connection` to the one in force (after its HELLO, on a reload).
    func updateFrameCap(of connection: Connection) {
        connection.frameCap?.bytes = frameCapBytes(for: connection)
    }

    /// A reload: open connections take the new frame cap and CONNECT budget at once (the per-node
    /// read budget is read by each `NodeRateLimiter` at its next `read()`; a connection opened
    /// while the budget was off gets one now).
    func applyLimitsToOpenConnections() {
        for connection in connections.values {
            updateFrameCap(of: connection)
            applyOutboundLimits(to: connection)
            applyNodeBudget(to: connection)
        }
    }

    /// The one place that decides whether a connection's pipeline has the per-node read budget:
    /// when a budget is set, in front of its handler (`ConnectionHandler.addRateLimiter`, which
    /// adds none twice), at open (its handler passes itself) and at a reload that sets one. A proven
    /// peer relay is exempt; a reload that turns the budget off leaves the limiters, which then hold
    /// no read.
    func applyNodeBudget(to connection: Connection, handler: ConnectionHandler? = nil) {
        guard !nodeRates.isUnlimited, !connection.isPeer, connection.phase != .closing,
            let handler = handler ?? connection.context.handler as? ConnectionHandler
        else { return }
        do {
            try handler.addRateLimiter(policy: self, context: connection.context)
        } catch {
            logger.warning(
                "could not put the per-node read budget on a connection",
                metadata: ["conn": "\(connection.logID)", "error": "\(error)"])
        }
    }

    /// The connection became a proven peer relay: its `NodeRateLimiter` stops counting it.
    func exemptFromNodeLimits(_ connection: Connection) {
        connection.context.triggerUserOutboundEvent(PeerRelayProven(), promise: nil)
    }

    /// One CONNECT from `connection` against `limits.connect_per_minute` (peer relays exempt).
    func admitConnect(from connection: Connection) -> Bool {
        if connection.isPeer { return true }
        let perMinute = configuration.limits.connectPerMinute
        let now = clock.now
        connection.connectBudget.reconfigure(rate: perMinute / 60, burst: perMinute, now: now)
        return connection.connectBudget.take(now: now)
    }

    /// One CONNECT between `source` and `destination` against `limits.connect_pair_per_minute`,
    /// charged by the relay that holds the sending node (peer relays exempt: the first relay
    /// counted it).
    func admitConnectPair(from connection: Connection, _ source: GUID, _ destination: GUID) -> Bool {
        if connection.isPeer { return true }
        return context.connectPairs.admit(
            source, destination, perMinute: configuration.limits.connectPairPerMinute, now: clock.now)
    }

    /// Counts a throttling episode of a connection's `NodeRateLimiter`.
    func noteThrottled(_ channel: Channel) {
        counters.drop(.throttled)
        logger.debug(
            "reading paused: node over its rate budget",
            metadata: ["peer": "\(channel.remoteAddress?.ipAddress ?? "?")", "reason": "\(DropReason.throttled.rawValue)"])
    }
}

/// The shard gives its connections' read budgets their rates (`nodeRates`, which a reload
/// replaces) and counts their throttling episodes.
extension RelayShard: NodeRatePolicy {}
