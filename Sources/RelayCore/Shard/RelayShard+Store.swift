import Foundation
import NIOCore
import PTPProtocol
import RelayStore

/// Store and forward (PROFILE.md section 6): messages for recipients that are not reachable are
/// written to the store; the sender hears about it only after the commit; stored messages go out
/// when their recipient says HELLO and are deleted when it ACKs them.
extension RelayShard {
    func wallClock() -> Double { Date().timeIntervalSince1970 }

    /// Seconds before a stored message is tried again after `attempts` deliveries without an ACK.
    func retryDelay(afterAttempts attempts: Int) -> Double {
        let base = max(configuration.timeouts.ack, 1)
        return min(base * pow(2, Double(max(attempts - 1, 0))), 300)
    }

    /// Submits messages to the store's writer; `completion` runs on this shard's loop after the
    /// commit (or the failure).
    func store(_ messages: [NewMessage], completion: @escaping ([InsertOutcome]) -> Void) {
        let bound = NIOLoopBound(completion, eventLoop: eventLoop)
        let shard = self
        context.store.submit(
            .insert(messages) { outcomes in
                shard.eventLoop.execute {
                    bound.value(outcomes)
                    shard.flushAll()
                }
            })
    }

    /// What a store outcome means for the sender of the message.
    func hopOutcome(_ outcome: InsertOutcome, recipients: Recipients) -> HopOutcome {
        switch outcome {
        case .stored:
            counters.stored += 1
            return .stored(recipients)
        case .duplicate:
            counters.drop(.duplicateMessage)
            return .stored(recipients)
        case .alreadyDelivered:
            counters.drop(.duplicateMessage)
            return .acked
        case .overQuota(let quota):
            counters.drop(.queueFull)
            logger.debug("store bound reached", metadata: ["bound": "\(quota.rawValue)", "recipients": "\(Array(recipients))"])
            return .failed(recipients, .queueFull)
        case .failed(let reason):
            counters.drop(.storeFailed)
            logger.warning("message not stored", metadata: ["reason": "\(reason)"])
            return .failed(recipients, .unreachable)
        }
    }

    /// A message for a recipient the relay has no route to: store it (one row per recipient, the
    /// frame narrowed to that recipient) and answer upstream after the commit.
    func storeForLater(_ envelope: Envelope, _ json: ReceivedJSON, _ delivery: Delivery, ttl: Int, sender: SenderTag) {
        let messageID = delivery.messageID
        let recipient = delivery.recipients[0]
        if recentDeliveries.contains(recipient: RecentDeliveries.key(recipient), messageID) {
            // Delivered and ACKed a moment ago (the sender missed the ACK): nothing to keep.
            counters.drop(.duplicateMessage)
            logger.debug("repeat of a delivered message not stored", metadata: ["msg_id": "\(messageID)", "recipient": "\(recipient)"])
            resolve(delivery.upstream, messageID: messageID, .acked)
            return
        }
        var frame = ByteBufferAllocator().buffer(capacity: json.bytes.count + 256)
        ForwardedFrames.unicast(
            &frame, verb: envelope.verb, data: envelope.data, from: json, messageID: messageID, ttl: ttl, sender: sender,
            recipients: Forwarding.narrowedRecipients(of: envelope, for: delivery.recipients))
        let message = NewMessage(
            recipient: recipient, messageID: messageID, sender: sender.address.id, frame: Array(frame.readableBytesView),
            createdAt: wallClock())
        logger.debug("recipient not connected: storing", metadata: ["msg_id": "\(messageID)", "recipient": "\(recipient)"])
        store([message]) { [self] outcomes in
            let outcome = outcomes.first ?? .failed("no outcome")
            resolve(delivery.upstream, messageID: messageID, hopOutcome(outcome, recipients: delivery.recipients))
            if outcome == .stored { announceStored(for: [recipient]) }
        }
    }

    /// The next hop's connection went away between routing and delivery: the message is stored
    /// for its recipients as it would have been sent (a stored message counts a failed attempt).
    func targetGone(_ delivery: Delivery, frame body: (inout ByteBuffer) -> Void) {
        let messageID = delivery.messageID
        let recipients = delivery.recipients
        if case .stored = delivery.upstream {
            resolve(delivery.upstream, messageID: messageID, .failed(recipients, .unreachable))
            return
        }
        logger.debug("next hop gone before delivery: storing", metadata: ["msg_id": "\(messageID)"])
        storeInstead(delivery, frame: body) { $0 }
    }

    /// Stores a live delivery's frame, as it would have been sent, for its recipients instead of
    /// sending it; its upstream hears the store's answer (`answer` may tell it why).
    func storeInstead(
        _ delivery: Delivery, frame body: (inout ByteBuffer) -> Void, answer: @escaping (HopOutcome) -> HopOutcome
    ) {
        let recipients = delivery.recipients
        var frame = ByteBufferAllocator().buffer(capacity: 512)
        body(&frame)
        let bytes = Array(frame.readableBytesView)
        let now = wallClock()
        let messages = recipients.map { recipient in
            NewMessage(recipient: recipient, messageID: delivery.messageID, sender: delivery.sender, frame: bytes, createdAt: now)
        }
        store(messages) { [self] outcomes in
            resolve(delivery.upstream, messageID: delivery.messageID, answer(hopOutcome(combined(outcomes), recipients: recipients)))
            if outcomes.contains(.stored) { announceStored(for: Array(recipients)) }
        }
    }

    /// One answer for several rows of the same message: the worst of them.
    func combined(_ outcomes: [InsertOutcome]) -> InsertOutcome {
        for outcome in outcomes {
            switch outcome {
            case .failed, .overQuota: return outcome
            default: continue
            }
        }
        if outcomes.contains(.stored) { return .stored }
        return outcomes.first ?? .failed("no outcome")
    }

    /// Messages were stored for these nodes: one reachable meanwhile (its HELLO read the store
    /// before the commit, or a route to it appeared) gets them from the next retry round.
    func announceStored(for recipients: [GUID]) {
        for recipient in recipients {
            guard let location = nextHop(for: recipient)?.location else { continue }
            enqueue(.storedBacklog(connection: location.connection, recipient: recipient), to: location.shard)
        }
    }

    // MARK: Delivering stored messages

    /// Reads the due messages for `recipient` off the event loop and sends them in arrival order
    /// to `connection`: the recipient's own, or the peer relay its route goes through.
    func deliverStored(for recipient: GUID, via connection: Connection) {
        guard connection.storedBacklog.beginRead(recipient) else { return }
        let connectionID = connection.id
        let shard = self
        storedInFlight.readStarted()
        context.store.due(for: recipient, now: wallClock(), on: eventLoop).assumeIsolated().whenComplete { result in
            defer { shard.storedInFlight.readFinished() }
            guard let connection = shard.connections[connectionID] else { return }
            switch result {
            case .success(let (messages, more)):
                connection.storedBacklog.endRead(recipient, more: more)
                // The route may have moved while the store was read: what is not for this
                // connection any more waits for the next round on the right one.
                guard shard.nextHop(for: recipient)?.location.connection == connectionID else {
                    if more || !messages.isEmpty { shard.announceStored(for: [recipient]) }
                    return
                }
                shard.sendStored(messages, for: recipient, to: connection)
            case .failure(let error):
                connection.storedBacklog.endRead(recipient, more: true)
                shard.logger.warning("cannot read the store", metadata: ["error": "\(error)"])
            }
            shard.flushAll()
        }
    }

    /// Delivers a client's own stored messages (after its HELLO). Nearly every node has none: the
    /// store's in-memory index says so without a read. A message stored for it after this check is
    /// announced to its connection once committed (`announceStored`), as one committed during a read.
    func deliverStored(to connection: Connection) {
        guard let recipient = connection.nodeID, context.store.mayHoldMessages(for: recipient) else { return }
        deliverStored(for: recipient, via: connection)
    }

    private func sendStored(_ messages: [StoredMessage], for recipient: GUID, to connection: Connection) {
        for message in messages where !storedInFlight.contains(message.seq) {
            storedInFlight.sent(message.seq, to: recipient, attemptsBefore: message.attempts)
            connection.storedQueue.append(message, for: recipient)
        }
        sendQueuedStored(to: connection)
    }

    /// Writes queued stored messages while the connection is under its outbound soft limit; the
    /// rest goes after its output is flushed (`continueStoredAfterFlush`) or, over the limit, when
    /// it drains (`writabilityChanged`).
    func sendQueuedStored(to connection: Connection) {
        guard !connection.storedQueue.isEmpty else { return }
        while !isOverSoftLimit(connection), let (message, recipient) = connection.storedQueue.popFirst() {
            // One copy of a message per connection at a time: a peer's ACK names only the message,
            // so the row of another recipient of the same message goes after it (the next round).
            guard !connection.awaiting.contains(message.messageID) else {
                storedInFlight.settled(message.seq)
                connection.storedBacklog.mark(recipient)
                continue
            }
            let delivery = Delivery(
                messageID: message.messageID, upstream: .stored(seq: message.seq), recipients: Recipients(recipient),
                sender: message.sender)
            let written = deliverFrame(to: connection, delivery) { out in
                out.writeBytes(message.frame)
            }
            if written > 0 { counters.storedSent += 1 }
        }
    }

    /// The connection's output went to its channel and the channel is under the soft limit: the
    /// next queued stored messages go in the next tick.
    func continueStoredAfterFlush(_ connection: Connection) {
        guard !connection.storedQueue.continuationScheduled else { return }
        connection.storedQueue.continuationScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            connection.storedQueue.continuationScheduled = false
            guard connection.phase == .bound else { return }
            sendQueuedStored(to: connection)
            if connection.storedQueue.isEmpty {
                // All written: the next rows of a backlog larger than one read. (Never from
                // `sendQueuedStored` itself: a store that answers at once would recurse.)
                for recipient in connection.storedBacklog.due {
                    deliverStored(for: recipient, via: connection)
                }
            }
            flushAll()
        }
    }

    /// The connection is gone: its queued stored messages stay in the store, no attempt counted.
    func releaseQueuedStored(of connection: Connection) {
        guard !connection.storedQueue.isEmpty else { return }
        for message in connection.storedQueue.removeAll() {
            storedInFlight.settled(message.seq)
        }
    }

    /// The outcome of a delivery of a stored message (its own, or that of a live copy of the same
    /// message it was folded into).
    func resolveStored(_ seq: Int64, messageID: GUID, _ outcome: HopOutcome, followers: [Upstream] = [], recipients: Recipients = []) {
        // Until the store has written the outcome, a retry must not read the row again.
        guard let entry = storedInFlight.settle(seq) else {
            for upstream in followers { resolve(upstream, messageID: messageID, outcome) }
            return
        }
        switch outcome {
        case .acked:
            storedDeliveryAcked(seq: seq, recipient: entry.recipient, messageID: messageID)
            for upstream in followers { resolve(upstream, messageID: messageID, .acked) }
        case .stored, .storedForSlowConsumer, .failed, .refused:
            storedDeliveryFailed(
                seq: seq, recipient: entry.recipient, attemptsBefore: entry.attempts, followers: followers, messageID: messageID,
                recipients: recipients)
        }
    }

    /// The recipient ACKed a stored message: delete it.
    private func storedDeliveryAcked(seq: Int64, recipient: GUID, messageID: GUID) {
        let shard = self
        context.store.submit(
            .acknowledged(seq: seq, recipient: recipient, messageID: messageID) { deleted in
                shard.eventLoop.execute {
                    shard.storedInFlight.deleted(seq)
                    if deleted { shard.counters.storedDelivered += 1 }
                }
            })
    }

    /// A stored message got no ACK: count the attempt; after `store.max_attempts` it is dropped.
    /// Senders of re-sent copies that were folded into this delivery (`followers`) hear what
    /// became of the stored message: `stored: true` while it is kept, `stored: false` once dropped.
    private func storedDeliveryFailed(
        seq: Int64, recipient: GUID, attemptsBefore: Int, followers: [Upstream] = [], messageID: GUID = .zero,
        recipients: Recipients = []
    ) {
        let next = wallClock() + retryDelay(afterAttempts: attemptsBefore + 1)
        let shard = self
        context.store.submit(
            .attemptFailed(seq: seq, nextAttemptAt: next) { outcome in
                shard.eventLoop.execute {
                    shard.storedInFlight.settled(seq)
                    for upstream in followers {
                        let answer: HopOutcome = outcome == .retry ? .stored(recipients) : .failed(recipients, .unreachable)
                        shard.resolve(upstream, messageID: messageID, answer)
                    }
                    if !followers.isEmpty { shard.flushAll() }
                    switch outcome {
                    case .dropped:
                        shard.counters.drop(.storeGaveUp)
                        shard.logger.debug("stored message dropped after its last attempt", metadata: ["seq": "\(seq)"])
                    case .retry:
                        shard.announceStored(for: [recipient])
                    case .gone, .failed:
                        break
                    }
                }
            })
    }

    /// Every second: nodes with stored messages left get those now due.
    func retryStored() {
        // One over its outbound soft limit gets its backlog when it drains (`writabilityChanged`).
        // One still writing an earlier read (`storedQueue`) reads on when that is written.
        for connection in connections.values where connection.phase == .bound && !connection.isOverSoftLimit && connection.storedQueue.isEmpty {
            for recipient in connection.storedBacklog.due {
                deliverStored(for: recipient, via: connection)
            }
        }
    }

    /// Deletes messages past `store.max_age` (shard 0 only, every minute or sooner).
    func expireStored() {
        let shard = self
        context.store.submit(
            .expire(now: wallClock()) { removed in
                guard removed > 0 else { return }
                shard.eventLoop.execute {
                    shard.counters.storeExpired += removed
                    shard.logger.info("expired stored messages", metadata: ["count": "\(removed)"])
                }
            })
    }
}
