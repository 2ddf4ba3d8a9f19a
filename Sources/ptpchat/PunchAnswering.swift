import NIOCore
import PTPProtocol
import PTPPunch
import RelayTLS

/// `listen --accept-punch`: the responder. Learns this node's public address of its punching port
/// (the relay connection's own local port) by address discovery, listens on that port, and
/// answers each step 2 with step 3 and a dialer; relay frames and punches are handled at once.
/// Never returns but by an error of the relay connection.
struct PunchAnswering: Sendable {
    let identity: SenderTag
    let json: Bool
    let output: ListenOutput
    let deadline: Duration
    let honoursRTTHint: Bool
    let noDirect: Bool
    let probe: Endpoint?
    let tls: ClientTLS?
    let timing: LinkTiming

    init(listen: Listen, identity: SenderTag, tls: ClientTLS?) {
        self.identity = identity
        self.tls = tls
        probe = listen.probe
        timing = listen.connection.timing
        json = listen.json
        output = listen.output
        deadline = .milliseconds(Int64(listen.punchDeadline * 1000))
        honoursRTTHint = !listen.noRTTHint
        noDirect = listen.punchNoDirect
    }

    private enum Event: Sendable {
        case relay(InboundFrame)
        case relayLost(String)
        case discoveryTimedOut
        case probed(Result<ConnectAddress, ProbeFailure>)
    }

    func run(_ session: inout RelaySession) async throws {
        let node = identity.address.id
        let identity = identity
        guard let relayID = session.relayID else { throw ClientError.connectionLost("the relay sent no id in its ROUTING") }
        guard let localSocket = session.localAddress, let localPort = localSocket.port else {
            throw ClientError.connectionLost("the relay connection has no local port")
        }
        let punchAddress = try PunchSockets.wildcard(like: localSocket, port: localPort)
        let local = PunchSockets.connectAddress(localSocket)
        let writer = session.writer
        let output = output
        let links = DirectLinks(
            identity: identity,
            onMessage: { frame, _ in output.show(frame, path: .direct) },
            onRefused: { Console.diagnostic("ptpchat: \($0)") })
        defer { links.close() }
        if !noDirect {
            do {
                try await links.listen(on: punchAddress)
            } catch {
                Console.diagnostic("ptpchat: cannot listen on the punching port \(localPort) (\(error)): punches will only dial")
            }
        }

        let (events, sink) = AsyncStream<Event>.makeStream()
        let frames = session.frames
        // Discarding: the listener runs for as long as it is asked to and starts a task per punch;
        // a plain group would keep every finished one until the end.
        try await withThrowingDiscardingTaskGroup { group in
            defer { group.cancelAll() }
            group.addTask {
                await frames.forward(frame: { sink.yield(.relay($0)) }, lost: { sink.yield(.relayLost($0)) })
            }
            group.addTask {
                // Cancelled at the end: no error out of a discarding group for that.
                guard (try? await Task.sleep(for: Listen.discoveryTimeout)) != nil else { return }
                sink.yield(.discoveryTimedOut)
            }
            let discoveryID = GUID.random()
            try await writer.send(
                ClientFrames.connect(
                    id: discoveryID, from: identity, source: node, destination: relayID, src: ConnectAddress(host: nil, port: localPort),
                    dst: nil))
            var observed: ConnectAddress?
            var discovering = true
            // This node's NAT: from the discovery answer, and the probe's when --probe is given.
            var nat: (nat: NATType, why: String) = (.unknown, "not observed")
            var probed: ConnectAddress?
            // Step 3s sent, by message id, with the initiator: a NACK of one is said plainly.
            var step3s: [GUID: GUID] = [:]
            for await event in events {
                switch event {
                case .relayLost(let why):
                    throw ClientError.connectionLost(why)
                case .discoveryTimedOut where discovering:
                    discovering = false
                    Console.diagnostic("ptpchat: no address discovery answer from the relay in time: punches will not be answered")
                    Console.diagnostic("ready \(node)")
                case .discoveryTimedOut:
                    continue
                case .probed(let result):
                    guard let seen = observed else { continue }
                    switch result {
                    case .success(let address):
                        probed = address
                        nat = NATType.classify(local: local, relay: seen, probe: address)
                    case .failure(let failure):
                        nat.why += "; the probe failed: \(failure.reason)"
                    }
                    Console.diagnostic("ptpchat: this node's NAT: \(nat.nat.rawValue) (\(nat.why))")
                    Console.diagnostic("ready \(node)")
                case .relay(let frame):
                    if discovering, frame.verb == .nack, frame.messageID == discoveryID {
                        discovering = false
                        Console.diagnostic(
                            "ptpchat: the relay refused address discovery (NACK \(frame.reason ?? "")): punches will not be answered")
                        Console.diagnostic("ready \(node)")
                        continue
                    }
                    if frame.verb == .nack, let id = frame.messageID, let initiator = step3s.removeValue(forKey: id) {
                        Console.diagnostic(
                            "ptpchat: the relay refused step 3 of the punch from \(initiator) (NACK \(frame.reason ?? "without a reason")): "
                                + "it stays on the relay")
                        continue
                    }
                    guard frame.verb == .connect, let fields = frame.connect else {
                        try await Listen.handle(frame, on: writer, identity: identity, output: output, path: .relay)
                        continue
                    }
                    if discovering, fields.sourceNode == node, fields.destinationNode == relayID {
                        discovering = false
                        if let text = fields.src, let address = ConnectAddress(parsing: text), address.host != nil {
                            observed = address
                            nat = NATType.classify(local: local, relay: address, probe: nil)
                            if let probe {
                                // `ready` once the probe answered: a test or a lab waits for it.
                                let (tls, timing) = (tls, timing)
                                group.addTask {
                                    let result = await NATProbe.observe(
                                        from: localPort, probe: probe, tls: tls, timing: timing,
                                        until: .now + Listen.discoveryTimeout)
                                    sink.yield(.probed(result))
                                }
                                continue
                            }
                        } else {
                            Console.diagnostic("ptpchat: the relay's address discovery answer has no usable address: punches will not be answered")
                        }
                        Console.diagnostic("ready \(node)")
                        continue
                    }
                    guard PunchResponder.isStepTwo(fields, for: node) else { continue }
                    guard let observed else {
                        Console.diagnostic("ptpchat: a punch from \(fields.sourceNode) is not answered: this node's public address is unknown")
                        continue
                    }
                    let answer: PunchResponder.Answer
                    switch PunchResponder.answer(fields, observed: observed, honoursRTTHint: honoursRTTHint) {
                    case .failure(let refusal):
                        Console.diagnostic("ptpchat: a punch is not answered: \(refusal.reason)")
                        continue
                    case .success(let success):
                        answer = success
                    }
                    links.admit(fields.sourceNode)
                    let step3ID = GUID.random()
                    step3s[step3ID] = fields.sourceNode
                    if step3s.count > 256 { step3s.removeAll() }  // NACKs come at once; old entries are dead
                    try await writer.send(
                        ClientFrames.connect(
                            id: step3ID, from: identity, source: fields.sourceNode, destination: node, src: answer.peer, dst: answer.dst,
                            extras: PunchResponder.step3Extras(nat: nat.nat)))
                    let sentAt = ContinuousClock.now
                    var report = PunchReport(role: .responder, node: node, peerNode: fields.sourceNode)
                    report.observed = observed
                    report.localPort = localPort
                    report.peer = answer.peer
                    report.rttHintMilliseconds = answer.rttHintMilliseconds
                    report.dialDelayMilliseconds = answer.dialDelayMilliseconds
                    report.setNAT(nat)
                    report.probeObserved = probed
                    let opened = report
                    group.addTask {
                        await respond(answer: answer, report: opened, sentAt: sentAt, punchAddress: punchAddress, links: links)
                    }
                }
            }
        }
    }

    /// Dials the initiator after the RTT hint until a link is proven or the deadline, and prints
    /// what happened.
    private func respond(
        answer: PunchResponder.Answer, report: PunchReport, sentAt: ContinuousClock.Instant, punchAddress: SocketAddress, links: DirectLinks
    ) async {
        var report = report
        let giveUpAt = sentAt + deadline
        if report.nat == .symmetric {
            report.reason = "this node's NAT is symmetric: punching cannot work, not dialed (step 3 said so)"
        } else if noDirect {
            try? await Task.sleep(until: giveUpAt, clock: .continuous)
            report.reason = "this responder neither listens nor dials (--punch-no-direct)"
        } else {
            do {
                var dialer = SimultaneousOpen(local: punchAddress, peerAddress: try PunchSockets.socketAddress(answer.peer), peer: report.peerNode)
                dialer.firstDialDelay = .milliseconds(answer.dialDelayMilliseconds)
                let outcome = await dialer.run(links: links, until: giveUpAt)
                report.attempts = outcome.attempts
                if let link = outcome.link {
                    report.result = .direct
                    report.via = link.via
                    report.timeToDirectMilliseconds = (ContinuousClock.now - sentAt).wholeMilliseconds
                } else {
                    var why = "no direct connection before the deadline (\(outcome.attempts) dial\(outcome.attempts == 1 ? "" : "s")"
                    if let lastError = outcome.lastError { why += ", last: \(lastError)" }
                    report.reason = why + ")"
                }
            } catch {
                report.reason = "cannot dial \(answer.peer): \(error)"
            }
        }
        if json { Console.output(Array(report.json.utf8)) }
        Console.diagnostic("ptpchat: " + report.humanLine)
    }
}
