import NIOCore
import PTPProtocol

extension RelayShard {
    /// CONNECT rendezvous (PROFILE.md section 8): the relay holding a node's connection fills in
    /// the address it observed for that node; the message is never stored.
    func forwardConnect(from connection: Connection, _ envelope: Envelope, _ bytes: UnsafeRawBufferPointer) {
        guard let source = envelope.connectSource, let destination = envelope.connectDestination,
            let bound = connection.nodeID
        else { return }
        let tape = reader.tape
        let json = ReceivedJSON(tape: tape, bytes: bytes)
        let srcToken = tape.member("src", in: envelope.data, of: bytes)
        let dstToken = tape.member("dst", in: envelope.data, of: bytes)
        func text(_ token: Int?) -> String? {
            guard let token, tape[token].kind == .string else { return nil }
            let value = tape.string(token, of: bytes)
            return value.isEmpty ? nil : value
        }
        let src = text(srcToken)
        let dst = text(dstToken)
        let isStepOne = dst == nil
        guard checkSender(connection, envelope, claimed: isStepOne ? source : destination) else { return }
        let refusedID = envelope.messageID

        func refuse(_ reason: String) {
            counters.drop(.invalid)
            logger.debug("CONNECT refused", metadata: ["conn": "\(connection.logID)", "reason": "\(reason)"])
            if let refusedID { sendNack(to: connection, refusing: refusedID, reason: .invalid) }
        }

        guard admitConnect(from: connection) else {
            counters.drop(.connectRate)
            logger.debug(
                "CONNECT refused", metadata: ["conn": "\(connection.logID)", "reason": "\(DropReason.connectRate.rawValue)"])
            if let refusedID { sendNack(to: connection, refusing: refusedID, reason: .rateLimited) }
            return
        }

        var newSrc = src
        var newDst = dst
        if connection.isPeer {
            // Only the relay that holds a node's connection fills in its address; relays between
            // pass the message on unchanged.
        } else if isStepOne {
            guard let port = Self.port(in: src) else { return refuse("src has no valid port") }
            newSrc = Self.address(ip: connection.observedIP, port: port)
        } else {
            guard src != nil else { return refuse("step 3 without src") }
            guard let port = Self.port(in: dst) else { return refuse("dst has no valid port") }
            newDst = Self.address(ip: connection.observedIP, port: port)
        }

        let ttl = Forwarding.outgoingTTL(of: envelope)
        let messageID = envelope.messageID ?? newMessageID()

        if isStepOne && destination == relay.address.id && !connection.isPeer {
            // Address discovery: the sender's address as the relay sees it.
            let observed = Self.address(ip: connection.observedIP, port: connection.observedPort ?? 0)
            write(to: connection) { out in
                ForwardedFrames.connect(
                    &out, envelope, from: json, messageID: newMessageID(), ttl: 1, sender: relay, source: source,
                    destination: destination, src: observed, dst: nil)
            }
            return
        }
        guard ttl >= 1 else {
            counters.drop(.ttlExpired)
            logger.debug("CONNECT ttl expired", metadata: ["conn": "\(connection.logID)"])
            if let refusedID { sendNack(to: connection, refusing: refusedID, reason: .ttlExpired) }
            return
        }
        let target = isStepOne ? destination : source
        guard target != bound, target != relay.address.id, let nextHop = nextHop(for: target),
            let sender = sender(of: envelope, on: connection)
        else {
            counters.drop(.unreachable)
            logger.debug("CONNECT target unreachable", metadata: ["conn": "\(connection.logID)", "target": "\(target)"])
            if let refusedID { sendNack(to: connection, refusing: refusedID, reason: .unreachable) }
            return
        }
        send(verb: .connect, to: nextHop) { out in
            ForwardedFrames.connect(
                &out, envelope, from: json, messageID: messageID, ttl: ttl, sender: sender, source: source,
                destination: destination, src: newSrc, dst: newDst)
        }
    }

    /// The port of `"40000"`, `":40000"`, `"1.2.3.4:40000"` or `"[::1]:40000"` (1-65535).
    static func port(in text: String?) -> Int? {
        guard let text else { return nil }
        let portText: Substring
        if let colon = text.lastIndex(of: ":") {
            portText = text[text.index(after: colon)...]
        } else {
            portText = Substring(text)
        }
        guard let port = Int(portText), (1...65535).contains(port) else { return nil }
        return port
    }

    static func address(ip: String?, port: Int) -> String {
        guard let ip else { return ":\(port)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}
