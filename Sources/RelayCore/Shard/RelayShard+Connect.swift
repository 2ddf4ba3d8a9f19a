import Logging
import NIOCore
import PTPProtocol

/// A CONNECT on its way through this relay (PROFILE.md section 8), owned: it is written after the
/// round-trip times of the nodes this relay holds were read, when the read buffer it came in is
/// gone. Made by the shard that read it, handed to the shard of the node it goes to.
struct ConnectInFlight: Sendable {
    var messageID: GUID
    var ttl: Int
    var sender: SenderTag
    var source: GUID
    var destination: GUID
    var src: String?
    var dst: String?
    /// The round-trip hints: set by the relay holding that node's connection, else as carried.
    var srcRTT: Int?
    var dstRTT: Int?
    /// Every other member of `msg_data`, as it came (`ForwardedFrames.connectOtherMembers`).
    var otherMembers: ByteBuffer
    /// Step 1 goes to `dst_node_id`, step 3 back to `src_node_id`.
    var isStepOne: Bool
    /// This relay filled in an address (the sender is its client): counted as brokered.
    var filledHere: Bool

    var target: GUID { isStepOne ? destination : source }

    /// Sets the hint of `node` (the source or the destination), which this relay holds.
    mutating func setRoundTrip(_ millis: Int?, of node: GUID) {
        if node == source { srcRTT = millis } else if node == destination { dstRTT = millis }
    }

    func write(_ out: inout ByteBuffer) {
        ForwardedFrames.connect(
            &out, messageID: messageID, ttl: ttl, sender: sender, source: source, destination: destination, src: src,
            dst: dst, srcRTT: srcRTT, dstRTT: dstRTT, otherMembers: otherMembers)
    }
}

/// What a client reports after punching (a CONNECT to the relay with `msg_data.result`).
enum PunchOutcome: String {
    case direct
    case failed
}

extension RelayShard {
    /// CONNECT rendezvous (PROFILE.md section 8): the relay holding a node's connection fills in
    /// the address it observed for that node and its round-trip hint; the message is never
    /// stored. The relay never opens a connection to an address taken from a message: it only
    /// writes the addresses into the frame.
    func forwardConnect(from connection: Connection, _ envelope: Envelope, _ bytes: UnsafeRawBufferPointer) {
        guard let source = envelope.connectSource, let destination = envelope.connectDestination,
            let bound = connection.nodeID
        else { return }
        let tape = reader.tape
        let json = ReceivedJSON(tape: tape, bytes: bytes)
        func text(_ key: StaticString) -> String? {
            guard let token = tape.member(key, in: envelope.data, of: bytes), tape[token].kind == .string else { return nil }
            let value = tape.string(token, of: bytes)
            return value.isEmpty ? nil : value
        }
        let src = text("src")
        let dst = text("dst")

        if destination == relay.address.id && !connection.isPeer {
            return answerConnectToRelay(from: connection, envelope, json, source: source, src: src)
        }

        let isStepOne = dst == nil
        guard checkSender(connection, envelope, claimed: isStepOne ? source : destination) else { return }
        guard admitConnect(from: connection) else { return refuseConnectRate(connection, envelope, .connectRate) }
        guard admitConnectPair(from: connection, source, destination) else {
            return refuseConnectRate(connection, envelope, .connectPairRate)
        }

        var newSrc = src
        var newDst = dst
        if connection.isPeer {
            // Only the relay that holds a node's connection fills in its address; relays between
            // pass the message on unchanged.
        } else if isStepOne {
            guard let port = src.flatMap(ConnectAddress.init(parsing:))?.port else {
                return refuseConnect(connection, envelope, "src has no valid port")
            }
            newSrc = observedAddress(of: connection, port: port)
        } else {
            guard src != nil else { return refuseConnect(connection, envelope, "step 3 without src") }
            guard let port = dst.flatMap(ConnectAddress.init(parsing:))?.port else {
                return refuseConnect(connection, envelope, "dst has no valid port")
            }
            newDst = observedAddress(of: connection, port: port)
        }

        let ttl = Forwarding.outgoingTTL(of: envelope)
        guard ttl >= 1 else {
            counters.drop(.ttlExpired)
            logger.debug("CONNECT ttl expired", metadata: ["conn": "\(connection.logID)"])
            if let refusedID = envelope.messageID { sendNack(to: connection, refusing: refusedID, reason: .ttlExpired) }
            return
        }
        let target = isStepOne ? destination : source
        guard target != bound, target != relay.address.id, nextHop(for: target) != nil,
            let sender = sender(of: envelope, on: connection)
        else {
            counters.drop(.unreachable)
            logger.debug("CONNECT target unreachable", metadata: ["conn": "\(connection.logID)", "target": "\(target)"])
            if let refusedID = envelope.messageID { sendNack(to: connection, refusing: refusedID, reason: .unreachable) }
            return
        }

        let carried = ForwardedFrames.connectRoundTrips(data: envelope.data, from: json)
        var inFlight = ConnectInFlight(
            messageID: envelope.messageID ?? newMessageID(), ttl: ttl, sender: sender, source: source,
            destination: destination, src: newSrc, dst: newDst, srcRTT: carried.src, dstRTT: carried.dst,
            otherMembers: ForwardedFrames.connectOtherMembers(data: envelope.data, from: json), isStepOne: isStepOne,
            filledHere: !connection.isPeer)
        if connection.isPeer {
            routeConnect(inFlight)
            return
        }
        // The sender is held here: its round-trip time replaces whatever the message carried.
        let senderNode = isStepOne ? source : destination
        let refusedID = envelope.messageID
        roundTripMillis(connection).assumeIsolated().whenComplete { [self] result in
            inFlight.setRoundTrip(try? result.get(), of: senderNode)
            // The target can leave while the time is read: the sender hears it as before.
            if !routeConnect(inFlight), let refusedID, connection.phase == .bound {
                sendNack(to: connection, refusing: refusedID, reason: .unreachable)
            }
        }
    }

    /// `ip:port` (`[ip]:port` for IPv6; an IPv4 client on a dual-stack listener as plain IPv4)
    /// with the IP this relay observed for `connection`.
    func observedAddress(of connection: Connection, port: Int) -> String? {
        ConnectAddress(host: connection.observedIP, port: port)?.description
    }

    /// Passes a CONNECT to its next hop: a client of this relay gets it from its own shard, which
    /// adds that client's round-trip hint; a peer relay gets it as it is. False (counted) when the
    /// target is no longer reachable: it left while the round-trip time was read.
    @discardableResult
    func routeConnect(_ inFlight: ConnectInFlight) -> Bool {
        defer { scheduleFlush() }
        guard let nextHop = nextHop(for: inFlight.target) else {
            counters.drop(.unreachable)
            logger.debug("CONNECT target unreachable", metadata: ["target": "\(inFlight.target)"])
            return false
        }
        if inFlight.filledHere { counters.connectsBrokered += 1 }
        switch nextHop {
        case .client(let location):
            enqueue(.deliverConnect(connection: location.connection, inFlight), to: location.shard)
        case .peer:
            send(verb: .connect, to: nextHop) { inFlight.write(&$0) }
        }
        return true
    }

    /// Writes a CONNECT to the node it is for, a client of this shard, with that node's
    /// round-trip hint.
    func deliverConnect(_ inFlight: ConnectInFlight, to connectionID: UInt64) {
        guard let target = connections[connectionID], target.phase == .bound else {
            counters.drop(.unreachable)
            logger.debug("CONNECT target gone", metadata: ["target": "\(inFlight.target)"])
            return
        }
        var inFlight = inFlight
        roundTripMillis(target).assumeIsolated().whenComplete { [self] result in
            defer { scheduleFlush() }
            inFlight.setRoundTrip(try? result.get(), of: inFlight.target)
            guard target.phase == .bound else { return }
            let before = target.out.writerIndex
            write(to: target) { inFlight.write(&$0) }
            counters.relayed(.connect, bytes: target.out.writerIndex - before)
        }
    }

    // MARK: CONNECT to the relay itself

    /// Address discovery (the sender's observed IP and TCP source port in `src`, as STUN's
    /// binding response), or, with `msg_data.result`, a punch outcome report (counted and ACKed).
    private func answerConnectToRelay(
        from connection: Connection, _ envelope: Envelope, _ json: ReceivedJSON, source: GUID, src: String?
    ) {
        guard checkSender(connection, envelope, claimed: source) else { return }
        guard admitConnect(from: connection) else { return refuseConnectRate(connection, envelope, .connectRate) }
        let tape = json.tape
        if let resultToken = tape.member("result", in: envelope.data, of: json.bytes) {
            guard tape[resultToken].kind == .string, let outcome = PunchOutcome(rawValue: tape.string(resultToken, of: json.bytes))
            else { return refuseConnect(connection, envelope, "result is neither \"direct\" nor \"failed\"") }
            switch outcome {
            case .direct: counters.punchSucceeded += 1
            case .failed: counters.punchFailed += 1
            }
            var metadata: Logger.Metadata = ["conn": "\(connection.logID)", "result": "\(outcome.rawValue)"]
            if let reasonToken = tape.member("reason", in: envelope.data, of: json.bytes), tape[reasonToken].kind == .string {
                metadata["reason"] = "\(String(tape.string(reasonToken, of: json.bytes).prefix(Self.maxReportedReason)))"
            }
            logger.debug("punch outcome reported", metadata: metadata)
            if let messageID = envelope.messageID { sendAck(to: connection, acknowledging: messageID) }
            return
        }
        // `src` may be empty, null or missing; a port in it is allowed and not used.
        if let src, ConnectAddress(parsing: src) == nil {
            return refuseConnect(connection, envelope, "src is not a port")
        }
        guard let observed = connection.observedEndpoint else {
            return refuseConnect(connection, envelope, "no observed address for this connection")
        }
        counters.connectDiscoveries += 1
        let otherMembers = ForwardedFrames.connectOtherMembers(data: envelope.data, from: json)
        write(to: connection) { out in
            ForwardedFrames.connect(
                &out, messageID: newMessageID(), ttl: 1, sender: relay, source: source, destination: relay.address.id,
                src: observed, dst: nil, otherMembers: otherMembers)
        }
    }

    /// The longest `reason` of an outcome report that is logged.
    static let maxReportedReason = 120

    // MARK: Refusals

    private func refuseConnect(_ connection: Connection, _ envelope: Envelope, _ reason: String) {
        counters.drop(.invalid)
        logger.debug("CONNECT refused", metadata: ["conn": "\(connection.logID)", "reason": "\(reason)"])
        if let refusedID = envelope.messageID { sendNack(to: connection, refusing: refusedID, reason: .invalid) }
    }

    private func refuseConnectRate(_ connection: Connection, _ envelope: Envelope, _ reason: DropReason) {
        counters.drop(reason)
        logger.debug("CONNECT refused", metadata: ["conn": "\(connection.logID)", "reason": "\(reason.rawValue)"])
        if let refusedID = envelope.messageID { sendNack(to: connection, refusing: refusedID, reason: .rateLimited) }
    }
}

extension Connection {
    /// The peer's IP and TCP port as observed, written as in a CONNECT (`ip:port`, `[ip]:port`; an
    /// IPv4 client on a dual-stack listener as plain IPv4); nil without a remote address.
    var observedEndpoint: String? {
        guard let observedIP, let observedPort else { return nil }
        return ConnectAddress(host: observedIP, port: observedPort)?.description
    }
}

extension RelayShard {
    /// `roundTripMillis` from the kernel: TCP_INFO's `tcpi_rtt` (the smoothed RTT, in
    /// microseconds) rounded to milliseconds. Nil where the channel has no TCP socket or the
    /// read failed.
    static func kernelRoundTripMillis(_ connection: Connection) -> EventLoopFuture<Int?> {
        let channel = connection.context.channel
        #if os(Linux)
        guard let socket = channel as? SocketOptionProvider else { return channel.eventLoop.makeSucceededFuture(nil) }
        return socket.getTCPInfo().map { info in (Int(info.tcpi_rtt) + 500) / 1000 }.recover { _ in nil }
        #else
        return channel.eventLoop.makeSucceededFuture(nil)
        #endif
    }
}
