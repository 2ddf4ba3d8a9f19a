import NIOCore
import PTPProtocol
import RelayConfig
import RelayStore

/// The outbound buffer limits of PROFILE.md section 10.
///
/// Soft (`limits.outbound_buffer_bytes`): NIO's write-buffer water marks (high: the limit, low: half
/// of it) tell when a connection's unwritten output passes it; from then until the channel drains
/// below the low mark the connection is *over its soft limit*: unicast messages for it are stored
/// as for an unreachable recipient (the sender hears NACK `slow_consumer`, `stored: true`) and
/// floods to it are dropped (`slow_consumer`). Once it drains, what the store holds for it is
/// delivered, as for a recipient that reconnects.
///
/// Hard (`limits.outbound_buffer_max_bytes`): at a flush of a connection over its soft limit, more
/// than this unwritten closes it (`slow_consumer`); what awaited its ACK is stored when it goes
/// (`closed`).
///
/// Peer relays get the same rules, per next hop: a slow peer's unicast is stored for the nodes
/// behind it and floods to it are dropped, so what still fills its buffer is its own traffic's
/// ACKs and NACKs and ROUTING. Its link is closed only past the hard limit like a client's (the
/// dialer then reconnects): the memory bound holds for every connection.
///
/// Both limits are read from the settings in force: a reload sets the water marks of open
/// channels (`applyOutboundLimits`), and the hard limit is checked against the new value at the
/// connection's next flush (a lowered limit never closes a connection by itself).
extension RelayShard {
    /// NIO's water marks for `limits`: high at the soft limit, low at half of it. With no soft
    /// limit (0) the high mark is the hard limit, so that passing it still reaches the check.
    static func waterMark(for limits: RelayConfiguration.Limits) -> ChannelOptions.Types.WriteBufferWaterMark {
        let soft = limits.outboundBufferBytes > 0 ? limits.outboundBufferBytes : limits.outboundBufferMaxBytes
        guard soft > 0 else { return .init(low: Int.max / 2, high: Int.max) }
        let low = max(soft / 2, 1)
        return .init(low: low, high: max(soft, low + 1))
    }

    /// Sets the connection's water marks from the settings in force (at open and at a reload).
    func applyOutboundLimits(to connection: Connection) {
        let mark = Self.waterMark(for: configuration.limits)
        try? connection.context.channel.syncOptions?.setOption(.writeBufferWaterMark, value: mark)
    }

    /// Whether new output for the connection must wait: its channel is over the high water mark,
    /// or what this tick gathered for it already passes the soft limit.
    @inline(__always)
    func isOverSoftLimit(_ connection: Connection) -> Bool {
        if connection.isOverSoftLimit { return true }
        let soft = configuration.limits.outboundBufferBytes
        return soft > 0 && connection.out.readableBytes >= soft
    }

    /// The channel's writability changed (NIO's water marks). Drained: the store's backlog for it goes now.
    func writabilityChanged(_ connection: Connection, isWritable: Bool) {
        guard connection.phase != .closing else { return }
        if !isWritable {
            guard !connection.isOverSoftLimit else { return }
            connection.isOverSoftLimit = true
            logger.debug("connection over its outbound soft limit", metadata: ["conn": "\(connection.logID)"])
            return
        }
        guard connection.isOverSoftLimit else { return }
        connection.isOverSoftLimit = false
        logger.debug("connection drained below its outbound soft limit", metadata: ["conn": "\(connection.logID)"])
        guard connection.phase == .bound else { return }
        if connection.storedQueue.isEmpty {
            for recipient in connection.storedBacklog.due {
                deliverStored(for: recipient, via: connection)
            }
        } else {
            sendQueuedStored(to: connection)
        }
        // The event comes from the channel, not from a piece of the shard's work that ends with a flush.
        scheduleFlush()
    }

    /// A unicast delivery for a connection over its soft limit: a live message is stored for its
    /// recipients (NACK `slow_consumer`, `stored: true` after the commit); one from the store goes
    /// back to it untouched (no attempt counted) and waits for the drain.
    func deferForSlowConsumer(_ connection: Connection, _ delivery: Delivery, body: (inout ByteBuffer) -> Void) {
        let messageID = delivery.messageID
        let recipients = delivery.recipients
        logger.debug(
            "next hop over its outbound soft limit: storing", metadata: ["conn": "\(connection.logID)", "msg_id": "\(messageID)"])
        if case .stored(let seq) = delivery.upstream {
            storedInFlight.settled(seq)
            for recipient in recipients { connection.storedBacklog.mark(recipient) }
            return
        }
        counters.drop(.slowConsumer)
        var frame = ByteBufferAllocator().buffer(capacity: 512)
        body(&frame)
        let bytes = Array(frame.readableBytesView)
        let now = wallClock()
        let messages = recipients.map { recipient in
            NewMessage(recipient: recipient, messageID: messageID, sender: delivery.sender, frame: bytes, createdAt: now)
        }
        store(messages) { [self] outcomes in
            var result = hopOutcome(combined(outcomes), recipients: recipients)
            if case .stored(let stored) = result { result = .storedForSlowConsumer(stored) }
            resolve(delivery.upstream, messageID: messageID, result)
            if outcomes.contains(.stored) { announceStored(for: Array(recipients)) }
        }
    }

    /// After a flush of a connection over its soft limit: past the hard limit it is closed.
    func checkHardLimit(_ connection: Connection) {
        let limit = configuration.limits.outboundBufferMaxBytes
        guard limit > 0, connection.phase != .closing else { return }
        let buffered = bufferedBytes(connection)
        guard buffered > limit else { return }
        counters.drop(.slowConsumer)
        logger.info(
            "closing slow consumer", metadata: ["conn": "\(connection.logID)", "buffered": "\(buffered)", "limit": "\(limit)"])
        // Not `close`: its flush would add to what it does not read. What awaited its ACK is
        // stored when the channel goes (`closed`).
        connection.phase = .closing
        connection.context.close(promise: nil)
    }
}
