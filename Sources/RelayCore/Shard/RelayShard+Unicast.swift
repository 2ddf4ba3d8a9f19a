import NIOCore
import PTPProtocol

/// A message this shard forwarded, waiting for every next hop to ACK (or fail) before the hop it
/// came from gets its ACK.
struct PendingForward {
    var from: UInt64
    var messageID: GUID
    var outstanding: Int
    var acked: Int
}

enum HopOutcome {
    case acked
    case failed([GUID], NackReason)
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
        var hops: [(location: NodeLocation, recipients: [GUID])] = []
        var unreachable: [GUID] = []
        if destinations.count == 1 {
            let recipient = destinations[0]
            if recipient != senderID && recipient != relayID {
                if let location = locate(recipient) {
                    hops.append((location, destinations))
                } else {
                    unreachable = destinations
                }
            }
        } else {
            for recipient in destinations where recipient != senderID && recipient != relayID {
                if unreachable.contains(recipient) || hops.contains(where: { $0.recipients.contains(recipient) }) {
                    continue
                }
                if let location = locate(recipient) {
                    if let hop = hops.firstIndex(where: { $0.location == location }) {
                        hops[hop].recipients.append(recipient)
                    } else {
                        hops.append((location, [recipient]))
                    }
                } else {
                    unreachable.append(recipient)
                }
            }
        }

        if !unreachable.isEmpty {
            counters.drop(.unreachable)
            logger.debug("recipients unreachable", metadata: ["msg_id": "\(messageID)", "recipients": "\(unreachable)"])
            sendNack(to: connection, refusing: messageID, reason: .unreachable, recipients: unreachable)
        }
        guard !hops.isEmpty else {
            if unreachable.isEmpty { sendAck(to: connection, acknowledging: messageID) }
            return
        }

        nextToken += 1
        let token = nextToken
        pending[token] = PendingForward(from: connection.id, messageID: messageID, outstanding: hops.count, acked: 0)
        let waiter = Waiter(shard: index, token: token)
        let outTTL = ttl - 1
        let verb = envelope.verb
        for hop in hops {
            let narrowed = verb == .message && (hop.recipients.count != envelope.recipients.count || envelope.isLabelledChat)
            if hop.location.shard == index {
                guard let target = connections[hop.location.connection], target.phase == .bound else {
                    resolve(waiter, .failed(hop.recipients, .unreachable))
                    continue
                }
                if admitDelivery(to: target, messageID: messageID, waiter: waiter, recipients: hop.recipients) {
                    let before = target.out.writerIndex
                    write(to: target) { writeForwarded(&$0, envelope, bytes, messageID: messageID, ttl: outTTL, sender: senderTag, recipients: narrowed ? hop.recipients : nil) }
                    counters.relayed(verb, bytes: target.out.writerIndex - before)
                }
            } else {
                let shard = batch(for: hop.location.shard)
                let range = outbox[shard].appendFrame { writeForwarded(&$0, envelope, bytes, messageID: messageID, ttl: outTTL, sender: senderTag, recipients: narrowed ? hop.recipients : nil) }
                outbox[shard].commands.append(
                    .deliver(connection: hop.location.connection, frame: range, messageID: messageID, waiter: waiter, recipients: hop.recipients))
                counters.relayed(verb, bytes: range.count)
            }
        }
    }

    /// The frame for one next hop: the exact head, `msg_data` copied, `recipient` narrowed when
    /// `recipients` is given.
    @inline(__always)
    func writeForwarded(
        _ out: inout ByteBuffer, _ envelope: Envelope, _ bytes: UnsafeRawBufferPointer, messageID: GUID, ttl: Int,
        sender: SenderTag, recipients: [GUID]?
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

    /// Registers a delivery on `connection`; false when the message is a repeat that must not be
    /// delivered again (its waiter is answered from the first delivery).
    func admitDelivery(to connection: Connection, messageID: GUID, waiter: Waiter, recipients: [GUID]) -> Bool {
        if connection.awaiting[messageID] != nil {
            connection.awaiting[messageID]!.more.append(waiter)
            counters.drop(.duplicateMessage)
            return false
        }
        if connection.recentlyAcked.contains(messageID) {
            counters.drop(.duplicateMessage)
            resolve(waiter, .acked)
            return false
        }
        let deadline = NIODeadline.now() + context.ackTimeout
        connection.awaiting[messageID] = AwaitingAck(waiter: waiter, recipients: recipients, deadline: deadline)
        ackDeadlines.append(.init(deadline: deadline, connection: connection.id, messageID: messageID))
        return true
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
        connection.recentlyAcked.insert(messageID)
        resolve(entry.waiter, .acked)
        for waiter in entry.more { resolve(waiter, .acked) }
    }

    /// A NACK from a neighbour for a message the relay delivered to it: that hop failed.
    func handleNack(from connection: Connection, _ envelope: Envelope) {
        guard let messageID = envelope.messageID, let entry = connection.awaiting.removeValue(forKey: messageID) else {
            counters.drop(.unknownAck)
            logger.debug("NACK for no awaited message", metadata: ["conn": "\(connection.logID)"])
            return
        }
        failHop(entry, reason: envelope.reason.flatMap(NackReason.init(rawValue:)) ?? .unreachable)
    }

    func failHop(_ entry: AwaitingAck, reason: NackReason) {
        resolve(entry.waiter, .failed(entry.recipients, reason))
        for waiter in entry.more { resolve(waiter, .failed(entry.recipients, reason)) }
    }

    /// Deliveries whose ACK did not come within `timeouts.ack` count as not reached.
    func expireAcks(now: NIODeadline = .now()) {
        while let expired = ackDeadlines.popExpired(now: now) {
            guard let connection = connections[expired.connection],
                let entry = connection.awaiting[expired.messageID], entry.deadline == expired.deadline
            else { continue }
            connection.awaiting[expired.messageID] = nil
            counters.drop(.ackTimeout)
            logger.debug("no ACK in time", metadata: ["conn": "\(connection.logID)", "msg_id": "\(expired.messageID)"])
            failHop(entry, reason: .unreachable)
        }
    }

    // MARK: Back at the ingress shard

    @inline(__always)
    func resolve(_ waiter: Waiter, _ outcome: HopOutcome) {
        if waiter.shard == index {
            switch outcome {
            case .acked: hopAcked(waiter.token)
            case .failed(let recipients, let reason): hopFailed(waiter.token, recipients: recipients, reason: reason)
            }
        } else {
            switch outcome {
            case .acked: enqueue(.hopAcked(token: waiter.token), to: waiter.shard)
            case .failed(let recipients, let reason):
                enqueue(.hopFailed(token: waiter.token, recipients: recipients, reason: reason), to: waiter.shard)
            }
        }
    }

    func hopAcked(_ token: UInt64) {
        guard var forward = pending[token] else { return }
        forward.outstanding -= 1
        forward.acked += 1
        if forward.outstanding > 0 {
            pending[token] = forward
            return
        }
        pending[token] = nil
        if let connection = connections[forward.from] {
            sendAck(to: connection, acknowledging: forward.messageID)
        }
    }

    func hopFailed(_ token: UInt64, recipients: [GUID], reason: NackReason) {
        guard var forward = pending[token] else { return }
        forward.outstanding -= 1
        let connection = connections[forward.from]
        if let connection {
            sendNack(to: connection, refusing: forward.messageID, reason: reason, recipients: recipients)
        }
        if forward.outstanding > 0 {
            pending[token] = forward
            return
        }
        pending[token] = nil
        if forward.acked > 0, let connection {
            sendAck(to: connection, acknowledging: forward.messageID)
        }
    }

    // MARK: ACK and NACK to the previous hop

    func sendAck(to connection: Connection, acknowledging messageID: GUID) {
        counters.acksSent += 1
        write(to: connection) { out in
            RelayFrames.ack(&out, messageID: newMessageID(), acknowledging: messageID, relay: relay)
        }
    }

    func sendNack(to connection: Connection, refusing messageID: GUID, reason: NackReason, recipients: [GUID] = []) {
        counters.nack(reason)
        write(to: connection) { out in
            RelayFrames.nack(
                &out, messageID: newMessageID(), refusing: messageID, reason: reason, stored: false,
                recipients: recipients, relay: relay)
        }
    }
}
