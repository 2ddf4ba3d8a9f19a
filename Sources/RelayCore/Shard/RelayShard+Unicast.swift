import NIOCore
import PTPProtocol
import RelayStore

/// A message this shard forwarded to several next hops, waiting for all of them before the hop it
/// came from gets its ACK. Single-hop messages need none: the waiter carries all there is.
struct PendingForward {
    var outstanding: Int
    var acked: Int
}

enum HopOutcome {
    case acked
    /// Durably stored for these recipients: the sender hears NACK `unreachable`, `stored: true`.
    case stored(Recipients)
    case failed(Recipients, NackReason)
}

/// One next hop of a message and the recipients behind it.
struct Hop {
    var location: NodeLocation
    var recipients: Recipients
}

/// Deliveries in the order their ACK is due (every delivery waits the same `timeouts.ack`).
struct AckDeadlineQueue {
    struct Entry {
        var deadline: NIODeadline
        var connection: UInt64
        var messageID: GUID
    }

    private var entries = CircularBuffer<Entry>(initialCapacity: 1024)

    mutating func append(_ entry: Entry) { entries.append(entry) }

    mutating func popExpired(now: NIODeadline) -> Entry? {
        guard let first = entries.first, first.deadline <= now else { return nil }
        return entries.removeFirst()
    }

    var count: Int { entries.count }
}

extension RelayShard {
    // MARK: Ingress

    /// Routes an ACKed unicast verb (MESSAGE, CERTIFICATE, KEY, GETCERTIFICATE, GETKEY) from a
    /// bound connection toward its recipients.
    func forwardUnicast(from connection: Connection, _ envelope: Envelope, _ bytes: UnsafeRawBufferPointer) {
        guard let messageID = envelope.messageID, let senderTag = connection.tag else { return }
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

        let ttl = min(envelope.isLabelledChat ? context.maxTTL : envelope.ttl, context.maxTTL)
        if ttl - 1 < 1 {
            counters.drop(.ttlExpired)
            logger.debug("ttl expired", metadata: ["conn": "\(connection.logID)", "msg_id": "\(messageID)"])
            sendNack(to: connection, refusing: messageID, reason: .ttlExpired)
            return
        }

        let destinations = envelope.verb == .message ? envelope.recipients : [envelope.recipientID!]
        if destinations.count == 1 {
            // The common case, without the bookkeeping of several next hops.
            let recipient = destinations[0]
            guard recipient != senderID && recipient != relayID else {
                sendAck(to: connection, acknowledging: messageID)
                return
            }
            let waiter = Waiter(shard: index, from: connection.id, token: 0)
            guard let location = locate(recipient) else {
                storeForLater(envelope, bytes, messageID: messageID, ttl: ttl - 1, sender: senderTag, recipient: recipient, waiter: waiter)
                return
            }
            deliver(envelope, bytes, messageID: messageID, ttl: ttl - 1, sender: senderTag, waiter: waiter,
                    hop: Hop(location: location, recipients: destinations))
            return
        }

        var hops: [Hop] = []
        var unreachable = Recipients()
        do {
            for recipient in destinations where recipient != senderID && recipient != relayID {
                if unreachable.contains(recipient) || hops.contains(where: { $0.recipients.contains(recipient) }) {
                    continue
                }
                if let location = locate(recipient) {
                    if let hop = hops.firstIndex(where: { $0.location == location }) {
                        hops[hop].recipients.append(recipient)
                    } else {
                        hops.append(Hop(location: location, recipients: Recipients(recipient)))
                    }
                } else {
                    unreachable.append(recipient)
                }
            }
        }

        let outstanding = hops.count + unreachable.count
        guard outstanding > 0 else {
            sendAck(to: connection, acknowledging: messageID)
            return
        }
        var token: UInt64 = 0
        if outstanding > 1 {
            nextToken += 1
            token = nextToken
            pending[token] = PendingForward(outstanding: outstanding, acked: 0)
        }
        let waiter = Waiter(shard: index, from: connection.id, token: token)
        for hop in hops {
            deliver(envelope, bytes, messageID: messageID, ttl: ttl - 1, sender: senderTag, waiter: waiter, hop: hop)
        }
        for recipient in unreachable {
            storeForLater(envelope, bytes, messageID: messageID, ttl: ttl - 1, sender: senderTag, recipient: recipient, waiter: waiter)
        }
    }

    /// Sends the message to one next hop: straight into the connection's output when it is on
    /// this shard, else into the batch for its shard.
    @inline(__always)
    private func deliver(
        _ envelope: Envelope, _ bytes: UnsafeRawBufferPointer, messageID: GUID, ttl: Int, sender: SenderTag,
        waiter: Waiter, hop: Hop
    ) {
        let verb = envelope.verb
        let narrowed = verb == .message && (hop.recipients.count != envelope.recipients.count || envelope.isLabelledChat)
        let recipients = narrowed ? hop.recipients : nil
        if hop.location.shard == index {
            guard let target = connections[hop.location.connection], target.phase == .bound else {
                targetGone(waiter: waiter, messageID: messageID, recipients: hop.recipients, sender: sender.address.id) {
                    writeForwarded(&$0, envelope, bytes, messageID: messageID, ttl: ttl, sender: sender, recipients: recipients)
                }
                return
            }
            let written = deliverFrame(to: target, messageID: messageID, waiter: waiter, recipients: hop.recipients, sender: sender.address.id) {
                writeForwarded(&$0, envelope, bytes, messageID: messageID, ttl: ttl, sender: sender, recipients: recipients)
            }
            if written > 0 { counters.relayed(verb, bytes: written) }
        } else {
            let shard = batch(for: hop.location.shard)
            let range = outbox[shard].appendFrame { writeForwarded(&$0, envelope, bytes, messageID: messageID, ttl: ttl, sender: sender, recipients: recipients) }
            outbox[shard].commands.append(
                .deliver(
                    connection: hop.location.connection, frame: range, messageID: messageID, waiter: waiter,
                    recipients: hop.recipients, sender: sender.address.id))
            counters.relayed(verb, bytes: range.count)
        }
    }

    /// The frame for one next hop: the exact head, `msg_data` copied, `recipient` narrowed when
    /// `recipients` is given.
    @inline(__always)
    func writeForwarded(
        _ out: inout ByteBuffer, _ envelope: Envelope, _ bytes: UnsafeRawBufferPointer, messageID: GUID, ttl: Int,
        sender: SenderTag, recipients: Recipients?
    ) {
        let tape = reader.tape
        FrameWriter.write(&out, verb: envelope.verb, messageID: messageID, ttl: ttl, flood: false, sender: sender) { out in
            if let recipients {
                out.writeASCII("{\"recipient\":")
                FrameWriter.writeRecipients(&out, recipients)
                FrameWriter.copyMembers(&out, tape: tape, bytes: bytes, object: envelope.data, leadingComma: true) {
                    $0.count == 9 && JSONTape.equals("recipient", $0, 0, 9)
                }
                out.writeInteger(UInt8(ascii: "}"))
            } else {
                FrameWriter.copyValue(&out, tape: tape, bytes: bytes, token: envelope.data)
            }
        }
    }

    // MARK: Egress

    /// Writes a frame with `body` to `connection` and registers it as awaiting the connection's
    /// ACK. Returns the frame's size, or 0 when it is a repeat that must not be delivered again
    /// (its waiter is answered from the first delivery, and what `body` wrote is taken back).
    @discardableResult
    func deliverFrame(
        to connection: Connection, messageID: GUID, waiter: Waiter, recipients: Recipients, sender: GUID,
        body: (inout ByteBuffer) -> Void
    ) -> Int {
        guard connection.phase == .bound else {
            targetGone(waiter: waiter, messageID: messageID, recipients: recipients, sender: sender, frame: body)
            return 0
        }
        if recentDeliveries.contains(recipient: connection.recipientKey, messageID) {
            counters.drop(.duplicateMessage)
            logger.debug("repeat of an ACKed message not delivered again", metadata: ["conn": "\(connection.logID)", "msg_id": "\(messageID)"])
            resolve(waiter, messageID: messageID, .acked)
            return 0
        }
        // Only an existing client that has not met the sender yet needs the frame read back.
        let before =
            connection.isLegacy && !connection.introduced.contains(sender)
            ? writeIntroducingSender(to: connection, body) : writeFrame(to: connection, body)
        let length = connection.out.writerIndex - before
        let deadline = clock.now + ackTimeout
        var isNew = false
        connection.awaiting[
            messageID,
            default: AwaitingAck(
                waiter: waiter, recipients: recipients, deadline: deadline, chunk: connection.currentChunk, offset: before,
                length: length)
        ].claim(for: waiter, isNew: &isNew)
        guard isNew else {
            connection.out.moveWriterIndex(to: before)
            counters.drop(.duplicateMessage)
            logger.debug("repeat of an awaited message not delivered again", metadata: ["conn": "\(connection.logID)", "msg_id": "\(messageID)"])
            return 0
        }
        // For the existing client the deadline is the write's: it never ACKs.
        ackDeadlines.append(.init(deadline: deadline, connection: connection.id, messageID: messageID))
        if connection.isLegacy { connection.unconfirmedWrites.append(messageID) }
        counters.framesOut += 1
        counters.bytesOut += length
        markDirty(connection)
        return length
    }

    /// An ACK from a neighbour: the hop for that message is done.
    func handleAck(from connection: Connection, _ envelope: Envelope) {
        guard let messageID = envelope.messageID else { return }
        guard let entry = connection.awaiting.removeValue(forKey: messageID) else {
            counters.drop(.unknownAck)
            logger.debug("ACK for no awaited message", metadata: ["conn": "\(connection.logID)", "msg_id": "\(messageID)"])
            return
        }
        counters.acksReceived += 1
        delivered(entry, messageID: messageID, on: connection)
    }

    /// The next hop has the message (its ACK, or for the existing client the completed write):
    /// remembered for de-duplication, and everyone waiting for it hears so.
    func delivered(_ entry: AwaitingAck, messageID: GUID, on connection: Connection) {
        recentDeliveries.insert(recipient: connection.recipientKey, messageID)
        if entry.waiter.storedSeq != 0 {
            resolveStored(entry.waiter.storedSeq, messageID: messageID, .acked, followers: entry.more ?? [])
            return
        }
        resolve(entry.waiter, messageID: messageID, .acked)
        for waiter in entry.more ?? [] { resolve(waiter, messageID: messageID, .acked) }
    }

    /// A NACK from a neighbour for a message the relay delivered to it: that hop failed.
    func handleNack(from connection: Connection, _ envelope: Envelope) {
        guard let messageID = envelope.messageID, let entry = connection.awaiting.removeValue(forKey: messageID) else {
            counters.drop(.unknownAck)
            logger.debug("NACK for no awaited message", metadata: ["conn": "\(connection.logID)"])
            return
        }
        failHop(entry, messageID: messageID, reason: envelope.reason.flatMap(NackReason.init(rawValue:)) ?? .unreachable, on: connection, storable: false)
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

    /// The originating node of a frame the relay wrote (its head `sender_id`).
    static func sender(ofFrame frame: ByteBuffer) -> GUID {
        envelope(ofFrame: frame)?.sender?.id ?? .zero
    }

    /// A delivery that will get no ACK. A message from the store counts an attempt; a live message
    /// not refused by the next hop itself (no ACK in time, connection lost) is stored for a later
    /// try, and its senders hear `stored: true` once that is committed.
    func failHop(_ entry: AwaitingAck, messageID: GUID, reason: NackReason, on connection: Connection, storable: Bool) {
        if entry.waiter.storedSeq != 0 {
            resolveStored(
                entry.waiter.storedSeq, messageID: messageID, .failed(entry.recipients, reason), followers: entry.more ?? [],
                recipients: entry.recipients)
            return
        }
        var waiters = [entry.waiter]
        waiters.append(contentsOf: entry.more ?? [])
        guard storable, let recipient = connection.nodeID, let frame = entry.frame(pending: connection.out) else {
            for waiter in waiters { resolve(waiter, messageID: messageID, .failed(entry.recipients, reason)) }
            return
        }
        let message = NewMessage(
            recipient: recipient, messageID: messageID, sender: Self.sender(ofFrame: frame), frame: Array(frame.readableBytesView),
            createdAt: wallClock(), attempts: 1, nextAttemptAt: wallClock() + retryDelay(afterAttempts: 1))
        store([message]) { [self] outcomes in
            let outcome = outcomes.first ?? .failed("no outcome")
            let result = hopOutcome(outcome, recipients: entry.recipients)
            if case .stored = result, let current = connections[connection.id], current.phase == .bound {
                current.storedBacklog = true
            }
            for waiter in waiters { resolve(waiter, messageID: messageID, result) }
        }
    }

    /// Deliveries whose ACK did not come within `timeouts.ack` count as not reached.
    func expireAcks(now: NIODeadline = .now()) {
        while let expired = ackDeadlines.popExpired(now: now) {
            guard let connection = connections[expired.connection],
                let entry = connection.awaiting[expired.messageID], entry.deadline == expired.deadline
            else { continue }
            if connection.isLegacy {
                // Its socket took nothing for `timeouts.ack`. Closing discards what was not written,
                // so what it awaited is stored (when the channel goes) and never delivered twice.
                counters.drop(.slowConsumer)
                logger.info("closing an existing client that takes no data", metadata: ["conn": "\(connection.logID)"])
                close(connection, reason: "no write completed within \(configuration.timeouts.ack) s")
                continue
            }
            connection.awaiting[expired.messageID] = nil
            counters.drop(.ackTimeout)
            logger.debug("no ACK in time", metadata: ["conn": "\(connection.logID)", "msg_id": "\(expired.messageID)"])
            failHop(entry, messageID: expired.messageID, reason: .unreachable, on: connection, storable: true)
        }
    }

    // MARK: Back at the ingress shard

    @inline(__always)
    func resolve(_ waiter: Waiter, messageID: GUID, _ outcome: HopOutcome) {
        if waiter.storedSeq != 0 {
            resolveStored(waiter.storedSeq, messageID: messageID, outcome)
            return
        }
        if waiter.shard == index {
            switch outcome {
            case .acked: hopAcked(waiter, messageID: messageID)
            case .stored(let recipients):
                hopFailed(waiter, messageID: messageID, recipients: recipients, reason: .unreachable, stored: true)
            case .failed(let recipients, let reason):
                hopFailed(waiter, messageID: messageID, recipients: recipients, reason: reason, stored: false)
            }
        } else {
            switch outcome {
            case .acked: enqueue(.hopAcked(waiter, messageID: messageID), to: waiter.shard)
            case .stored(let recipients):
                enqueue(.hopFailed(waiter, messageID: messageID, recipients: recipients, reason: .unreachable, stored: true), to: waiter.shard)
            case .failed(let recipients, let reason):
                enqueue(.hopFailed(waiter, messageID: messageID, recipients: recipients, reason: reason, stored: false), to: waiter.shard)
            }
        }
    }

    func hopAcked(_ waiter: Waiter, messageID: GUID) {
        if waiter.token != 0 {
            guard var forward = pending[waiter.token] else { return }
            forward.outstanding -= 1
            forward.acked += 1
            if forward.outstanding > 0 {
                pending[waiter.token] = forward
                return
            }
            pending[waiter.token] = nil
        }
        if let connection = connections[waiter.from] {
            sendAck(to: connection, acknowledging: messageID)
        }
    }

    /// A next hop failed, or its recipients' copy was stored: NACK to the sender now, and the ACK
    /// still follows if another next hop ACKs.
    func hopFailed(_ waiter: Waiter, messageID: GUID, recipients: Recipients, reason: NackReason, stored: Bool) {
        let connection = connections[waiter.from]
        if let connection {
            sendNack(to: connection, refusing: messageID, reason: reason, stored: stored, recipients: recipients)
        }
        guard waiter.token != 0, var forward = pending[waiter.token] else { return }
        forward.outstanding -= 1
        if forward.outstanding > 0 {
            pending[waiter.token] = forward
            return
        }
        pending[waiter.token] = nil
        if forward.acked > 0, let connection {
            sendAck(to: connection, acknowledging: messageID)
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
