import PTPProtocol

/// Why the relay dropped or refused something. Every drop has one, a debug log line and a count.
public enum DropReason: String, CaseIterable, Sendable {
    case malformed
    case invalid
    case spoofedSender = "spoofed_sender"
    case idInUse = "id_in_use"
    case ttlExpired = "ttl_expired"
    case unreachable
    case ackTimeout = "ack_timeout"
    case unknownAck = "unknown_ack"
    case floodDuplicate = "flood_duplicate"
    case floodOverBudget = "flood_over_budget"
    case floodNoID = "flood_no_id"
    case floodTTLExpired = "flood_ttl_expired"
    case routingFromClient = "routing_from_client"
    case duplicateMessage = "duplicate_message"
    case handshakeViolation = "handshake_violation"
    case frameTooLarge = "frame_too_large"
    case idleTimeout = "idle_timeout"
    case handshakeTimeout = "handshake_timeout"
    case slowConsumer = "slow_consumer"
    /// A store bound (`store.*`) was reached: NACK `queue_full`.
    case queueFull = "queue_full"
    /// The store could not write the message: NACK `stored: false`.
    case storeFailed = "store_failed"
    /// A stored message reached `store.max_attempts` without an ACK.
    case storeGaveUp = "store_max_attempts"
    /// A stored message passed `store.max_age`.
    case storeExpired = "store_expired"
    /// A peering proof that does not match, or a relay that gave none in time (PROFILE.md section 9).
    case meshAuthFailed = "mesh_auth_failed"
    /// A ROUTING entry from a peer relay that is malformed or breaks the rules (skipped).
    case meshInvalidEntry = "mesh_invalid_entry"
    /// A ROUTING frame from a peer relay above 8 KiB (read, counted against it).
    case meshOversizedRouting = "mesh_oversized_routing"
    /// A second proven connection to the same relay (the other one is kept).
    case meshDuplicatePeer = "mesh_duplicate_peer"
    /// A peer relay claims a client of this relay as its own (the local route wins).
    case meshIDCollision = "mesh_id_collision"
    /// A TLS handshake failed (no or an untrusted client certificate, wrong version, garbage);
    /// only that connection is closed.
    case tlsHandshakeFailed = "tls_handshake_failed"
    /// A connection closed because a newer one proved (client certificate) the node id it held.
    case takenOver = "taken_over"
    /// A new connection closed at accept: `limits.max_connections` reached.
    case connectionLimit = "connection_limit"
    /// A new connection closed at accept: its IP (IPv6: its /64) has `limits.per_ip_connections`.
    case perIPLimit = "per_ip_limit"
    /// A new connection closed at accept: its IP opened connections faster than
    /// `limits.per_ip_new_per_second` / `limits.per_ip_new_burst`.
    case perIPRate = "per_ip_rate"
    /// A node over `limits.node_messages_*` or `limits.node_bytes_*`: the relay stopped reading
    /// from it for a while (one count per episode; nothing dropped).
    case throttled
    /// A new connection whose peer had already reset it when the relay accepted it (it has no
    /// address left to count it by): closed at once, before any limit could be charged.
    case goneAtAccept = "gone_at_accept"
    /// A listener stopped accepting for a moment: the connections closed at accept went over
    /// `limits.accept_refusals_per_second` / `_burst` (one count per pause; nothing is dropped by
    /// it, new connections wait in the kernel's backlog).
    case acceptPaused = "accept_paused"
    /// An address was banned at the listening sockets: refused at accept
    /// `limits.ban_after_refusals` times within a minute (one count per ban; the SYNs the kernel
    /// drops for it meanwhile are not counted).
    case addressBanned = "address_banned"
    /// A CONNECT over `limits.connect_per_minute`: NACK `rate_limited`, never forwarded.
    case connectRate = "connect_rate"
    /// A CONNECT over `limits.connect_pair_per_minute` (its pair of nodes): NACK `rate_limited`,
    /// never forwarded.
    case connectPairRate = "connect_pair_rate"
}

/// Counters of one shard. Plain integers: each shard owns its own and a snapshot adds them up.
public struct RelayCounters: Sendable {
    public var connectionsAccepted = 0
    public var connectionsClosed = 0
    /// Connections accepted on an event loop beyond the CPUs the relay may use and moved to one
    /// within them (`LoopPlacer`).
    public var connectionsMovedAtAccept = 0
    /// Commands run on this shard's loop that another loop handed over (a delivery to a client
    /// of this loop, an ACK for one, a node bound elsewhere, ...): how much of the traffic
    /// crosses between loops (`event_loops` in the stats).
    public var commandsFromOtherLoops = 0
    public var framesIn = 0
    public var bytesIn = 0
    public var framesOut = 0
    public var bytesOut = 0
    public var relayedByVerb = [Int](repeating: 0, count: Verb.allCases.count)
    public var relayedBytesByVerb = [Int](repeating: 0, count: Verb.allCases.count)
    public var acksSent = 0
    public var acksReceived = 0
    /// NACKs of other nodes passed back toward the origin in their own name.
    public var nacksPassedOn = 0
    /// ROUTING frames and bytes sent to clients (their view, `routing.to_clients`).
    public var routingFramesToClients = 0
    public var routingBytesToClients = 0
    /// ROUTING frames between relays (PROFILE.md section 9), received from and sent to peers.
    public var routingFramesIn = 0
    public var routingFramesOut = 0
    /// Messages committed to the store, stored messages sent, and stored messages ACKed (deleted).
    public var stored = 0
    public var storedSent = 0
    public var storedDelivered = 0
    /// Deliveries to the existing client counted as delivered when written (it never ACKs), and
    /// HELLOs under another node's id sent to it (PROFILE.md section 4a).
    public var legacyDelivered = 0
    public var introductions = 0
    /// CONNECT rendezvous (PROFILE.md section 8) brokered by this relay: steps 1 and 3 whose
    /// address it filled in (the sender is its client) and forwarded, and address discoveries
    /// answered.
    public var connectsBrokered = 0
    public var connectDiscoveries = 0
    /// Outcome reports (a CONNECT to the relay with `msg_data.result`): `"direct"` and `"failed"`.
    public var punchSucceeded = 0
    public var punchFailed = 0
    public var storeExpired: Int {
        get { drops[DropReason.storeExpired.index] }
        set { drops[DropReason.storeExpired.index] = newValue }
    }
    public var nacksSent = [Int](repeating: 0, count: NackReason.allCases.count)
    public var drops = [Int](repeating: 0, count: DropReason.allCases.count)

    public init() {}

    @inline(__always)
    public mutating func drop(_ reason: DropReason) {
        drops[reason.index] += 1
    }

    public mutating func drop(_ reason: DropReason, count: Int) {
        drops[reason.index] += count
    }

    @inline(__always)
    public mutating func nack(_ reason: NackReason) {
        nacksSent[reason.index] += 1
    }

    @inline(__always)
    public mutating func relayed(_ verb: Verb, bytes: Int) {
        relayedByVerb[Int(verb.rawValue)] += 1
        relayedBytesByVerb[Int(verb.rawValue)] += bytes
    }

    public func count(_ reason: DropReason) -> Int { drops[reason.index] }
    public func count(_ reason: NackReason) -> Int { nacksSent[reason.index] }
    public func relayed(_ verb: Verb) -> Int { relayedByVerb[Int(verb.rawValue)] }

    /// Each counter at the larger of the two values.
    public func maximum(_ other: RelayCounters) -> RelayCounters {
        var result = self
        result.connectionsAccepted = max(connectionsAccepted, other.connectionsAccepted)
        result.connectionsClosed = max(connectionsClosed, other.connectionsClosed)
        result.connectionsMovedAtAccept = max(connectionsMovedAtAccept, other.connectionsMovedAtAccept)
        result.commandsFromOtherLoops = max(commandsFromOtherLoops, other.commandsFromOtherLoops)
        result.framesIn = max(framesIn, other.framesIn)
        result.bytesIn = max(bytesIn, other.bytesIn)
        result.framesOut = max(framesOut, other.framesOut)
        result.bytesOut = max(bytesOut, other.bytesOut)
        result.acksSent = max(acksSent, other.acksSent)
        result.acksReceived = max(acksReceived, other.acksReceived)
        result.nacksPassedOn = max(nacksPassedOn, other.nacksPassedOn)
        result.routingFramesIn = max(routingFramesIn, other.routingFramesIn)
        result.routingFramesToClients = max(routingFramesToClients, other.routingFramesToClients)
        result.routingBytesToClients = max(routingBytesToClients, other.routingBytesToClients)
        result.routingFramesOut = max(routingFramesOut, other.routingFramesOut)
        result.stored = max(stored, other.stored)
        result.storedSent = max(storedSent, other.storedSent)
        result.storedDelivered = max(storedDelivered, other.storedDelivered)
        result.legacyDelivered = max(legacyDelivered, other.legacyDelivered)
        result.introductions = max(introductions, other.introductions)
        result.connectsBrokered = max(connectsBrokered, other.connectsBrokered)
        result.connectDiscoveries = max(connectDiscoveries, other.connectDiscoveries)
        result.punchSucceeded = max(punchSucceeded, other.punchSucceeded)
        result.punchFailed = max(punchFailed, other.punchFailed)
        for index in result.relayedByVerb.indices {
            result.relayedByVerb[index] = max(relayedByVerb[index], other.relayedByVerb[index])
            result.relayedBytesByVerb[index] = max(relayedBytesByVerb[index], other.relayedBytesByVerb[index])
        }
        for index in result.nacksSent.indices { result.nacksSent[index] = max(nacksSent[index], other.nacksSent[index]) }
        for index in result.drops.indices { result.drops[index] = max(drops[index], other.drops[index]) }
        return result
    }

    public static func + (lhs: RelayCounters, rhs: RelayCounters) -> RelayCounters {
        var sum = lhs
        sum.connectionsAccepted += rhs.connectionsAccepted
        sum.connectionsClosed += rhs.connectionsClosed
        sum.connectionsMovedAtAccept += rhs.connectionsMovedAtAccept
        sum.commandsFromOtherLoops += rhs.commandsFromOtherLoops
        sum.framesIn += rhs.framesIn
        sum.bytesIn += rhs.bytesIn
        sum.framesOut += rhs.framesOut
        sum.bytesOut += rhs.bytesOut
        sum.acksSent += rhs.acksSent
        sum.acksReceived += rhs.acksReceived
        sum.nacksPassedOn += rhs.nacksPassedOn
        sum.routingFramesIn += rhs.routingFramesIn
        sum.routingFramesToClients += rhs.routingFramesToClients
        sum.routingBytesToClients += rhs.routingBytesToClients
        sum.routingFramesOut += rhs.routingFramesOut
        sum.stored += rhs.stored
        sum.storedSent += rhs.storedSent
        sum.storedDelivered += rhs.storedDelivered
        sum.legacyDelivered += rhs.legacyDelivered
        sum.introductions += rhs.introductions
        sum.connectsBrokered += rhs.connectsBrokered
        sum.connectDiscoveries += rhs.connectDiscoveries
        sum.punchSucceeded += rhs.punchSucceeded
        sum.punchFailed += rhs.punchFailed
        for index in sum.relayedByVerb.indices {
            sum.relayedByVerb[index] += rhs.relayedByVerb[index]
            sum.relayedBytesByVerb[index] += rhs.relayedBytesByVerb[index]
        }
        for index in sum.nacksSent.indices { sum.nacksSent[index] += rhs.nacksSent[index] }
        for index in sum.drops.indices { sum.drops[index] += rhs.drops[index] }
        return sum
    }
}

extension DropReason {
    private static let order = Dictionary(uniqueKeysWithValues: allCases.enumerated().map { ($1, $0) })
    var index: Int { Self.order[self]! }
}

extension NackReason {
    private static let order = Dictionary(uniqueKeysWithValues: allCases.enumerated().map { ($1, $0) })
    var index: Int { Self.order[self]! }
}
