import NIOCore
import PTPProtocol

extension RelayShard {
    /// One inbound frame: parse, validate, check the sender, route by verb. Returns whether it
    /// was an answer (ACK or NACK) to something the relay sent. Never inlined into the connection
    /// handler's read loop: it is the one symbol the profiles (Benchmarks/instructions.sh) count as
    /// the relay's work per frame, apart from NIO's and the framing's (one call a frame).
    @discardableResult
    @inline(never)
    func handleFrame(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard connection.phase != .closing else { return false }
        counters.framesIn += 1
        counters.bytesIn += bytes.count
        if connection.phase == .bound, let messageID = connection.withLastAck({ $0.messageID(of: bytes) }) {
            // The connection's last ACK again but for its ids: validated as that one was.
            handleRepeatedAck(connection, messageID, bytes)
            return true
        }
        if connection.phase == .bound,
            let answered = connection.withLastMessage({ repeated -> Bool? in
                guard repeated.read(bytes, into: &reader.tape) else { return nil }
                // The connection's last MESSAGE again but for its ids, timestamp and text:
                // validated as that one was, the tape made as a parse would make it. Routing
                // never sets `lastMessage`.
                return repeated.withEnvelope { route(connection, $0, bytes) }
            })
        {
            return answered
        }
        let envelope: Envelope
        do throws(InvalidMessage) {
            envelope = try reader.read(bytes, handshakeDone: connection.phase == .bound)
        } catch {
            refuseInvalid(connection, error)
            return false
        }
        if connection.phase == .bound {
            if envelope.verb == .ack {
                connection.lastAck = reader.repeatedAck(bytes, envelope)
            } else if envelope.verb == .message, connection.withLastMessage({ $0.noteMiss() }) ?? true,
                let repeatable = reader.repeatedMessage(bytes, envelope)
            {
                // Remembered on the first MESSAGE, then only when two in a row were parsed. One
                // that cannot stand for the next ones (its text not ASCII, say) leaves the last
                // one that can: it still stands for its own repeats.
                connection.lastMessage = repeatable
            }
        }
        if connection.phase == .awaitingHello {
            guard envelope.verb == .hello else {
                counters.drop(.handshakeViolation)
                close(connection, reason: "first frame is \(envelope.verb.name), not HELLO")
                return false
            }
            handleHello(connection, envelope)
            return false
        }
        return route(connection, envelope, bytes)
    }

    private func refuseInvalid(_ connection: Connection, _ error: InvalidMessage) {
        if connection.phase == .awaitingHello {
            counters.drop(.handshakeViolation)
            if let messageID = error.messageID, error.verb == .hello {
                sendNack(to: connection, refusing: messageID, reason: .invalid)
            }
            close(connection, reason: "invalid HELLO: \(error.reason)")
            return
        }
        if let messageID = error.messageID {
            counters.drop(.invalid)
            logger.debug(
                "invalid message",
                metadata: ["conn": "\(connection.logID)", "verb": "\(error.verb?.name ?? "?")", "reason": "\(error.reason)"])
            sendNack(to: connection, refusing: messageID, reason: .invalid)
        } else {
            counters.drop(.malformed)
            logger.debug("malformed frame dropped", metadata: ["conn": "\(connection.logID)", "reason": "\(error.reason)"])
        }
    }

    /// Routes a valid frame of a connection past its handshake; returns whether it was an answer
    /// (ACK or NACK) to something the relay sent.
    private func route(_ connection: Connection, _ envelope: Envelope, _ bytes: UnsafeRawBufferPointer) -> Bool {
        if envelope.verb == .message, let recipient = envelope.recipients.first, let messageID = envelope.messageID {
            // The de-duplication lookup of the delivery (`deliverFrame`) misses the cache.
            recentDeliveries.prefetch(recipient: RecentDeliveries.key(recipient), messageID)
        }
        routeByVerb(connection, envelope, bytes)
        return envelope.verb == .ack || envelope.verb == .nack
    }

    private func routeByVerb(_ connection: Connection, _ envelope: Envelope, _ bytes: UnsafeRawBufferPointer) {
        switch envelope.verb {
        case .ack:
            guard checkSender(connection, envelope), let messageID = envelope.messageID else { return }
            handleAck(from: connection, messageID: messageID)
        case .nack:
            guard checkSender(connection, envelope) else { return }
            handleNack(from: connection, envelope)
        case .hello:
            handleHelloRefresh(connection, envelope)
        case .message, .certificate, .key, .getCertificate, .getKey:
            guard checkSender(connection, envelope) else { return }
            forwardUnicast(from: connection, envelope, bytes)
        case .join, .leave, .channel:
            guard checkSender(connection, envelope) else { return }
            forwardFlood(from: connection, envelope, bytes)
        case .connect:
            forwardConnect(from: connection, envelope, bytes)
        case .routing:
            guard connection.isPeer else {
                counters.drop(.routingFromClient)
                logger.debug("ROUTING from a client ignored", metadata: ["conn": "\(connection.logID)"])
                return
            }
            counters.routingFramesIn += 1
            handleMeshRouting(from: connection, envelope, bytes)
        }
    }

    /// On a client connection every message must come from the bound node.
    /// A peer relay carries other nodes' messages and is exempt (PROFILE.md section 3).
    func checkSender(_ connection: Connection, _ envelope: Envelope, claimed: GUID? = nil) -> Bool {
        switch senderCheck(connection, envelope, claimed: claimed) {
        case .matches: return true
        case .unbound: return false
        case .spoofed:
            refuseSpoofed(connection, envelope)
            return false
        }
    }

    enum SenderCheck {
        case matches, unbound, spoofed
    }

    @inline(__always)
    func senderCheck(_ connection: Connection, _ envelope: Envelope, claimed: GUID? = nil) -> SenderCheck {
        if connection.isPeer { return .matches }
        guard let bound = connection.nodeID else { return .unbound }
        let mismatch =
            (envelope.dataNodeID.map { $0.id != bound } ?? false) || (envelope.sender.map { $0.id != bound } ?? false)
            || (claimed.map { $0 != bound } ?? false)
        return mismatch ? .spoofed : .matches
    }

    /// An ACK that repeats the connection's last one but for its ids (`RepeatedAck`): routed as
    /// `route` routes an ACK, without a copy of its envelope unless it must be refused.
    private func handleRepeatedAck(_ connection: Connection, _ messageID: GUID, _ bytes: UnsafeRawBufferPointer) {
        switch connection.withLastAck({ senderCheck(connection, $0.remembered) }) {
        case .matches: handleAck(from: connection, messageID: messageID)
        case .unbound, nil: return
        case .spoofed:
            // Refused in this frame's name: its envelope, ids and all.
            guard let envelope = connection.lastAck?.envelope(of: bytes) else { return }
            refuseSpoofed(connection, envelope)
        }
    }

    func refuseSpoofed(_ connection: Connection, _ envelope: Envelope) {
        counters.drop(.spoofedSender)
        connection.spoofStrikes += 1
        logger.debug(
            "spoofed sender refused",
            metadata: ["conn": "\(connection.logID)", "verb": "\(envelope.verb.name)", "strikes": "\(connection.spoofStrikes)"])
        if let messageID = envelope.messageID {
            sendNack(to: connection, refusing: messageID, reason: .spoofedSender)
        }
        if connection.spoofStrikes >= Self.spoofStrikesBeforeClose {
            close(connection, reason: "repeated spoofed senders")
        }
    }

    static let spoofStrikesBeforeClose = 3
}
