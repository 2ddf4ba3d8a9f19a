import NIOCore
import PTPProtocol

/// What one punch did, as a human line and as one JSON object (docs/nat-traversal.md lists the
/// fields). Filled in by `PunchInitiator` and `PunchResponder` and by the commands that drive them.
public struct PunchReport: Sendable, Equatable {
    public enum Role: String, Sendable {
        case initiator
        case responder
    }

    public enum Result: String, Sendable {
        case direct
        case relay
    }

    /// Which way a message went.
    public enum Path: String, Sendable {
        case direct
        case relay
    }

    public var role: Role
    public var node: GUID
    public var peerNode: GUID
    public var result: Result = .relay
    /// Why the result is not direct; nil when it is.
    public var reason: String?
    public var nat: NATType = .unknown
    /// The peer's NAT when it said it is symmetric (step 3's `nat`); nil otherwise.
    public var peerNAT: NATType?
    /// What `nat` rests on.
    public var natReason: String?
    /// This side's public address of the punching port, as the relay saw it.
    public var observed: ConnectAddress?
    /// The probe's observation of the same port (`--probe`).
    public var probeObserved: ConnectAddress?
    /// The punching port on this host.
    public var localPort: Int?
    /// The peer's public address as the relay filled it in: the address dialed.
    public var peer: ConnectAddress?
    /// Dials started.
    public var attempts = 0
    /// From the peer's address being known (step 4 at the initiator, step 3 sent at the responder) to a
    /// proven link; nil when not direct.
    public var timeToDirectMilliseconds: Int?
    /// The relay's RTT hint, `(src_rtt_ms + dst_rtt_ms) / 2`, when it sent both keys.
    public var rttHintMilliseconds: Int?
    /// How long the responder waited before its first dial.
    public var dialDelayMilliseconds: Int?
    /// How the link came about (`dialed` or `accepted`); nil when not direct.
    public var via: DirectLinks.Via?
    /// The initiator's MESSAGE: its id, which way it went, and whether the relay only stored it.
    public var messageID: GUID?
    public var path: Path?
    public var messageStored: Bool?
    /// Whether the relay acknowledged the outcome report.
    public var outcomeReported: Bool?

    public init(role: Role, node: GUID, peerNode: GUID) {
        self.role = role
        self.node = node
        self.peerNode = peerNode
    }

    /// Sets `nat` and `natReason` from `NATType.classify`.
    public mutating func setNAT(_ verdict: (nat: NATType, why: String)) {
        nat = verdict.nat
        natReason = verdict.why
    }

    /// One JSON object, compact, keys in a fixed order.
    public var json: String {
        var out = ByteBuffer()
        out.writeASCII("{\"role\":")
        out.writeJSONString(role.rawValue)
        out.writeASCII(",\"node_id\":")
        out.writeQuotedGUID(node)
        out.writeASCII(",\"peer_node_id\":")
        out.writeQuotedGUID(peerNode)
        out.writeASCII(",\"result\":")
        out.writeJSONString(result.rawValue)
        out.writeASCII(",\"reason\":")
        Self.write(&out, reason)
        out.writeASCII(",\"nat\":")
        out.writeJSONString(nat.rawValue)
        out.writeASCII(",\"nat_reason\":")
        Self.write(&out, natReason)
        out.writeASCII(",\"peer_nat\":")
        Self.write(&out, peerNAT?.rawValue)
        out.writeASCII(",\"observed\":")
        Self.write(&out, observed?.description)
        out.writeASCII(",\"probe_observed\":")
        Self.write(&out, probeObserved?.description)
        out.writeASCII(",\"local_port\":")
        Self.write(&out, localPort)
        out.writeASCII(",\"peer\":")
        Self.write(&out, peer?.description)
        out.writeASCII(",\"attempts\":")
        Self.write(&out, attempts)
        out.writeASCII(",\"time_to_direct_ms\":")
        Self.write(&out, timeToDirectMilliseconds)
        out.writeASCII(",\"rtt_hint_ms\":")
        Self.write(&out, rttHintMilliseconds)
        out.writeASCII(",\"dial_delay_ms\":")
        Self.write(&out, dialDelayMilliseconds)
        out.writeASCII(",\"via\":")
        Self.write(&out, via?.rawValue)
        if role == .initiator {
            out.writeASCII(",\"msg_id\":")
            if let messageID { out.writeQuotedGUID(messageID) } else { out.writeASCII("null") }
            out.writeASCII(",\"path\":")
            Self.write(&out, path?.rawValue)
            out.writeASCII(",\"stored\":")
            Self.write(&out, messageStored)
            out.writeASCII(",\"outcome_reported\":")
            Self.write(&out, outcomeReported)
        }
        out.writeInteger(UInt8(ascii: "}"))
        return String(buffer: out)
    }

    /// One line for a person.
    public var humanLine: String {
        var line = role == .initiator ? "punch to \(peerNode): " : "punch from \(peerNode): "
        switch result {
        case .direct:
            line += "direct"
            if let timeToDirectMilliseconds { line += " in \(timeToDirectMilliseconds) ms" }
            line += " after \(attempts) dial\(attempts == 1 ? "" : "s")"
            if let via { line += " (\(via.rawValue))" }
        case .relay:
            line += "staying on the relay: \(reason ?? "no direct connection")"
            if attempts > 0 { line += " (\(attempts) dial\(attempts == 1 ? "" : "s"))" }
        }
        line += "; observed \(observed?.description ?? "unknown"), peer \(peer?.description ?? "unknown"), nat \(nat.rawValue)"
        if let rttHintMilliseconds { line += ", rtt hint \(rttHintMilliseconds) ms" }
        if let path, let messageID {
            switch path {
            case .direct: line += "; message \(messageID) went direct, ACKed by the peer"
            case .relay:
                line += "; message \(messageID) went through the relay"
                if messageStored == true { line += ", stored there for the offline peer" }
            }
        }
        return line
    }

    private static func write(_ out: inout ByteBuffer, _ value: String?) {
        if let value { out.writeJSONString(value) } else { out.writeASCII("null") }
    }

    private static func write(_ out: inout ByteBuffer, _ value: Int?) {
        if let value { out.writeString(String(value)) } else { out.writeASCII("null") }
    }

    private static func write(_ out: inout ByteBuffer, _ value: Bool?) {
        switch value {
        case true?: out.writeASCII("true")
        case false?: out.writeASCII("false")
        case nil: out.writeASCII("null")
        }
    }
}
