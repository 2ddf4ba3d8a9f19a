import PTPProtocol

/// A NACK `reason` (PROFILE.md section 5, `NackReason`) in words, for people reading the client's
/// output. Another node may send a reason this relay does not know: it is shown as given.
enum NackReasonText {
    /// What the refusal means; `stored` is the NACK's `stored: true` (the relay keeps the message).
    static func sentence(_ reason: String?, stored: Bool) -> String {
        guard let reason else { return stored ? "the relay stored the message for later delivery" : "the relay gave no reason" }
        guard let known = NackReason(rawValue: reason) else { return "the relay refused it with reason \"\(reason)\"" }
        return sentence(known, stored: stored)
    }

    static func sentence(_ reason: NackReason, stored: Bool) -> String {
        switch (reason, stored) {
        case (.unreachable, true):
            "the recipient is not connected: the relay stored the message and delivers it when the recipient connects"
        case (.unreachable, false):
            "the recipient is not connected and the relay could not store the message for it"
        case (.slowConsumer, true):
            "the recipient is not keeping up: the relay stored the message and delivers it once the recipient catches up"
        case (.slowConsumer, false):
            "the recipient is not keeping up with what the relay sends it"
        case (.ttlExpired, _):
            "the message ran out of hops (ttl) before it reached the recipient"
        case (.queueFull, _):
            "the relay's store for the recipient is full (store limits): it takes no more messages until the recipient collects them"
        case (.rateLimited, _):
            "this node sends faster than the relay allows (limits): wait a moment and send again"
        case (.invalid, _):
            "the relay found the frame malformed or not allowed by the protocol"
        case (.spoofedSender, _):
            "the frame names a sender other than the node bound to this connection"
        case (.idInUse, _):
            "another connection already holds this node id and proved it (a certificate): choose another --node-id"
        case (.noCertificate, _):
            "the relay has no certificate to give (it runs without TLS)"
        case (.notAMember, _):
            "this node is not a member of the channel it addressed"
        }
    }
}
