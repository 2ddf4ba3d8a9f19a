import NIOCore
import PTPProtocol
import RelayStore

/// One next hop of a message and the recipients behind it.
struct Hop {
    var nextHop: NextHop
    var recipients: Recipients
}

extension RelayShard {
    // MARK: Ingress

    /// Routes an ACKed unicast verb (MESSAGE, CERTIFICATE, KEY, GETCERTIFICATE, GETKEY) from a
    /// bound connection toward its recipients.
    func forwardUnicast(from connection: Connection, _ envelope: Envelope, _ bytes: UnsafeRawBufferPointer) {
        guard let messageID = envelope.messageID, let senderTag = sender(of: envelope, on: connection) else { return }
        let relayID = relay.address.id
        let senderID = senderTag.address.id

        switch envelope.verb {
        case .getCertificate where envelope.recipientID == nil || envelope.recipientID == relayID:
            sendNack(to: connection, refusing: messageID, reason: .noCertificate)
            return
        case .getKey where envelope.recipientID == nil || envelope.recipientID == relayID:
            sendNack(to: connection, refusing: messageID, reason: .notAMember)
            return
        default:
            break
        }

        let ttl = Forwarding.outgoingTTL(of: envelope)
        if ttl < 1 {
            counters.drop(.ttlExpired)
            logger.debug("ttl expired", metadata: ["conn": "\(connection.logID)", "msg_id": "\(messageID)"])
            sendNack(to: connection, refusing: messageID, reason: .ttlExpired)
            return
        }
        let json = ReceivedJSON(tape: reader.tape, bytes: bytes)

        let destinations = envelope.verb == .message ? envelope.recipients : [envelope.recipientID!]
        if clientView == .channels && !connection.isPeer {
            for recipient in destinations where recipient != relayID { noteContact(connection, recipient) }
        }
        if destinations.count == 1 {
            // The common case, without the bookkeeping of several next hops.
            let recipient = destinations[0]
            guard recipient != senderID && recipient != relayID else {
                sendAck(to: connection, acknowledging: messageID)
                return
            }
            let delivery = Delivery(
                messageID: messageID, upstream: .connection(shard: index, id: connection.id), recipients: destinations,
                sender: senderID)
            guard let nextHop = nextHop(for: recipient) else {
                storeForLater(envelope, json, delivery, ttl: ttl, sender: senderTag)
                return
            }
            forward(envelope, json, delivery, ttl: ttl, sender: senderTag, to: nextHop)
            return
        }

        var hops: [Hop] = []
        var unreachable = Recipients()
        for recipient in destinations where recipient != senderID && recipient != relayID {
            if unreachable.contains(recipient) || hops.contains(where: { $0.recipients.contains(recipient) }) {
                continue
            }
            if let nextHop = nextHop(for: recipient) {
                if let hop = hops.firstIndex(where: { $0.nextHop == nextHop }) {
                    hops[hop].recipients.append(recipient)
                } else {
                    hops.append(Hop(nextHop: nextHop, recipients: Recipients(recipient)))
                }
            } else {
                unreachable.append(recipient)
            }
        }

        let outstanding = hops.count + unreachable.count
        guard outstanding > 0 else {
            sendAck(to: connection, acknowledging: messageID)
            return
        }
        let upstream: Upstream =
            outstanding > 1
            ? .split(shard: index, id: connection.id, token: pending.open(outstanding: outstanding))
            : .connection(shard: index, id: connection.id)
        for hop in hops {
            let delivery = Delivery(messageID: messageID, upstream: upstream, recipients: hop.recipients, sender: senderID)
            forward(envelope, json, delivery, ttl: ttl, sender: senderTag, to: hop.nextHop)
        }
        for recipient in unreachable {
            let delivery = Delivery(messageID: messageID, upstream: upstream, recipients: Recipients(recipient), sender: senderID)
            storeForLater(envelope, json, delivery, ttl: ttl, sender: senderTag)
        }
    }

    /// The node a message comes from: the client itself, or for a peer relay the origin the
    /// message names (it carries other nodes' traffic).
    @inline(__always)
    func sender(of envelope: Envelope, on connection: Connection) -> SenderTag? {
        guard connection.isPeer else { return connection.tag }
        guard let origin = envelope.origin else { return nil }
        // The tag the route table gave the node, when it names it the same: no new one per message.
        if let known = directory.tag(of: origin.id), known.address.name == origin.name { return known }
        return SenderTag(origin)
    }

    /// The copy of a unicast message for one next hop: `recipient` narrowed to those behind it.
    @inline(__always)
    private func forward(
        _ envelope: Envelope, _ json: ReceivedJSON, _ delivery: Delivery, ttl: Int, sender: SenderTag, to nextHop: NextHop
    ) {
        let recipients = Forwarding.narrowedRecipients(of: envelope, for: delivery.recipients)
        // The closure captures the two fields it needs, not the envelope (no copy of it per hop).
        let verb = envelope.verb
        let data = envelope.data
        let messageID = delivery.messageID
        send(delivery, verb: verb, to: nextHop) {
            ForwardedFrames.unicast(&$0, verb: verb, data: data, from: json, messageID: messageID, ttl: ttl, sender: sender, recipients: recipients)
        }
    }

    // MARK: The one send path

    /// Sends a frame that awaits the next hop's answer: straight into the connection's output when
    /// it is on this shard, else into the batch for its shard. Counted as relayed `verb`.
    @inline(__always)
    func send(_ delivery: Delivery, verb: Verb, to nextHop: NextHop, frame body: (inout ByteBuffer) -> Void) {
        let location = nextHop.location
        if location.shard == index {
            // Lent by the table (no retain): a delivery writes, stores or defers; it closes nothing.
            guard let written = connections.withConnection(location.connection, { deliverFrame(to: $0, delivery, body: body) }) else {
                targetGone(delivery, frame: body)
                return
            }
            if written > 0 { counters.relayed(verb, bytes: written) }
        } else {
            let frame = outbox.appendFrame(for: location.shard, shardCount: shards.count, body)
            if let compact = CompactCommand.deliver(to: location.connection, frame: frame, delivery) {
                outbox.append(compact, for: location.shard, shardCount: shards.count)
            } else {
                outbox.append(.deliver(connection: location.connection, frame: frame, delivery), for: location.shard, shardCount: shards.count)
            }
            counters.relayed(verb, bytes: Int(frame.count))
        }
    }

    /// Sends a frame that expects no answer (CONNECT, the relay's own ROUTING) to a next hop; one
    /// gone meanwhile loses it. `relayed` counts it as another node's message passed on.
    func send(verb: Verb, to nextHop: NextHop, relayed: Bool = true, frame body: (inout ByteBuffer) -> Void) {
        let location = nextHop.location
        let written: Int
        if location.shard == index {
            guard let target = connections[location.connection] else { return }
            let before = target.out.writerIndex
            write(to: target, body)
            written = target.out.writerIndex - before
        } else {
            let frame = outbox.appendFrame(for: location.shard, shardCount: shards.count, body)
            outbox.append(.send(connection: location.connection, frame: frame), for: location.shard, shardCount: shards.count)
            written = Int(frame.count)
        }
        if relayed { counters.relayed(verb, bytes: written) }
    }

    // MARK: Egress

    /// Writes a frame with `body` to `connection` and registers it as awaiting the connection's
    /// ACK. Returns the frame's size, or 0 when it is a repeat that must not be delivered again
    /// (its upstream is answered from the first delivery, and what `body` wrote is taken back).
    @discardableResult
    func deliverFrame(to connection: Connection, _ delivery: Delivery, body: (inout ByteBuffer) -> Void) -> Int {
        guard connection.phase == .bound else {
            targetGone(delivery, frame: body)
            return 0
        }
        let messageID = delivery.messageID
        // A peer relay carries many recipients' copies of a message; the de-duplication is the
        // last relay's, at the recipient's own connection.
        if !connection.isPeer && recentDeliveries.contains(recipient: connection.recipientKey, messageID) {
            counters.drop(.duplicateMessage)
            logger.debug("repeat of an ACKed message not delivered again", metadata: ["conn": "\(connection.logID)", "msg_id": "\(messageID)"])
            resolve(delivery.upstream, messageID: messageID, .acked)
            return 0
        }
        // Over its outbound soft limit: kept in the store until it drains (PROFILE.md section 10).
        // A repeat of a message it has not ACKed yet is still folded into that delivery below.
        if isOverSoftLimit(connection) && !connection.awaiting.contains(messageID) {
            deferForSlowConsumer(connection, delivery, body: body)
            return 0
        }
        // Another narrowed copy of a message awaited on this peer connection, for recipients the
        // copy in flight does not serve (the copies took different paths and met here): it waits
        // for that copy's answer. It is not a repeat, and the other copy's ACK does not answer it.
        if connection.isPeer, let awaited = connection.awaiting[messageID],
            delivery.recipients.contains(where: { !awaited.recipients.contains($0) })
        {
            var frame = ByteBufferAllocator().buffer(capacity: 512)
            body(&frame)
            connection.awaiting[messageID]!.held = (awaited.held ?? []) + [HeldCopy(delivery: delivery, frame: frame)]
            return frame.readableBytes
        }
        // Only an existing client that has not met the sender yet needs the frame read back.
        let before =
            connection.isLegacy && !connection.introduced.contains(delivery.sender)
            ? writeIntroducingSender(to: connection, body) : writeFrame(to: connection, body)
        let length = connection.out.writerIndex - before
        // A peer relay ACKs only after its own next hop did (or stored it): it gets twice as long,
        // so its answer, not this relay's timeout, settles the hop.
        let deadline = clock.now + (connection.isPeer ? ackTimeout * 2 : ackTimeout)
        guard connection.registerAwaiting(messageID, delivery, deadline: deadline, offset: before, length: length) else {
            connection.out.moveWriterIndex(to: before)
            counters.drop(.duplicateMessage)
            logger.debug("repeat of an awaited message not delivered again", metadata: ["conn": "\(connection.logID)", "msg_id": "\(messageID)"])
            return 0
        }
        if clientView == .channels { noteContact(connection, delivery.sender) }
        if connection.isLegacy { connection.unconfirmedWrites.append(messageID) }
        counters.framesOut += 1
        counters.bytesOut += length
        markDirty(connection)
        return length
    }

    /// An ACK from a neighbour: the hop for that message is done.
    func handleAck(from connection: Connection, messageID: GUID) {
        // `delivered` remembers it: the line is asked for now, and written after the answers
        // upstream, so that it has time to come.
        if !connection.isPeer { recentDeliveries.prefetchForWrite(recipient: connection.recipientKey, messageID) }
        guard let entry = connection.awaiting.removeValue(forKey: messageID) else {
            counters.drop(.unknownAck)
            logger.debug("ACK for no awaited message", metadata: ["conn": "\(connection.logID)", "msg_id": "\(messageID)"])
            return
        }
        counters.acksReceived += 1
        delivered(entry, messageID: messageID, on: connection)
        releaseHeld(entry, on: connection)
    }

    /// A peer connection answered a copy of a message (or will not): the copies held behind it
    /// go now (stored when the connection is gone).
    func releaseHeld(_ entry: AwaitingAck, on connection: Connection) {
        for copy in entry.held ?? [] {
            let frame = copy.frame
            deliverFrame(to: connection, copy.delivery) { $0.writeImmutableBuffer(frame) }
        }
    }

    /// The next hop has the message (its ACK, or for the existing client the completed write):
    /// remembered for de-duplication, and everyone waiting for it hears so.
    func delivered(_ entry: AwaitingAck, messageID: GUID, on connection: Connection) {
        resolve(entry.upstream, messageID: messageID, .acked)
        for upstream in entry.more ?? [] { resolve(upstream, messageID: messageID, .acked) }
        if !connection.isPeer { recentDeliveries.insert(recipient: connection.recipientKey, messageID) }
    }

    /// A NACK from a neighbour for a message the relay delivered to it: that hop failed, and the
    /// hop before hears it in the refusing node's name. A stored message the recipient refuses
    /// counts a failed attempt.
    func handleNack(from connection: Connection, _ envelope: Envelope) {
        guard let messageID = envelope.messageID, let entry = connection.awaiting.removeValue(forKey: messageID),
            let neighbour = connection.tag
        else {
            counters.drop(.unknownAck)
            logger.debug("NACK for no awaited message", metadata: ["conn": "\(connection.logID)"])
            return
        }
        defer { releaseHeld(entry, on: connection) }
        // A client refuses for itself; a peer relay passes on the NACK of whoever refused further on.
        let refuser = connection.isPeer ? envelope.origin.map(SenderTag.init) ?? neighbour : neighbour
        let refusal = Refusal(
            node: refuser, reason: envelope.reason ?? NackReason.unreachable.rawValue, stored: envelope.nackStored,
            recipients: entry.recipients)
        if case .stored(let seq) = entry.upstream {
            if connection.isPeer && refusal.stored {
                // The peer took custody (PROFILE.md section 9): the stored row is done here.
                resolveStored(seq, messageID: messageID, .acked)
                for upstream in entry.more ?? [] { resolve(upstream, messageID: messageID, .refused(refusal)) }
                return
            }
            let reason = NackReason(rawValue: refusal.reason) ?? .unreachable
            resolveStored(
                seq, messageID: messageID, .failed(entry.recipients, reason), followers: entry.more ?? [], recipients: entry.recipients)
            return
        }
        resolve(entry.upstream, messageID: messageID, .refused(refusal))
        for upstream in entry.more ?? [] { resolve(upstream, messageID: messageID, .refused(refusal)) }
    }

    /// The envelope of a whole frame the relay wrote (length prefix included), read back off the
    /// hot path: when a failed delivery is stored, or an existing client needs its sender introduced.
    /// Its own reader: the shard's tape still holds the frame being forwarded.
    static func envelope(ofFrame frame: ByteBuffer) -> Envelope? {
        var reader = MessageReader()
        return frame.getSlice(at: frame.readerIndex + 4, length: frame.readableBytes - 4)?.withUnsafeReadableBytes {
            try? reader.read($0)
        }
    }

    /// A delivery that will get no ACK. A message from the store counts an attempt; a live message
    /// not refused by the next hop itself (no ACK in time, connection lost) is stored for a later
    /// try, and its senders hear `stored: true` once that is committed.
    func failHop(_ entry: AwaitingAck, messageID: GUID, reason: NackReason, on connection: Connection, storable: Bool) {
        if case .stored(let seq) = entry.upstream {
            resolveStored(
                seq, messageID: messageID, .failed(entry.recipients, reason), followers: entry.more ?? [], recipients: entry.recipients)
            return
        }
        var upstreams = [entry.upstream]
        upstreams.append(contentsOf: entry.more ?? [])
        guard storable, !entry.recipients.isEmpty, let frame = entry.frame(pending: connection.out) else {
            for upstream in upstreams { resolve(upstream, messageID: messageID, .failed(entry.recipients, reason)) }
            return
        }
        // One row per recipient behind this connection (a peer relay may serve several), each
        // with the frame as it was sent.
        let bytes = Array(frame.readableBytesView)
        let now = wallClock()
        let messages = entry.recipients.map { recipient in
            NewMessage(
                recipient: recipient, messageID: messageID, sender: entry.sender, frame: bytes, createdAt: now, attempts: 1,
                nextAttemptAt: now + retryDelay(afterAttempts: 1))
        }
        store(messages) { [self] outcomes in
            let result = hopOutcome(combined(outcomes), recipients: entry.recipients)
            if case .stored = result { announceStored(for: Array(entry.recipients)) }
            for upstream in upstreams { resolve(upstream, messageID: messageID, result) }
        }
    }

    /// Deliveries whose ACK did not come within `timeouts.ack` count as not reached (for the
    /// existing client, which never ACKs, the deadline is the write's). Each connection's in the
    /// order they were delivered.
    func expireAcks(now: NIODeadline = .now()) {
        for connection in connections.values {
            guard let due = connection.awaiting.nextDeadline, due <= now else { continue }
            if connection.isLegacy {
                guard connection.awaiting.hasExpired(now: now) else { continue }
                // Its socket took nothing for `timeouts.ack`. Closing discards what was not written,
                // so what it awaited is stored (when the channel goes) and never delivered twice.
                counters.drop(.slowConsumer)
                logger.info("closing an existing client that takes no data", metadata: ["conn": "\(connection.logID)"])
                close(connection, reason: "no write completed within \(configuration.timeouts.ack) s")
                continue
            }
            for (messageID, entry) in connection.awaiting.removeExpired(now: now) {
                counters.drop(.ackTimeout)
                logger.debug("no ACK in time", metadata: ["conn": "\(connection.logID)", "msg_id": "\(messageID)"])
                failHop(entry, messageID: messageID, reason: .unreachable, on: connection, storable: true)
                releaseHeld(entry, on: connection)
            }
        }
    }

    // MARK: Back upstream

    /// Takes a next hop's answer to whoever waits for it: the store, or the connection the message
    /// came in on (on its own shard).
    @inline(__always)
    func resolve(_ upstream: Upstream, messageID: GUID, _ outcome: HopOutcome) {
        switch upstream {
        case .stored(let seq):
            resolveStored(seq, messageID: messageID, outcome)
        case .connection(let shard, _), .split(let shard, _, _):
            if shard == index {
                // The common case, without building a command.
                answer(upstream, messageID: messageID, outcome)
            } else if case .acked = outcome, case .connection(_, let id) = upstream {
                outbox.append(CompactCommand.ack(on: id, messageID), for: shard, shardCount: shards.count)
            } else {
                outbox.append(.answer(upstream, messageID: messageID, outcome), for: shard, shardCount: shards.count)
            }
        }
    }

    /// On the shard of the connection the message came in on: ACK or NACK it. A message split
    /// over several next hops is ACKed once every one answered and one of them ACKed; each that
    /// fails is NACKed at once, naming its recipients.
    func answer(_ upstream: Upstream, messageID: GUID, _ outcome: HopOutcome) {
        switch upstream {
        case .stored(let seq):
            resolveStored(seq, messageID: messageID, outcome)
        case .connection(_, let id):
            // Lent by the table (no retain): the ACK or NACK is written, nothing closes it.
            connections.withConnection(id) { connection in
                switch outcome {
                case .acked: sendAck(to: connection, acknowledging: messageID)
                case .stored, .storedForSlowConsumer, .failed, .refused: sendNack(to: connection, refusing: messageID, outcome)
                }
            }
        case .split(_, let id, let token):
            let connection = connections[id]
            let ackNow: Bool
            switch outcome {
            case .acked:
                ackNow = pending.answered(token, acked: true)
            case .stored, .storedForSlowConsumer, .failed, .refused:
                if let connection { sendNack(to: connection, refusing: messageID, outcome) }
                ackNow = pending.answered(token, acked: false)
            }
            if ackNow, let connection { sendAck(to: connection, acknowledging: messageID) }
        }
    }

    private func sendNack(to connection: Connection, refusing messageID: GUID, _ outcome: HopOutcome) {
        switch outcome {
        case .acked:
            break
        case .stored(let recipients):
            sendNack(to: connection, refusing: messageID, reason: .unreachable, stored: true, recipients: recipients)
        case .storedForSlowConsumer(let recipients):
            sendNack(to: connection, refusing: messageID, reason: .slowConsumer, stored: true, recipients: recipients)
        case .failed(let recipients, let reason):
            sendNack(to: connection, refusing: messageID, reason: reason, stored: false, recipients: recipients)
        case .refused(let refusal):
            counters.nacksPassedOn += 1
            write(to: connection) { out in
                RelayFrames.nack(
                    &out, messageID: newMessageID(), refusing: messageID, reason: refusal.reason, stored: refusal.stored,
                    recipients: refusal.recipients, by: refusal.node)
            }
        }
    }

    // MARK: ACK and NACK to the previous hop

    /// The ACK's head `msg_id` is the acknowledged message's id: tools that read the first
    /// `msg_id` of the frame find the right one, and it is as unique as the message.
    func sendAck(to connection: Connection, acknowledging messageID: GUID) {
        counters.acksSent += 1
        write(to: connection) { out in
            ackTemplate.write(&out, messageID: messageID, acknowledging: messageID)
        }
    }

    func sendNack(
        to connection: Connection, refusing messageID: GUID, reason: NackReason, stored: Bool = false, recipients: Recipients = []
    ) {
        counters.nack(reason)
        write(to: connection) { out in
            RelayFrames.nack(
                &out, messageID: newMessageID(), refusing: messageID, reason: reason, stored: stored,
                recipients: recipients, relay: relay)
        }
    }
}
