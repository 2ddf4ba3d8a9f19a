import PTPProtocol

/// The initiator's side of a punch as a pure value: it is told what happened (frames from the
/// relay, the probe's observation, the dialer's outcome, the deadline) and answers with what to do
/// next. No sockets and no clock: the command drives it (docs/nat-traversal.md has the flow).
///
/// discovering → (probing) → awaitingAnswer → punching → finished; any phase can finish early,
/// always with a reason, and `report` says what happened.
public struct PunchInitiator: Sendable {
    public enum Phase: Sendable, Equatable {
        /// The CONNECT to the relay's own id is out; waiting for the observed address.
        case discovering
        /// Waiting for the probe's observation of the same port.
        case probing
        /// Step 1 is out; waiting for step 4 (the peer's address).
        case awaitingAnswer
        /// Dialing the peer and accepting from it.
        case punching
        case finished
    }

    public enum Event: Sendable {
        /// A CONNECT from the relay: the discovery answer or step 4.
        case connect(InboundFrame.ConnectFields)
        /// The relay refused one of this exchange's frames.
        case nack(messageID: GUID, reason: String?)
        /// The probe saw the punching port as this.
        case probed(ConnectAddress)
        case probeFailed(String)
        case linkProven(attempts: Int, milliseconds: Int, via: DirectLinks.Via)
        case punchGaveUp(attempts: Int, lastError: String?)
        case deadlinePassed
    }

    public enum Action: Sendable, Equatable {
        /// Send CONNECT `src_node_id` this node, `dst_node_id` the relay, `src` the local port.
        case sendDiscovery(id: GUID, src: ConnectAddress)
        /// Observe the punching port from the probe address.
        case runProbe
        /// Send CONNECT step 1: `dst_node_id` the peer, `src` the public port, `dst` null.
        case sendStep1(id: GUID, src: ConnectAddress, extras: ConnectFrames.Extras)
        /// Dial the peer from the punching port (and accept from it) until the deadline.
        case punch(peer: ConnectAddress)
        /// The exchange is over: `report` holds the outcome.
        case finish
    }

    public let node: GUID
    public let peerNode: GUID
    /// The relay's own id (`sender_id` of its HELLO / ROUTING).
    public let relayID: GUID
    /// The punching socket's own address (IP and port) on this host.
    public let local: ConnectAddress?
    public let probes: Bool
    /// false: ask the responder to dial at once (`rtt_hint: false` in step 1).
    public let usesRTTHint: Bool
    public let discoveryID: GUID
    public let step1ID: GUID
    public private(set) var phase: Phase = .discovering
    public private(set) var report: PunchReport

    public init(
        node: GUID, peerNode: GUID, relayID: GUID, local: ConnectAddress?, probes: Bool, usesRTTHint: Bool = true,
        discoveryID: GUID = .random(), step1ID: GUID = .random()
    ) {
        self.node = node
        self.peerNode = peerNode
        self.relayID = relayID
        self.local = local
        self.probes = probes
        self.usesRTTHint = usesRTTHint
        self.discoveryID = discoveryID
        self.step1ID = step1ID
        report = PunchReport(role: .initiator, node: node, peerNode: peerNode)
        report.localPort = local?.port
    }

    /// The first action: address discovery. The relay answers it with the observed address of this
    /// connection; a relay that predates empty-`src` discovery needs a port there, so the local one
    /// is sent (the relay ignores it for discovery).
    public mutating func start() -> [Action] {
        phase = .discovering
        return [.sendDiscovery(id: discoveryID, src: ConnectAddress(host: nil, port: local?.port ?? 1)!)]
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (phase, event) {
        case (.discovering, .connect(let fields)):
            guard fields.sourceNode == node, fields.destinationNode == relayID, let text = fields.src else { return [] }
            guard let observed = ConnectAddress(parsing: text), observed.host != nil else {
                return finish(reason: "the relay's address discovery answer has no usable address: \(text)")
            }
            report.observed = observed
            if probes {
                phase = .probing
                return [.runProbe]
            }
            report.setNAT(NATType.classify(local: local, relay: observed, probe: nil))
            return sendStep1()

        case (.discovering, .nack(let id, let reason)) where id == discoveryID:
            return finish(reason: "the relay refused address discovery (NACK \(reason ?? "without a reason"))")

        case (.probing, .probed(let seen)):
            guard let observed = report.observed else { return finish(reason: "no observed address") }
            report.probeObserved = seen
            report.setNAT(NATType.classify(local: local, relay: observed, probe: seen))
            if report.nat == .symmetric {
                return finish(reason: "symmetric NAT (\(report.natReason ?? "")): punching cannot work, not tried")
            }
            return sendStep1()

        case (.probing, .probeFailed(let why)):
            guard let observed = report.observed else { return finish(reason: "no observed address") }
            report.setNAT(NATType.classify(local: local, relay: observed, probe: nil))
            report.natReason = (report.natReason ?? "") + "; the probe failed: \(why)"
            return sendStep1()

        case (.awaitingAnswer, .connect(let fields)):
            guard fields.sourceNode == node, fields.destinationNode == peerNode, let text = fields.dst else { return [] }
            guard let peer = ConnectAddress(parsing: text), peer.host != nil else {
                return finish(reason: "the peer's answer (step 4) has no usable address: \(text)")
            }
            report.peer = peer
            if let nat = fields.nat { report.peerNAT = NATType(rawValue: nat) }
            report.rttHintMilliseconds = PunchResponder.rttHint(fields)
            if report.peerNAT == .symmetric {
                return finish(reason: "the peer's NAT is symmetric: punching cannot work, not tried")
            }
            phase = .punching
            return [.punch(peer: peer)]

        case (.awaitingAnswer, .nack(let id, let reason)) where id == step1ID:
            let why =
                reason == NackReason.unreachable.rawValue
                ? "the peer is not reachable through the relay (NACK unreachable)"
                : "the relay refused the CONNECT (NACK \(reason ?? "without a reason"))"
            return finish(reason: why)

        case (.punching, .linkProven(let attempts, let milliseconds, let via)):
            report.attempts = attempts
            report.timeToDirectMilliseconds = milliseconds
            report.via = via
            report.result = .direct
            report.reason = nil
            phase = .finished
            return [.finish]

        case (.punching, .punchGaveUp(let attempts, let lastError)):
            report.attempts = attempts
            var why = "no direct connection before the deadline (\(attempts) dial\(attempts == 1 ? "" : "s")"
            if let lastError { why += ", last: \(lastError)" }
            return finish(reason: why + ")")

        case (.discovering, .deadlinePassed):
            return finish(reason: "no address discovery answer from the relay before the deadline")
        case (.probing, .deadlinePassed):
            return finish(reason: "no answer from the probe before the deadline")
        case (.awaitingAnswer, .deadlinePassed):
            return finish(reason: "the peer did not answer the CONNECT before the deadline (it may not accept punches)")
        case (.punching, .deadlinePassed):
            // The dialer runs to the same deadline and then reports, with its attempts.
            return []

        default:
            return []
        }
    }

    private mutating func sendStep1() -> [Action] {
        guard let observed = report.observed else { return finish(reason: "no observed address") }
        phase = .awaitingAnswer
        // The relay fills in the IP it sees; the port is the NAT's public mapping of the punching port.
        let extras = ConnectFrames.Extras(rttHint: usesRTTHint ? nil : false)
        return [.sendStep1(id: step1ID, src: ConnectAddress(host: nil, port: observed.port)!, extras: extras)]
    }

    private mutating func finish(reason: String) -> [Action] {
        report.result = .relay
        report.reason = reason
        phase = .finished
        return [.finish]
    }
}

/// The responder's answer to step 2, as a pure function: step 3 to send, whom to dial and when.
public enum PunchResponder {
    /// The longest the responder waits for its first dial, whatever the hint says: beyond this the
    /// initiator has been dialing (and accepting) for long.
    public static let maxDialDelayMilliseconds = 1_000

    /// The relay's RTT hint, `(src_rtt_ms + dst_rtt_ms) / 2`, when it sent both keys and each is
    /// a round-trip time a TCP connection can have (0 to a minute). Anything else is no hint: the
    /// values come from the network, and two huge ones would overflow the sum.
    static func rttHint(_ fields: InboundFrame.ConnectFields) -> Int? {
        let plausible = 0...60_000
        guard let source = fields.sourceRTTMilliseconds, let destination = fields.destinationRTTMilliseconds,
            plausible.contains(source), plausible.contains(destination)
        else { return nil }
        return (source + destination) / 2
    }

    public struct Answer: Sendable, Equatable {
        /// The initiator's public address: step 3's `src` as received, and the address to dial.
        public var peer: ConnectAddress
        /// Step 3's `dst`: this node's public port of the punching socket, without a host (the
        /// relay fills in the IP it sees).
        public var dst: ConnectAddress
        /// How long to wait after sending step 3 before the first dial: the time step 3 takes to
        /// reach the initiator, `(src_rtt_ms + dst_rtt_ms) / 2`, when the relay sent both keys.
        public var dialDelayMilliseconds: Int
        public var rttHintMilliseconds: Int?
    }

    /// Step 3's optional members: `nat: "symmetric"` when this node's NAT is (it will not dial).
    public static func step3Extras(nat: NATType) -> ConnectFrames.Extras {
        ConnectFrames.Extras(nat: nat == .symmetric ? NATType.symmetric.rawValue : nil)
    }

    /// Whether `fields` is a step 2 for `node`: addressed to it, `src` filled, `dst` still empty.
    public static func isStepTwo(_ fields: InboundFrame.ConnectFields, for node: GUID) -> Bool {
        fields.destinationNode == node && fields.sourceNode != node && fields.dst == nil && fields.src != nil
    }

    /// Step 3 for a step 2, given this node's observed public address of its punching port.
    /// `honoursRTTHint` false (`--no-rtt-hint`) dials at once; so does an initiator that asked for it.
    public static func answer(
        _ fields: InboundFrame.ConnectFields, observed: ConnectAddress, honoursRTTHint: Bool
    ) -> Result<Answer, ResponderRefusal> {
        guard let text = fields.src, let peer = ConnectAddress(parsing: text), peer.host != nil else {
            return .failure(ResponderRefusal(reason: "step 2 from \(fields.sourceNode) has no usable src: \(fields.src ?? "null")"))
        }
        let hint = rttHint(fields)
        let delay = honoursRTTHint && !fields.rttHintRefused ? min(hint ?? 0, maxDialDelayMilliseconds) : 0
        return .success(
            Answer(peer: peer, dst: ConnectAddress(host: nil, port: observed.port)!, dialDelayMilliseconds: delay, rttHintMilliseconds: hint))
    }
}

/// Why a step 2 is not answered.
public struct ResponderRefusal: Error, Sendable, Equatable {
    public var reason: String
}
