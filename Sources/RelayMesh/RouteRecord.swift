import PTPProtocol

/// The latest reachable entry one peer gave for a node: what that peer offers as a route.
struct RouteOffer: Sendable {
    var peer: GUID
    var seq: UInt32?
    /// Hops from this relay: the entry's `ttl` + 1, or 1 for the peer's entry about itself.
    var distance: Int
    var node: NodeAddress
    var legacy: Bool

    /// The preference order of PROFILE.md section 9: a newer sequence number wins, then the
    /// shorter route, and on a tie the current next hop stays (so routes do not flap between
    /// equal paths).
    func isPreferred(over other: RouteOffer, current: GUID?) -> Bool {
        if let seq, let otherSeq = other.seq, seq != otherSeq {
            return RouteSequence.isNewer(seq, than: otherSeq)
        }
        if distance != other.distance { return distance < other.distance }
        return peer == current && other.peer != current
    }
}

/// The best (sequence number, distance) this relay has advertised for a node since the number
/// last changed: Babel's feasibility distance (RFC 8966, section 3.5.1). At the same number the
/// relay never advertises a longer route than this, which is what keeps routes loop-free.
struct Feasibility: Sendable, Equatable {
    var seq: UInt32
    var distance: Int
}

/// What peers are told about a node, compared before and after every change to find the ids
/// a delta must carry. `nextHop` and `poisonSeq` are there because the entry sent to the next
/// hop (poisoned reverse) changes with them.
struct AdvertisedState: Equatable {
    var ttl: Int
    var seq: UInt32?
    var nextHop: GUID?
    var poisonSeq: UInt32?
    var legacy: Bool
    var name: String?
}

/// What a record keeps about routes through peers. Out of line (`NodeRecord.peerRouting`): most
/// records are clients of this relay that no peer offers, and in line these fields made every
/// bucket of the table (up to twice as many as records) about 130 bytes larger.
struct PeerRouting: Sendable {
    /// The latest reachable entry of each peer that offers a route (withdrawals remove them).
    var offers: [RouteOffer] = []
    /// The offer the relay routes by; nil when the node is local or unreachable.
    var selected: RouteOffer?
    var feasibility: Feasibility?
    /// The newest sequence number any peer mentioned for the node, routes and withdrawals alike.
    var newestHeard: UInt32?
    /// `RouteTable.expireWithdrawals` generation in which the node last became unreachable.
    var unreachableSince = 0

    var isEmpty: Bool {
        offers.isEmpty && selected == nil && feasibility == nil && newestHeard == nil && unreachableSince == 0
    }
}

/// A value behind one pointer, with value semantics: a change stores a new box.
enum OutOfLine<Value: Sendable>: Sendable {
    indirect case value(Value)

    var value: Value {
        switch self {
        case .value(let value): return value
        }
    }
}

/// Everything the table knows about one node other than the relay itself.
struct NodeRecord: Sendable {
    // In this order the record is 48 bytes (56 with `legacy` second).
    /// The node as its origin last named it.
    var node: NodeAddress
    /// Nil while nothing is known through peers.
    private var peerRouting: OutOfLine<PeerRouting>?
    /// Non-nil while the node is a client of this relay: its sequence number (always even), which
    /// only this relay, its origin, makes.
    var localSeq: UInt32?
    var legacy: Bool

    private var peer: PeerRouting {
        get { peerRouting?.value ?? PeerRouting() }
        set { peerRouting = newValue.isEmpty ? nil : .value(newValue) }
    }

    var offers: [RouteOffer] {
        get { peer.offers }
        set { peer.offers = newValue }
    }
    var selected: RouteOffer? {
        get { peer.selected }
        set { peer.selected = newValue }
    }
    var feasibility: Feasibility? {
        get { peer.feasibility }
        set { peer.feasibility = newValue }
    }
    var newestHeard: UInt32? {
        get { peer.newestHeard }
        set { peer.newestHeard = newValue }
    }
    var unreachableSince: Int {
        get { peer.unreachableSince }
        set { peer.unreachableSince = newValue }
    }

    init(node: NodeAddress, legacy: Bool) {
        self.node = node
        self.legacy = legacy
    }

    var isReachable: Bool { localSeq != nil || selected != nil }

    /// The newest sequence number this relay knows for the node, from any source.
    var newestKnown: UInt32? {
        RouteSequence.newest(RouteSequence.newest(newestHeard, feasibility?.seq), localSeq)
    }

    /// The number this relay advertises while it has no route: the odd number above the route it
    /// lost (the news that it broke), or a newer number it heard. A newer even number heard only
    /// in withdrawals (a route too long to advertise, a poisoned reverse) is repeated as it is:
    /// nothing broke here, so it must not ask the origin for a new number (which would come back
    /// just as long, and ask again). Nil when the node was only ever known without numbers.
    var withdrawalSeq: UInt32? { Self.withdrawalSeq(peer) }

    private static func withdrawalSeq(_ routing: PeerRouting) -> UInt32? {
        RouteSequence.newest(routing.feasibility.map { RouteSequence.broken($0.seq) }, routing.newestHeard)
    }

    /// The number in the poisoned entry sent to the next hop: the route's own, or a newer one
    /// this relay heard of. A newer number in that entry travels hop by hop to the origin along
    /// the routes, which then makes a new number (see `RouteTable`): that is how a relay that
    /// lost its route asks the origin for one, without a message type of its own.
    var poisonSeq: UInt32? { Self.poisonSeq(peer) }

    private static func poisonSeq(_ routing: PeerRouting) -> UInt32? {
        routing.selected?.seq.map { RouteSequence.newest($0, routing.newestHeard ?? $0) }
    }

    var advertised: AdvertisedState { advertised(peer) }

    /// With the peer routing read once: each read of a property above copies it out of its box.
    private func advertised(_ routing: PeerRouting) -> AdvertisedState {
        if let localSeq {
            return AdvertisedState(ttl: 1, seq: localSeq, legacy: legacy, name: node.name)
        }
        if let selected = routing.selected {
            return AdvertisedState(
                ttl: selected.distance, seq: selected.seq, nextHop: selected.peer, poisonSeq: Self.poisonSeq(routing),
                legacy: legacy, name: node.name)
        }
        return AdvertisedState(
            ttl: MeshRouteEntry.unreachable, seq: Self.withdrawalSeq(routing), legacy: legacy, name: node.name)
    }

    /// The entry for `peer`, with poisoned reverse: a peer that is the next hop hears `ttl` 32.
    func entry(to peer: GUID) -> MeshRouteEntry {
        if let localSeq {
            return MeshRouteEntry(node: node, ttl: 1, seq: localSeq, legacy: legacy)
        }
        if let selected, selected.peer != peer {
            return MeshRouteEntry(
                node: node, ttl: min(selected.distance, MeshRouteEntry.unreachable), seq: selected.seq, legacy: legacy)
        }
        let seq = selected == nil ? withdrawalSeq : poisonSeq
        return MeshRouteEntry(node: node, ttl: MeshRouteEntry.unreachable, seq: seq, legacy: legacy)
    }

    var route: Route? {
        if let localSeq {
            return Route(node: node, nextHop: .local, ttl: 1, seq: localSeq, legacy: legacy)
        }
        guard let selected else { return nil }
        return Route(node: node, nextHop: .peer(selected.peer), ttl: selected.distance, seq: selected.seq, legacy: legacy)
    }

    /// Takes `peer`'s latest word on the node: an offer at `distance`, or none (nil: a withdrawal
    /// or a poisoned reverse). The selection is not updated here: call `reselect`.
    mutating func hear(from peer: GUID, entry: MeshRouteEntry, distance: Int?) {
        if let seq = entry.seq { newestHeard = RouteSequence.newest(newestHeard, seq) }
        let index = offers.firstIndex { $0.peer == peer }
        if let distance {
            let offer = RouteOffer(peer: peer, seq: entry.seq, distance: distance, node: entry.node, legacy: entry.legacy)
            if let index { offers[index] = offer } else { offers.append(offer) }
        } else if let index {
            offers.remove(at: index)
        }
    }

    /// Forgets what `peer` offered (its connection closed) and chooses again if it was the next hop.
    mutating func forget(_ peer: GUID) {
        offers.removeAll { $0.peer == peer }
        if selected?.peer == peer { reselect() }
    }

    /// The node is (again) a client of this relay. A node that was already known here, because it
    /// moved from another relay or reconnected, takes the next even number above the newest this
    /// relay knows, so that the whole mesh prefers the new place over anything it remembers.
    mutating func makeLocal(_ address: NodeAddress, legacy: Bool, initialSeq: UInt32) {
        node = address
        self.legacy = legacy
        guard localSeq == nil else { return }
        localSeq = newestKnown.map(RouteSequence.nextEven(after:)) ?? initialSeq
        // A change to the peer routing stores a new box: none when there is nothing to clear.
        if selected != nil { selected = nil }
    }

    /// The node left this relay: it becomes unreachable with the odd number above its own (the
    /// origin's withdrawal), unless a peer already offers it at a newer number (it moved there).
    mutating func dropLocal() {
        guard let seq = localSeq else { return }
        localSeq = nil
        // Both in one change: each setter stores a new box (a client's close took two).
        var routing = peer
        // Distance 0: no route at the old number can be feasible, since every one of them led here.
        routing.feasibility = Feasibility(seq: seq, distance: 0)
        routing.newestHeard = RouteSequence.newest(routing.newestHeard, RouteSequence.broken(seq))
        peer = routing
        reselect()
    }

    /// Chooses the route from the offers. Offers with a sequence number are used when feasible:
    /// - a newer number than the feasibility distance's is always feasible;
    /// - at the same number, an offer no longer than the feasibility distance is feasible (the
    ///   peer cannot be routing through this relay, which advertised nothing shorter), except
    ///   that once a newer number is known (a route at the old one broke somewhere) only the
    ///   current next hop is followed at the old number: the other offers at it may be copies of
    ///   the broken path, and hopping from one to the next would only delay the withdrawal;
    /// - anything else waits for the origin's next number.
    /// Offers without a number (from relays that do not use them) are used, by plain distance
    /// vector, only when no peer offers the node with one.
    mutating func reselect() {
        guard localSeq == nil else { return }
        let routing = peer
        guard !routing.offers.isEmpty else {
            // No route (a client that left, with no peer offering it): nothing to store when
            // there was none before.
            if routing.selected != nil { selected = nil }
            return
        }
        let offers = routing.offers
        let current = routing.selected?.peer
        var best: RouteOffer?
        var anyNumbered = false
        for offer in offers where offer.seq != nil {
            anyNumbered = true
            guard isFeasible(offer, current: current) else { continue }
            if let chosen = best, !offer.isPreferred(over: chosen, current: current) { continue }
            best = offer
        }
        if best == nil, !anyNumbered {
            for offer in offers {
                if let chosen = best, !offer.isPreferred(over: chosen, current: current) { continue }
                best = offer
            }
        }
        selected = best
        guard let best else { return }
        node = best.node
        legacy = best.legacy
        if let seq = best.seq {
            if let feasibility, !RouteSequence.isNewer(seq, than: feasibility.seq) {
                self.feasibility?.distance = min(feasibility.distance, best.distance)
            } else {
                feasibility = Feasibility(seq: seq, distance: best.distance)
            }
        }
    }

    private func isFeasible(_ offer: RouteOffer, current: GUID?) -> Bool {
        guard let seq = offer.seq else { return false }
        guard let feasibility else { return true }
        if RouteSequence.isNewer(seq, than: feasibility.seq) { return true }
        guard seq == feasibility.seq, offer.distance <= feasibility.distance else { return false }
        if offer.peer == current { return true }
        if let newestHeard, RouteSequence.isNewer(newestHeard, than: feasibility.seq) { return false }
        return true
    }

    /// What the table's counters and change list depend on.
    struct Summary: Equatable {
        var advertised: AdvertisedState
        var reachable: Bool
        var via: GUID?
    }

    var summary: Summary {
        let routing = peer
        return Summary(
            advertised: advertised(routing), reachable: localSeq != nil || routing.selected != nil,
            via: routing.selected?.peer)
    }
}
