import PTPProtocol

/// The relay's distance-vector routing table (PROFILE.md section 9) as a pure value: no I/O, no
/// clock, no locks. The relay feeds it events and sends what it returns.
///
/// ## Model
/// Destinations are nodes: the relay's clients and the relays themselves. A node's *origin* is
/// the relay it is connected to (a relay is its own origin). The origin gives the node a sequence
/// number, always even, and is the only one that ever makes a new one. Its entry for a client has
/// `ttl` 1; a relay names itself in its own ROUTING with `ttl` 1 too, which the receiver reads as
/// distance 1 (the link), so that peers are at `ttl` 1 as the profile says. A route learned from
/// a peer's entry (`ttl` t) has distance t + 1, via that peer.
///
/// Choice (`RouteOffer.isPreferred`, `NodeRecord.reselect`): a newer sequence number wins
/// (serial arithmetic, `RouteSequence`), then the shorter route, and on a tie the next hop stays.
/// A route is only taken when it is *feasible* (Babel's condition, RFC 8966 3.5.1): a newer
/// number, or the same number and no longer than the shortest this relay has advertised at that
/// number. So no relay ever takes a route that runs through itself, and routes are loop-free at
/// every instant, not only after convergence.
///
/// Losing a route (the next hop withdraws it, the next hop's connection closes, or the client
/// leaves its origin) with no feasible alternative makes the relay advertise the node at `ttl`
/// 32 with the odd number above the route's: the news that the route at that number broke.
/// - From the next hop, it removes the route (any withdrawal from the next hop does).
/// - From another peer, it does not: this relay's own route may not use the broken link, and
///   loop freedom rests on feasibility, not on freshness. But the relay then no longer takes a
///   *new* next hop at the old number (those offers may be copies of the broken path), and it
///   passes the newer number on to its next hop inside the poisoned reverse entry, so that the
///   news climbs the routes to the origin.
/// - The origin, on any withdrawal (`ttl` >= 31) of one of its nodes, or of itself, at a number
///   newer than its own, takes the next even number above it and advertises that. The new number
///   is feasible everywhere, so the relays that lost the route find the best path that is left
///   within a few batches, and a route to a node that is gone is withdrawn everywhere by one
///   wave of odd numbers. Nothing ever counts up to 32.
/// - A peer that offers a route at a number older than a withdrawal this relay holds (it was cut
///   off or restarted while the news went round) is sent that withdrawal, so that its origin
///   outbids it; a restarted origin thus gets its numbers back above what the mesh remembers.
///
/// An entry without a sequence number (a relay that does not use them) is kept and used by plain
/// distance vector, but only while no peer offers the node with a number. The trade-off: through
/// such relays a lost route can count to infinity (up to 32), as the profile's split horizon
/// alone would; with numbers on every relay it cannot.
///
/// Invalid entries (`ttl` outside 1...32, the zero GUID, an odd number on a live route, a relay
/// naming itself at a `ttl` other than 1) are counted and never applied. A peer claiming one of
/// this relay's clients or this relay's id is reported as a collision, and the local route always
/// wins (see `RouteCollision`).
///
/// A route is at most 31 hops: an entry of `ttl` 30 gives distance 31, which this relay
/// advertises as 31, a withdrawal for its peers. Such a withdrawal repeats the route's even
/// number instead of making an odd one, so that it does not ask the origin for a new number.
///
/// ## What the relay must do
/// - Call `peerUp` when a peer's proof succeeded and send it `fullAdvertisement(to:)`; call
///   `peerDown` when that connection closes. Call `addLocal`/`removeLocal` when a client binds and
///   when its connection closes. Pass every ROUTING frame from a proven peer to `receive`.
/// - After each of these calls, add `takeChanges().ids` to a pending set per peer (and note
///   whether the changes were `urgent`), and send each peer `advertisement(to:of:)` of its pending
///   ids under this batching rule, per peer:
///   **a delta batch goes out at once when the last delta batch to that peer went at least one
///   `routing.interval` ago, or at least `routing.interval / 8` ago when the pending changes
///   include an urgent one; otherwise the pending ids wait for that moment and then go, all in
///   one batch.** The batch is computed when it is sent, so it carries the latest state of each
///   id. The whole table (on `peerUp` and every `routing.refresh`) is not a delta batch and does
///   not move that clock.
///
///   Why urgent batches: a failure affects many nodes at once and its repair crosses each relay
///   in several waves (withdrawals, their numbers climbing to the origins, the origins' new
///   numbers coming back). With one batch per interval each wave waits up to an interval at every
///   hop, and a random 50-relay mesh took 6 to 12 intervals to converge after a link or relay
///   failure; with urgent batches it takes at most 3 (a ring of 50, diameter 25, up to 6: the
///   round trip to the origin is up to 55 hops; MeshSimulationTests). So this rule bends the
///   profile's "at most one batch of deltas per routing.interval" for urgent changes only:
///   withdrawals (a client leaving included), new sequence numbers of known nodes and shorter
///   routes to known nodes (a relay or link that came back: MeshRelaySimulationTests saw a relay
///   revived in a 50-relay mesh take 3.1 intervals without it, 1.6 with it), at most 8 batches per
///   interval per peer. New nodes and longer routes keep the one-per-interval aggregation, so a
///   burst of joins costs one batch per interval per peer.
/// - Call `expireWithdrawals()` once per `routing.refresh`, after the full tables went out.
public struct RouteTable: Sendable {
    /// This relay's node id.
    public let selfID: GUID
    /// This relay as it names itself in its entries.
    public let selfAddress: NodeAddress
    /// This relay's own sequence number (even); it moves when the mesh asks for a newer one.
    public private(set) var selfSeq: UInt32
    /// The number a node starts at when this relay knows no older one for it.
    private let initialSeq: UInt32
    /// The peer relays whose connection is up.
    public private(set) var peers: Set<GUID> = []
    private var records: [GUID: NodeRecord] = [:]
    /// Ids whose advertised state changed since the last `takeChanges`, in order, without repeats.
    private var changes: [GUID] = []
    private var changeSet: Set<GUID> = []
    /// Some pending change is news of a broken route or of its repair (see `RouteChanges.urgent`).
    private var urgentChange = false
    private var routeCounts: [GUID: Int] = [:]
    /// Nodes this relay can reach: its clients and the routed nodes (not itself).
    public private(set) var reachableCount = 0
    /// Counts `expireWithdrawals` calls.
    private var generation = 0

    /// - Parameters:
    ///   - selfID: this relay's node id.
    ///   - name: the name it gives itself in its entries.
    ///   - initialSeq: the first sequence number (rounded down to even) for the relay itself and
    ///     for a client the table knows nothing about. 0 works: a restarted relay whose old
    ///     numbers the mesh still remembers is asked for newer ones within a batch or two. A
    ///     number that grows with wall-clock time (such as 2 × seconds since 2024) spares that.
    public init(selfID: GUID, name: String? = nil, initialSeq: UInt32 = 0) {
        self.selfID = selfID
        self.selfAddress = NodeAddress(id: selfID, name: name)
        self.initialSeq = initialSeq & ~1
        self.selfSeq = self.initialSeq
    }

    // MARK: Events

    /// A client bound to this relay. A node already known through the mesh (it moved here, or
    /// reconnected) starts at the next even number above the newest one known. Binding again a
    /// node that is already local only updates its name and legacy flag. This relay's own id and
    /// the zero GUID are ignored (the relay refuses such a HELLO before it gets here). Before
    /// binding, the relay can look at `route(to:)`: a route at `ttl` 2 is a client of a peer, an
    /// id collision by PROFILE.md section 9 (or, at an older number, a client that moved here).
    public mutating func addLocal(_ node: NodeAddress, legacy: Bool) {
        guard node.id != selfID, !node.id.isZero else { return }
        let initialSeq = initialSeq
        update(node.id, orInsert: NodeRecord(node: node, legacy: legacy)) {
            $0.makeLocal(node, legacy: legacy, initialSeq: initialSeq)
        }
    }

    /// A client's connection closed: it is withdrawn (`ttl` 32, the odd number above its own),
    /// unless a peer already offers it at a newer number because it moved there.
    public mutating func removeLocal(_ node: GUID) {
        update(node) { $0.dropLocal() }
    }

    /// A peer relay proved itself (PROFILE.md section 9). Its routes come from its ROUTING, its own
    /// id from its entry about itself. `peerUp` for a peer that is already up starts over, as
    /// after `peerDown`: a new connection owes nothing to the old one.
    public mutating func peerUp(_ peer: GUID) {
        guard peer != selfID, !peer.isZero else { return }
        if peers.contains(peer) { peerDown(peer) }
        peers.insert(peer)
    }

    /// A peer's connection closed: everything it offered is forgotten at once, and every route
    /// through it is replaced by a feasible one or withdrawn (odd number, `ttl` 32).
    public mutating func peerDown(_ peer: GUID) {
        guard peers.remove(peer) != nil else { return }
        var index = records.startIndex
        while index != records.endIndex {
            if records.values[index].offers.contains(where: { $0.peer == peer }) {
                update(at: index, key: records.keys[index], before: records.values[index].summary) {
                    $0.forget(peer)
                }
            }
            records.formIndex(after: &index)
        }
    }

    /// Applies a ROUTING batch from `peer`. Entries from a relay that is not an up peer are all
    /// ignored. See the type's documentation for the rules.
    public mutating func receive(_ entries: [MeshRouteEntry], from peer: GUID) -> RouteUpdateResult {
        var result = RouteUpdateResult()
        guard peers.contains(peer) else {
            result.ignored = entries.count
            return result
        }
        for entry in entries {
            guard Self.isValid(entry, from: peer) else {
                result.invalid += 1
                continue
            }
            let changed: Bool
            if entry.node.id == selfID {
                changed = receiveAboutSelf(entry, from: peer, into: &result)
            } else {
                changed = receiveAboutNode(entry, from: peer, into: &result)
            }
            if changed { result.applied += 1 } else { result.ignored += 1 }
        }
        return result
    }

    /// Forgets the withdrawals that have done their work, so that memory does not grow with churn:
    /// a node that no peer offers any more, unreachable since before the previous call, and whose
    /// withdrawal `takeChanges` handed out before the previous call too. Call it once per
    /// `routing.refresh`, after the full tables went out: a withdrawal thus lives between one and
    /// two refresh periods after it was sent, long enough to be in every peer's full table once (a
    /// relay that restarted learns the numbers it must outbid) and far longer than a ROUTING frame
    /// can be in flight, so a stale entry cannot bring a route back. Returns how many nodes were
    /// forgotten.
    @discardableResult
    public mutating func expireWithdrawals() -> Int {
        generation += 1
        var expired: [GUID] = []
        var index = records.startIndex
        while index != records.endIndex {
            let record = records.values[index]
            if !record.isReachable, record.offers.isEmpty {
                if changeSet.contains(records.keys[index]) {
                    // Not sent yet: its time starts when it is.
                    records.values[index].unreachableSince = generation
                } else if record.unreachableSince < generation - 1 {
                    expired.append(records.keys[index])
                }
            }
            records.formIndex(after: &index)
        }
        for id in expired { records.removeValue(forKey: id) }
        return expired.count
    }

    // MARK: Advertising

    /// The ids whose advertised state changed since the last call, each once, however many times
    /// it changed: the content of the next delta batch to every peer. Empties the list.
    public mutating func takeChanges() -> RouteChanges {
        defer {
            changes.removeAll(keepingCapacity: true)
            changeSet.removeAll(keepingCapacity: true)
            urgentChange = false
        }
        return RouteChanges(ids: changes, urgent: urgentChange)
    }

    /// The entries to send `peer` for `ids` (a delta), in their current state, with poisoned
    /// reverse: a route through `peer` is sent to it at `ttl` 32 (with its number, or a newer one
    /// this relay heard of). Unreachable nodes go as withdrawals; ids the table no longer knows are
    /// left out.
    public func advertisement(to peer: GUID, of ids: [GUID]) -> [MeshRouteEntry] {
        var entries: [MeshRouteEntry] = []
        entries.reserveCapacity(ids.count)
        for id in ids {
            if id == selfID {
                entries.append(selfEntry)
            } else if let record = records[id] {
                entries.append(record.entry(to: peer))
            }
        }
        return entries
    }

    /// The whole table for `peer` (on `peerUp` and every `routing.refresh`): this relay itself,
    /// every route with poisoned reverse, and the withdrawals not yet expired.
    public func fullAdvertisement(to peer: GUID) -> [MeshRouteEntry] {
        var entries: [MeshRouteEntry] = []
        entries.reserveCapacity(records.count + 1)
        entries.append(selfEntry)
        for record in records.values {
            entries.append(record.entry(to: peer))
        }
        return entries
    }

    /// This relay's entry about itself: `ttl` 1, its own number.
    private var selfEntry: MeshRouteEntry {
        MeshRouteEntry(node: selfAddress, ttl: 1, seq: selfSeq)
    }

    // MARK: Queries

    /// The route to `node`; nil when it is unreachable or is this relay.
    public func route(to node: GUID) -> Route? {
        records[node]?.route
    }

    /// The peer to forward to for `node`; nil when the node is local or unreachable.
    public func nextHopPeer(for node: GUID) -> GUID? {
        records[node]?.selected?.peer
    }

    /// What clients are shown: every reachable node (clients of this relay and routed nodes,
    /// including peer relays), not this relay. The caller writes `node` and `ttl` only.
    public func reachableNodes() -> [Route] {
        var routes: [Route] = []
        routes.reserveCapacity(reachableCount)
        for record in records.values {
            if let route = record.route { routes.append(route) }
        }
        return routes
    }

    /// How many routes go through `peer`.
    public func routesVia(_ peer: GUID) -> Int {
        routeCounts[peer] ?? 0
    }

    /// Nodes the table holds, reachable or kept as withdrawals (for stats and tests).
    public var knownCount: Int { records.count }

    // MARK: Internals

    private static func isValid(_ entry: MeshRouteEntry, from peer: GUID) -> Bool {
        guard !entry.node.id.isZero, (1...MeshRouteEntry.unreachable).contains(entry.ttl) else { return false }
        if let seq = entry.seq, RouteSequence.isBroken(seq), entry.ttl < 31 { return false }
        if entry.node.id == peer, entry.ttl != 1 { return false }
        return true
    }

    /// An entry naming this relay: never a route (the local one always wins), but a withdrawal at
    /// a newer number asks for a new one, and a claim is a collision.
    private mutating func receiveAboutSelf(
        _ entry: MeshRouteEntry, from peer: GUID, into result: inout RouteUpdateResult
    ) -> Bool {
        if entry.ttl >= 31 {
            guard let seq = entry.seq, RouteSequence.isNewer(seq, than: selfSeq) else { return false }
            selfSeq = RouteSequence.nextEven(after: seq)
            markChanged(selfID, urgent: true)
            return true
        }
        if Self.isClaim(entry, against: selfSeq) {
            result.collisions.append(
                RouteCollision(node: entry.node, peer: peer, ttl: entry.ttl, seq: entry.seq, localSeq: selfSeq))
        }
        return false
    }

    private mutating func receiveAboutNode(
        _ entry: MeshRouteEntry, from peer: GUID, into result: inout RouteUpdateResult
    ) -> Bool {
        let id = entry.node.id
        let distance: Int? = entry.ttl >= 31 ? nil : (id == peer ? 1 : entry.ttl + 1)
        var collision: RouteCollision?
        var answerStaleOffer = false
        // A withdrawal for a node this relay does not know has nothing to withdraw.
        let changed = update(id, orInsert: distance == nil ? nil : NodeRecord(node: entry.node, legacy: entry.legacy)) {
            record in
            record.hear(from: peer, entry: entry, distance: distance)
            if let localSeq = record.localSeq {
                if distance == nil {
                    // The origin's answer to a broken route (or to its own restart): a new number.
                    if let seq = entry.seq, RouteSequence.isNewer(seq, than: localSeq) {
                        record.localSeq = RouteSequence.nextEven(after: seq)
                    }
                } else if Self.isClaim(entry, against: localSeq) {
                    collision = RouteCollision(
                        node: entry.node, peer: peer, ttl: entry.ttl, seq: entry.seq, localSeq: localSeq)
                }
            } else {
                record.reselect()
                // The peer offers a route at a number older than the withdrawal this relay holds:
                // it has not heard that the route broke (it was cut off, or restarted, when the
                // news went round). Its state changed nothing here, so nothing would tell it:
                // send it the withdrawal, whose number climbs to the origin and brings a new one.
                if distance != nil, record.selected == nil, let seq = entry.seq, let withdrawal = record.withdrawalSeq,
                    RouteSequence.isNewer(withdrawal, than: seq)
                {
                    answerStaleOffer = true
                }
            }
        }
        if let collision { result.collisions.append(collision) }
        if answerStaleOffer { markChanged(id, urgent: true) }
        return changed
    }

    /// A live entry by which a peer claims a node this relay is the origin of: as its own client
    /// (`ttl` 1) at a number not older than ours, or at any distance with a newer number.
    private static func isClaim(_ entry: MeshRouteEntry, against localSeq: UInt32) -> Bool {
        guard let seq = entry.seq else { return entry.ttl == 1 }
        if RouteSequence.isNewer(seq, than: localSeq) { return true }
        return entry.ttl == 1 && !RouteSequence.isNewer(localSeq, than: seq)
    }

    /// Runs `body` on the record for `id` (inserting `fresh` first when there is none and it is
    /// given), then updates the counters and the change list. Returns whether the advertised
    /// state or the route changed.
    @discardableResult
    private mutating func update(
        _ id: GUID, orInsert fresh: @autoclosure () -> NodeRecord? = nil, _ body: (inout NodeRecord) -> Void
    ) -> Bool {
        if let index = records.index(forKey: id) {
            return update(at: index, key: id, before: records.values[index].summary, body)
        }
        guard let fresh = fresh() else { return false }
        records[id] = fresh
        return update(at: records.index(forKey: id)!, key: id, before: nil, body)
    }

    @discardableResult
    private mutating func update(
        at index: Dictionary<GUID, NodeRecord>.Index, key id: GUID, before: NodeRecord.Summary?,
        _ body: (inout NodeRecord) -> Void
    ) -> Bool {
        body(&records.values[index])
        let after = records.values[index].summary
        guard after != before else { return false }
        let wasReachable = before?.reachable ?? false
        if after.reachable != wasReachable { reachableCount += after.reachable ? 1 : -1 }
        if !after.reachable, before?.reachable ?? true { records.values[index].unreachableSince = generation }
        if after.via != before?.via {
            if let old = before?.via { routeCounts[old, default: 0] -= 1 }
            if let new = after.via { routeCounts[new, default: 0] += 1 }
        }
        if let before, after.advertised != before.advertised {
            // A known node's number changed (a withdrawal, a request, a new number), it became
            // unreachable, or its route got shorter (a relay or link came back): a route broke
            // or is being repaired. A new node, a longer route, a new next hop or name at the
            // same number can wait for the interval (a thousand clients connecting stay one batch).
            let urgent =
                after.advertised.seq != before.advertised.seq || after.advertised.poisonSeq != before.advertised.poisonSeq
                || (before.reachable && !after.reachable)
                || (before.reachable && after.reachable && after.advertised.ttl < before.advertised.ttl)
            markChanged(id, urgent: urgent)
        } else if before == nil {
            markChanged(id, urgent: false)
        }
        return true
    }

    private mutating func markChanged(_ id: GUID, urgent: Bool) {
        if changeSet.insert(id).inserted { changes.append(id) }
        if urgent { urgentChange = true }
    }
}
