import ArgumentParser
import Foundation
import NIOCore
import PTPProtocol
import PTPPunch
import RelayTLS

/// `ptpchat punch`: the initiator of a NAT hole punch (docs/nat-traversal.md). Learns its public
/// address over a relay connection made from the punching port, optionally checks for a symmetric
/// NAT with a second relay address, runs the CONNECT exchange, dials the peer from that port while
/// accepting on it, and sends one MESSAGE over the direct link (or through the relay when the
/// punch failed). Prints one human line, or with --json one JSON object.
struct Punch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Punch a direct TCP connection to a node through NATs, and send it one message.",
        discussion: """
            The peer must run `ptpchat listen --accept-punch`. Exits 0 when the exchange finished, \
            direct or on the relay (the output says which, and why); non-zero only on an error \
            (the relay connection failed, or the relay refused the message).
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .customLong("to"), help: ArgumentHelp("The node to punch to (its id).", valueName: "guid"))
    var peer: Recipient

    @Option(
        help: ArgumentHelp(
            "A second address of the relay (e.g. it listening on a second port) to detect a symmetric NAT from the same local port.",
            valueName: "host:port"))
    var probe: Endpoint?

    @Flag(help: "Print one JSON object on stdout instead of the human line (which then goes to stderr).")
    var json = false

    @Option(help: ArgumentHelp("Seconds until the punch gives up and stays on the relay.", valueName: "seconds"))
    var deadline: Double = 5

    @Flag(name: .customLong("no-rtt-hint"), help: "Ask the responder to dial at once instead of timing its dial with the relay's RTT hint.")
    var noRTTHint = false

    @Argument(help: "The text of the message to send.")
    var text: String = "hello from ptpchat punch"

    /// How long the message may wait for its ACK, over the direct link and then over the relay.
    static let messageTimeout: Duration = .seconds(5)
    /// How long the relay may take to acknowledge the outcome report.
    static let outcomeTimeout: Duration = .seconds(1)

    func validate() throws {
        if !(deadline > 0 && deadline <= 600) { throw ValidationError("--deadline must be more than 0 and at most 600 seconds") }
    }

    func run() async throws {
        let identity = connection.makeIdentity()
        guard peer.id != identity.address.id else { throw ValidationError("--to is this node's own id") }
        let exchange = PunchExchange(
            identity: identity, peer: peer.id, probe: probe, tls: try connection.makeTLS(), timing: connection.timing,
            deadline: .milliseconds(Int64(deadline * 1000)), usesRTTHint: !noRTTHint, text: text)
        let report: PunchReport
        do {
            report = try await connection.link(
                identity: identity, tls: exchange.tls, localPort: 0,
                timeout: (exchange.deadline + Self.messageTimeout * 2 + .seconds(5), "after \(deadline) s + the message's time waiting for the punch")
            ) { session in
                try await session.handshake()
                return try await exchange.run(&session)
            }
        } catch let error as ClientError {
            Console.diagnostic("ptpchat: \(error)")
            throw ExitCode(error.exitCode)
        }
        if json {
            Console.output(Array(report.json.utf8))
            Console.diagnostic("ptpchat: " + report.humanLine)
        } else {
            Console.output(Array(report.humanLine.utf8))
        }
    }
}

/// One run of the initiator: drives `PunchInitiator` with the relay's frames, the probe, the
/// dialer and the deadline, all merged into one stream of events.
struct PunchExchange: Sendable {
    let identity: SenderTag
    let peer: GUID
    let probe: Endpoint?
    let tls: ClientTLS?
    let timing: LinkTiming
    let deadline: Duration
    let usesRTTHint: Bool
    let text: String

    private enum Wait: Sendable {
        case message
        case outcome
    }

    private enum Event: Sendable {
        case relay(InboundFrame)
        case relayLost(String)
        case machine(PunchInitiator.Event)
        /// A wait of the message or of the outcome report ran out (each names its own).
        case timeout(Wait)
    }

    func run(_ session: inout RelaySession) async throws -> PunchReport {
        let node = identity.address.id
        guard let relayID = session.relayID else { throw ClientError.connectionLost("the relay sent no id in its ROUTING") }
        guard let localSocket = session.localAddress, let localPort = localSocket.port else {
            throw ClientError.connectionLost("the relay connection has no local port")
        }
        let punchAddress = try PunchSockets.wildcard(like: localSocket, port: localPort)
        let started = ContinuousClock.now
        let giveUpAt = started + deadline
        var machine = PunchInitiator(
            node: node, peerNode: peer, relayID: relayID, local: PunchSockets.connectAddress(localSocket), probes: probe != nil,
            usesRTTHint: usesRTTHint)
        let links = DirectLinks(identity: identity, onRefused: { Console.diagnostic("ptpchat: \($0)") })
        links.admit(peer)
        defer { links.close() }
        // Listening before step 1 goes out: the peer's SYN may come before this side dials.
        do {
            try await links.listen(on: punchAddress)
        } catch {
            Console.diagnostic("ptpchat: cannot listen on the punching port \(localPort) (\(error)): dialing only")
        }

        let (events, sink) = AsyncStream<Event>.makeStream()
        let frames = session.frames
        let writer = session.writer
        let identity = identity
        return try await withThrowingTaskGroup(of: Void.self) { group in
            defer { group.cancelAll() }
            group.addTask {
                await frames.forward(frame: { sink.yield(.relay($0)) }, lost: { sink.yield(.relayLost($0)) })
            }
            group.addTask {
                try await Task.sleep(until: giveUpAt, clock: .continuous)
                sink.yield(.machine(.deadlinePassed))
            }
            var iterator = events.makeAsyncIterator()
            var actions = machine.start()
            var punched = false
            exchange: while true {
                for action in actions {
                    switch action {
                    case .sendDiscovery(let id, let src):
                        try await writer.send(ClientFrames.connect(id: id, from: identity, source: node, destination: relayID, src: src, dst: nil))
                    case .runProbe:
                        guard let probe else { continue }
                        group.addTask {
                            let result = await NATProbe.observe(
                                from: localPort, probe: probe, tls: tls, timing: timing, until: giveUpAt)
                            switch result {
                            case .success(let seen): sink.yield(.machine(.probed(seen)))
                            case .failure(let why): sink.yield(.machine(.probeFailed(why.reason)))
                            }
                        }
                    case .sendStep1(let id, let src, let extras):
                        try await writer.send(
                            ClientFrames.connect(id: id, from: identity, source: node, destination: peer, src: src, dst: nil, extras: extras))
                    case .punch(let peerAddress):
                        punched = true
                        let knownAt = ContinuousClock.now
                        let dialer: SimultaneousOpen
                        do {
                            dialer = SimultaneousOpen(local: punchAddress, peerAddress: try PunchSockets.socketAddress(peerAddress), peer: peer)
                        } catch {
                            sink.yield(.machine(.punchGaveUp(attempts: 0, lastError: "cannot dial \(peerAddress): \(error)")))
                            continue
                        }
                        group.addTask {
                            let outcome = await dialer.run(links: links, until: giveUpAt)
                            if let link = outcome.link {
                                let elapsed = (ContinuousClock.now - knownAt).wholeMilliseconds
                                sink.yield(.machine(.linkProven(attempts: outcome.attempts, milliseconds: elapsed, via: link.via)))
                            } else {
                                sink.yield(.machine(.punchGaveUp(attempts: outcome.attempts, lastError: outcome.lastError)))
                            }
                        }
                    case .finish:
                        break exchange
                    }
                }
                guard let event = await iterator.next() else { throw ClientError.connectionLost("no events") }
                switch event {
                case .relay(let frame):
                    if frame.verb == .connect, let fields = frame.connect {
                        actions = machine.handle(.connect(fields))
                    } else if frame.verb == .nack, let id = frame.messageID {
                        actions = machine.handle(.nack(messageID: id, reason: frame.reason))
                    } else {
                        actions = []
                    }
                case .relayLost(let why): throw ClientError.connectionLost(why)
                case .machine(let event): actions = machine.handle(event)
                case .timeout: actions = []
                }
            }
            var report = machine.report

            // The message: over the direct link when there is one, else (or when it is not ACKed
            // there in time) through the relay.
            let messageID = GUID.random()
            report.messageID = messageID
            let message = ClientFrames.message(text, id: messageID, to: [peer], channelID: .random(), from: identity)
            if report.result == .direct, let link = await links.link(to: peer, until: .now) {
                do {
                    try await link.send(message)
                    if await links.waitForAck(of: messageID, until: .now + Punch.messageTimeout) {
                        report.path = .direct
                    } else {
                        Console.diagnostic("ptpchat: no ACK over the direct link within \(Punch.messageTimeout): sending the message through the relay")
                    }
                } catch {
                    Console.diagnostic("ptpchat: the direct link failed while sending the message: \(error); sending it through the relay")
                }
            }
            if report.path == nil {
                try await writer.send(message)
                report.path = .relay
                group.addTask {
                    try await Task.sleep(for: Punch.messageTimeout)
                    sink.yield(.timeout(.message))
                }
                var answers = DeliveryAnswers(messageID: messageID, recipients: [peer])
                answering: while true {
                    guard let event = await iterator.next() else { throw ClientError.connectionLost("no events") }
                    switch event {
                    case .relay(let frame) where frame.messageID == messageID:
                        switch frame.verb {
                        case .ack: answers.acked()
                        case .nack: answers.refused(frame.nackRecipients, reason: frame.reason, stored: frame.stored == true)
                        default: continue
                        }
                        if let outcome = answers.report() {
                            if let refusal = outcome.refused.first {
                                throw ClientError.refused(verb: "MESSAGE", reason: refusal.reason, stored: false)
                            }
                            report.messageStored = outcome.outcome == .stored
                            break answering
                        }
                    case .relayLost(let why): throw ClientError.connectionLost(why)
                    case .timeout(.message):
                        throw ClientError.timedOut("after \(Punch.messageTimeout) waiting for the relay to answer for the message")
                    default: continue
                    }
                }
            }

            // The outcome report (docs/nat-traversal.md), once a punch was tried or ruled out.
            if punched || report.nat == .symmetric || report.peerNAT == .symmetric {
                let reportID = GUID.random()
                let extras = ConnectFrames.Extras(
                    result: report.result == .direct ? "direct" : "failed", reason: report.result == .direct ? nil : Self.shortReason(report))
                try await writer.send(
                    ClientFrames.connect(id: reportID, from: identity, source: node, destination: relayID, src: nil, dst: nil, extras: extras))
                group.addTask {
                    try await Task.sleep(for: Punch.outcomeTimeout)
                    sink.yield(.timeout(.outcome))
                }
                report.outcomeReported = false
                reporting: while true {
                    guard let event = await iterator.next() else { break }
                    switch event {
                    case .relay(let frame) where frame.verb == .ack && frame.messageID == reportID:
                        report.outcomeReported = true
                        break reporting
                    case .relay(let frame) where frame.verb == .nack && frame.messageID == reportID:
                        break reporting
                    case .relayLost, .timeout(.outcome): break reporting
                    default: continue
                    }
                }
            }
            return report
        }
    }

    /// The outcome report's `reason`: a short word for the relay's counters and logs.
    static func shortReason(_ report: PunchReport) -> String {
        if report.nat == .symmetric { return "symmetric_nat" }
        if report.peerNAT == .symmetric { return "peer_symmetric_nat" }
        if report.attempts > 0 { return "no_direct_connection" }
        return "not_dialed"
    }
}
