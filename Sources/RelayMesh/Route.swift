import PTPProtocol

/// Where this relay sends traffic for a node.
public enum NextHop: Sendable, Hashable {
    /// The node is a client connected to this relay.
    case local
    /// The node is reached through this peer relay.
    case peer(GUID)
}

/// A node this relay can reach, as `RouteTable` sees it.
public struct Route: Sendable, Hashable {
    /// The node as `name@GUID` (the name as its origin last gave it).
    public var node: NodeAddress
    public var nextHop: NextHop
    /// Relay hops to the node: 1 for a client of this relay or for a peer relay, the peer's entry
    /// `ttl` + 1 for a route learned from a peer. This is the `ttl` clients get in ROUTING.
    public var ttl: Int
    /// The origin's sequence number this route is at; nil for a route learned from a relay that
    /// does not use them. Relays only: clients never get it.
    public var seq: UInt32?
    /// The node is the existing public client (PROFILE.md section 4a). Relays only.
    public var legacy: Bool

    public init(node: NodeAddress, nextHop: NextHop, ttl: Int, seq: UInt32?, legacy: Bool) {
        self.node = node
        self.nextHop = nextHop
        self.ttl = ttl
        self.seq = seq
        self.legacy = legacy
    }
}

/// What changed in a `RouteTable` since the last `takeChanges()`: the ids to advertise in the next
/// delta batch to every peer.
public struct RouteChanges: Sendable, Hashable {
    /// Each changed id once, in the order of its first change.
    public var ids: [GUID]
    /// Some change is news of a broken route or of its repair: a known node's sequence number
    /// changed (a withdrawal, the odd number of a break travelling to the origin, the origin's
    /// new number and its spread), a node became unreachable, or a known node's route got
    /// shorter. The batching rule lets such a batch go after a short spacing instead of a whole
    /// interval (see `RouteTable`). New nodes and longer or other routes are not urgent.
    public var urgent: Bool

    public init(ids: [GUID], urgent: Bool) {
        self.ids = ids
        self.urgent = urgent
    }

    public var isEmpty: Bool { ids.isEmpty }
}

/// What `RouteTable.receive(_:from:)` did with a ROUTING batch, for counters and logs.
public struct RouteUpdateResult: Sendable, Hashable {
    /// Entries that changed this relay's route or advertised state for their node.
    public var applied = 0
    /// Valid entries that changed nothing here (an older or longer route, a poisoned reverse, a
    /// batch from a relay that is not a peer, an entry that names a local node or this relay).
    public var ignored = 0
    /// Entries rejected as malformed (`ttl` outside 1...32, the zero GUID, an odd sequence number
    /// on a live route, a relay naming itself at a `ttl` other than 1). Never applied.
    public var invalid = 0
    /// Entries in which a peer claims a node that is local here (or this relay's own id): an id
    /// collision for the relay to act on (PROFILE.md sections 3 and 9). Counted in `ignored` too.
    public var collisions: [RouteCollision] = []

    public init() {}
}

/// A peer's entry naming a node that is a client of this relay (or this relay itself) as its own
/// client (`ttl` 1) or with a newer sequence number than this relay gave it: two places claim the
/// same id. Entries at an older sequence number are not reported: they are what a relay that has
/// not yet noticed that its client moved here still says, and they lose anyway.
public struct RouteCollision: Sendable, Hashable {
    /// The node as the peer named it.
    public var node: NodeAddress
    /// The peer that sent the entry.
    public var peer: GUID
    /// The entry's `ttl` (1: the peer says the node is its own client).
    public var ttl: Int
    /// The entry's sequence number (nil when the peer does not use them).
    public var seq: UInt32?
    /// The sequence number this relay gives the node.
    public var localSeq: UInt32

    public init(node: NodeAddress, peer: GUID, ttl: Int, seq: UInt32?, localSeq: UInt32) {
        self.node = node
        self.peer = peer
        self.ttl = ttl
        self.seq = seq
        self.localSeq = localSeq
    }
}
