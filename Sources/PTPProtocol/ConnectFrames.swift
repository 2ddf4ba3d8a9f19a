import NIOCore

/// CONNECT frames as a node writes them (PROFILE.md section 8): the rendezvous steps, address
/// discovery and the punch outcome report. Node ids are bare GUIDs (the existing client fails to
/// parse `name@GUID` there); addresses are `ConnectAddress` written forms or null.
public enum ConnectFrames {
    /// Optional `msg_data` members a node may add to a CONNECT.
    public struct Extras: Sendable, Equatable {
        /// Outcome report: `"direct"` or `"failed"`.
        public var result: String?
        /// Outcome report: why it failed, a short string.
        public var reason: String?
        /// Step 1: `false` asks the responder to dial at once and ignore the relay's RTT hint.
        public var rttHint: Bool?
        /// Step 3: `"symmetric"` when the responder found its own NAT symmetric (the initiator
        /// then stays on the relay at once instead of dialing until its deadline).
        public var nat: String?

        public init(result: String? = nil, reason: String? = nil, rttHint: Bool? = nil, nat: String? = nil) {
            self.result = result
            self.reason = reason
            self.rttHint = rttHint
            self.nat = nat
        }
    }

    /// `CONNECT {src_node_id, dst_node_id, src, dst, ...extras}`, `ttl` 32, not flooded: the
    /// relay's CONNECT writer (`ForwardedFrames.connect`) with the extras as the other members.
    public static func connect(
        _ out: inout ByteBuffer, messageID: GUID, sender: SenderTag, source: GUID, destination: GUID,
        src: ConnectAddress?, dst: ConnectAddress?, extras: Extras = Extras()
    ) {
        ForwardedFrames.connect(
            &out, messageID: messageID, ttl: 32, sender: sender, source: source, destination: destination,
            src: src?.description, dst: dst?.description, otherMembers: extras.members)
    }
}

extension ConnectFrames.Extras {
    /// Each member written with a leading comma, as `ForwardedFrames.connect` takes them.
    var members: ByteBuffer {
        var out = ByteBuffer()
        if let result {
            out.writeASCII(",\"result\":")
            out.writeJSONString(result)
        }
        if let reason {
            out.writeASCII(",\"reason\":")
            out.writeJSONString(reason)
        }
        if let rttHint {
            out.writeASCII(rttHint ? ",\"rtt_hint\":true" : ",\"rtt_hint\":false")
        }
        if let nat {
            out.writeASCII(",\"nat\":")
            out.writeJSONString(nat)
        }
        return out
    }
}
