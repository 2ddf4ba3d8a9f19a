import NIOCore
import PTPProtocol

/// Who hears how a delivery went: the answer travels back to it as an ACK or a NACK.
enum Upstream: Sendable {
    /// The connection the message came in on (connection `id` on `shard`).
    case connection(shard: Int, id: UInt64)
    /// The message went to several next hops: the `SplitForwards` entry `token` on `shard` counts
    /// their answers before connection `id` gets its ACK.
    case split(shard: Int, id: UInt64, token: UInt64)
    /// A message from the store (row `seq`, read by the shard that delivers it): the store hears,
    /// nobody waits upstream.
    case stored(seq: Int64)
}

/// Where a message for a node goes next. The one seam between routing and sending: a route
/// lookup returns one, and `RelayShard.send` handles every kind.
enum NextHop: Hashable {
    /// The node's own connection to this relay.
    case client(NodeLocation)
    /// The connection of the peer relay the mesh routes the node through (PROFILE.md section 9).
    case peer(NodeLocation, relay: GUID)

    /// The connection the frame is written to, on whichever shard holds it.
    var location: NodeLocation {
        switch self {
        case .client(let location), .peer(let location, _): location
        }
    }
}

/// One unicast delivery in flight to a next hop: what the next hop's answer settles.
struct Delivery: Sendable {
    var messageID: GUID
    var upstream: Upstream
    /// The recipients behind this next hop (the NACK names them if it fails).
    var recipients: Recipients
    /// The originating node (kept with the message if it is stored).
    var sender: GUID
}

/// How one next hop answered.
enum HopOutcome: Sendable {
    case acked
    /// Durably stored for these recipients: the sender hears NACK `unreachable`, `stored: true`.
    case stored(Recipients)
    /// Stored because the next hop's connection is over `limits.outbound_buffer_bytes`: NACK
    /// `slow_consumer`, `stored: true` (PROFILE.md section 10).
    case storedForSlowConsumer(Recipients)
    case failed(Recipients, NackReason)
    /// A node further on (the recipient, or a relay beyond this one) refused: its NACK goes
    /// upstream in its own name (PROFILE.md section 5).
    case refused(Refusal)
}

/// A NACK that a node further on sent, as it is passed back toward the origin. A class: the
/// outcome of every delivery is passed around by value, and one pointer keeps that enum small.
final class Refusal: Sendable {
    /// The node that refused: the passed-on NACK's `sender_id` and `node_id`.
    let node: SenderTag
    let reason: String
    /// The refusing node keeps the message (a peer relay that took custody).
    let stored: Bool
    /// The recipients behind the hop that refused.
    let recipients: Recipients

    init(node: SenderTag, reason: String, stored: Bool, recipients: Recipients) {
        self.node = node
        self.reason = reason
        self.stored = stored
        self.recipients = recipients
    }
}
