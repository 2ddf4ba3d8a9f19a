import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PTPProtocol
import RelayMesh

/// The relay's side of the mesh (PROFILE.md section 9), shared by every shard: the route table,
/// the proven peer connections, and the ROUTING batches owed to each peer. Everything is under one
/// lock; shards come here for a ROUTING frame, a peer going up or down, a client binding or
/// leaving, and on the hot path only for a node that is not connected to this relay.
final class MeshRouter: Sendable {
    /// A proven peer relay: where its connection is and what it has done.
    struct PeerLink: Sendable {
        var relay: NodeAddress
        var location: NodeLocation
        /// The `mesh.peers` entry when this relay dialed it; nil when the peer dialed in.
        var dialedAddress: String?
        var remoteAddress: String?
        var since: Date
        /// Entries owed to it in the next delta batch, in order, without repeats.
        var pending: [GUID] = []
        var pendingSet: Set<GUID> = []
        /// When the last delta batch went to it (the batching clock: one batch per interval).
        var lastDelta: NIODeadline?
        /// A pending change is urgent (a withdrawal, a new sequence number): it may go after an
        /// eighth of the interval (RouteTable's batching rule), so a repair crosses the mesh fast.
        var pendingUrgent = false
        var routingFramesIn = 0
        var routingFramesOut = 0
        var routingBytesIn = 0
        var routingBytesOut = 0
        var lastRoutingIn: Date?
        var invalidEntries = 0
    }

    /// ROUTING entries to write to one peer's connection.
    struct Batch: Sendable {
        var relay: GUID
        var location: NodeLocation
        var entries: [MeshRouteEntry]
    }

    /// What a proven peer connection should do.
    enum Admission: Sendable, Equatable {
        /// The only connection to that relay: it is a peer now.
        case admitted
        /// Another connection to the same relay is kept (PROFILE.md section 9): close this one.
        case duplicate
        /// This one is kept and replaces the connection at `location`, which is to be closed.
        case replaces(NodeLocation)
    }

    /// A node reached through a peer, as clients and shards need to know it.
    struct RemoteNode: Sendable {
        var tag: SenderTag
        /// Relay hops.
        var ttl: Int
        var legacy: Bool
        /// The peer relay the route goes through, and its connection.
        var relay: GUID
        var location: NodeLocation
    }

    private struct State {
        var table: RouteTable
        var peers: [GUID: PeerLink] = [:]
        /// Changes the shards have not heard yet (client ROUTING, introductions, stored messages).
        var shardPending: [GUID] = []
        var shardPendingSet: Set<GUID> = []
        /// The nodes the shards were last told are reached through a peer. Only those and the
        /// nodes reached through a peer now concern the shards: a client of this relay binding or
        /// leaving changes the table too, and without this every connection of a relay with no
        /// peers sent every shard a command for nothing.
        var shardsHoldRemote: Set<GUID> = []
        var routingFramesIn = 0
        var routingFramesOut = 0
        var authFailures = 0
        /// The relay each dialed `mesh.peers` address proved to be, last time.
        var dialedRelays: [String: GUID] = [:]
        /// Whether the table holds this relay's own clients. It does from the first proven peer
        /// on, for the life of the process; the clients bound then are taken from the registry.
        /// Before, nothing reads their routes but `routes()` and the count in `snapshot()`, which
        /// take them from the registry too: a relay with no peer (most of them) skips the table
        /// at every bind and close, about 8,700 of a handshake's 123,000 instructions
        /// (instructions-hs.sh). No peer has heard of them, so none is owed a withdrawal.
        var holdsLocalClients = false
    }

    private let state: NIOLockedValueBox<State>
    let selfID: GUID
    /// This relay's clients (set once): the table's source for them until it holds them itself.
    private let registry: NodeRegistry

    init(identity: NodeAddress, registry: NodeRegistry) {
        selfID = identity.id
        self.registry = registry
        // Sequence numbers that grow with time: a restarted relay outbids the numbers the mesh
        // still remembers from before at once (RouteTable's initialSeq).
        let seconds = UInt32(truncatingIfNeeded: Int(max(Date().timeIntervalSince1970 - 1_700_000_000, 0)))
        state = NIOLockedValueBox(State(table: RouteTable(selfID: identity.id, name: identity.name, initialSeq: seconds &* 2)))
    }

    // MARK: The hot path

    /// Where to send a message for `node` when it is not connected here: the connection of the
    /// peer relay its route goes through.
    @inline(__always)
    func nextHop(for node: GUID) -> (relay: GUID, location: NodeLocation)? {
        state.withLockedValue { state in
            guard let peer = state.table.nextHopPeer(for: node), let link = state.peers[peer] else { return nil }
            return (peer, link.location)
        }
    }

    /// Whether a peer routes `node` (it is connected elsewhere in the mesh): a HELLO for it here
    /// is an id collision.
    func routesElsewhere(_ node: GUID) -> Bool {
        state.withLockedValue { $0.table.nextHopPeer(for: node) != nil }
    }

    // MARK: Events

    /// A client bound here: call after binding it in the registry (before that, a peer proven
    /// meanwhile would miss it).
    func localBound(_ node: NodeAddress, legacy: Bool) {
        state.withLockedValue { state in
            guard state.holdsLocalClients else { return }
            state.table.addLocal(node, legacy: legacy)
            Self.collect(&state)
        }
    }

    /// A client left: call after unbinding it in the registry. If the id is bound again by now (a
    /// reconnection on another shard whose `localBound` came first), the route stays.
    func localUnbound(_ node: GUID) {
        state.withLockedValue { state in
            guard state.holdsLocalClients, registry.lookup(node) == nil else { return }
            state.table.removeLocal(node)
            Self.collect(&state)
        }
    }

    /// The first peer: the table takes every client bound now. The registry is read under this
    /// lock, so a client binding or leaving meanwhile is counted once: bound before the read, it is
    /// in it (and its own `localBound` after changes nothing); after, its `localBound` adds it; one
    /// that left before the read is not in it (its `localUnbound` finds nothing to remove).
    private func holdLocalClients(_ state: inout State) {
        guard !state.holdsLocalClients else { return }
        state.holdsLocalClients = true
        for (address, legacy) in registry.boundNodes() {
            state.table.addLocal(address, legacy: legacy)
        }
    }

    /// A connection proved it is `relay`. At most one connection per pair of relays: the one
    /// dialed by the relay with the smaller id stays.
    func peerProven(
        _ relay: NodeAddress, at location: NodeLocation, dialedAddress: String?, remoteAddress: String?
    ) -> Admission {
        state.withLockedValue { state in
            var admission = Admission.admitted
            if let existing = state.peers[relay.id], existing.location != location {
                let dialer = dialedAddress != nil ? selfID : relay.id
                guard MeshHandshake.keeps(connectionDialedBy: dialer, ownID: selfID, peer: relay.id) else { return .duplicate }
                admission = .replaces(existing.location)
            }
            if let dialedAddress { state.dialedRelays[dialedAddress] = relay.id }
            holdLocalClients(&state)
            state.peers[relay.id] = PeerLink(
                relay: relay, location: location, dialedAddress: dialedAddress, remoteAddress: remoteAddress, since: Date())
            state.table.peerUp(relay.id)
            Self.collect(&state)
            return admission
        }
    }

    /// A peer's connection closed: routes through it go at once (if it still was the peer's).
    func peerLost(_ relay: GUID, at location: NodeLocation) {
        state.withLockedValue { state in
            guard state.peers[relay]?.location == location else { return }
            state.peers[relay] = nil
            state.table.peerDown(relay)
            Self.collect(&state)
        }
    }

    /// A ROUTING frame from a proven peer.
    func receive(_ entries: [MeshRouteEntry], from relay: GUID, frameBytes: Int, malformed: Int) -> RouteUpdateResult {
        state.withLockedValue { state in
            let result = state.table.receive(entries, from: relay)
            state.routingFramesIn += 1
            if var link = state.peers[relay] {
                link.routingFramesIn += 1
                link.routingBytesIn += frameBytes
                link.lastRoutingIn = Date()
                link.invalidEntries += result.invalid + malformed
                state.peers[relay] = link
            }
            Self.collect(&state)
            return result
        }
    }

    /// The table's changes go to every peer's pending batch and to the shards' list.
    private static func collect(_ state: inout State) {
        let changes = state.table.takeChanges()
        guard !changes.ids.isEmpty else { return }
        for id in changes.ids where state.table.nextHopPeer(for: id) != nil || state.shardsHoldRemote.contains(id) {
            if state.shardPendingSet.insert(id).inserted { state.shardPending.append(id) }
        }
        for relay in Array(state.peers.keys) {
            state.peers[relay]!.addPending(changes.ids)
            if changes.urgent { state.peers[relay]!.pendingUrgent = true }
        }
    }

    // MARK: Batches

    /// The delta batches due now: a peer gets one at once when none went to it during the last
    /// `interval` (an eighth of it when a pending change is urgent), else its pending entries
    /// wait for the end of that time (RouteTable's batching rule). Each batch is computed now,
    /// with the latest state of each entry.
    func dueDeltas(now: NIODeadline, interval: TimeAmount) -> [Batch] {
        state.withLockedValue { state in
            var batches: [Batch] = []
            for (relay, link) in state.peers where !link.pending.isEmpty {
                let spacing = link.pendingUrgent ? .nanoseconds(interval.nanoseconds / 8) : interval
                if let last = link.lastDelta, now < last + spacing { continue }
                let entries = state.table.advertisement(to: relay, of: link.pending)
                var updated = link
                updated.pending.removeAll(keepingCapacity: true)
                updated.pendingSet.removeAll(keepingCapacity: true)
                updated.pendingUrgent = false
                updated.lastDelta = now
                state.peers[relay] = updated
                if !entries.isEmpty { batches.append(Batch(relay: relay, location: link.location, entries: entries)) }
            }
            return batches
        }
    }

    /// The whole table for one peer (after its proof), or for every peer (each `routing.refresh`,
    /// then withdrawals that did their work are forgotten).
    func fullTables(for relay: GUID? = nil) -> [Batch] {
        state.withLockedValue { state in
            var batches: [Batch] = []
            for (id, link) in state.peers where relay == nil || relay == id {
                batches.append(Batch(relay: id, location: link.location, entries: state.table.fullAdvertisement(to: id)))
            }
            if relay == nil { state.table.expireWithdrawals() }
            return batches
        }
    }

    /// Counts ROUTING frames written to a peer.
    func sent(frames: Int, bytes: Int, to relay: GUID) {
        state.withLockedValue { state in
            state.routingFramesOut += frames
            state.peers[relay]?.routingFramesOut += frames
            state.peers[relay]?.routingBytesOut += bytes
        }
    }

    /// The nodes whose route changed since the last call, for the shards. Only ids: each shard
    /// reads their routes with `remoteNodes(_:)` when it applies them. Shards on different event
    /// loops take changes one after the other, and their broadcasts can reach a third shard in
    /// the other order; routes carried in the command would then leave that shard with the older
    /// one (a triangle's client kept seeing the long way round), routes read on arrival cannot.
    func takeRemoteChanges() -> [GUID] {
        state.withLockedValue { state in
            guard !state.shardPending.isEmpty else { return [] }
            let ids = state.shardPending
            for id in ids {
                if state.table.nextHopPeer(for: id) != nil {
                    state.shardsHoldRemote.insert(id)
                } else {
                    state.shardsHoldRemote.remove(id)
                }
            }
            state.shardPending.removeAll(keepingCapacity: true)
            state.shardPendingSet.removeAll(keepingCapacity: true)
            return ids
        }
    }

    /// How each of `ids` is reached through a peer now: nil when no peer reaches it (a local
    /// client may be one of those: the node registry announces those).
    func remoteNodes(_ ids: [GUID]) -> [(id: GUID, node: RemoteNode?)] {
        state.withLockedValue { state in
            ids.map { id in
                guard let route = state.table.route(to: id), case .peer(let peer) = route.nextHop, let link = state.peers[peer]
                else { return (id, nil) }
                return (id, RemoteNode(tag: SenderTag(route.node), ttl: route.ttl, legacy: route.legacy, relay: peer, location: link.location))
            }
        }
    }

    func countAuthFailure() {
        state.withLockedValue { $0.authFailures += 1 }
    }

    // MARK: Operations

    struct PeerSnapshot: Sendable {
        var relay: NodeAddress
        var dialedAddress: String?
        var remoteAddress: String?
        var since: Date
        var routesLearned: Int
        var routingFramesIn: Int
        var routingFramesOut: Int
        var routingBytesIn: Int
        var routingBytesOut: Int
        var lastRoutingIn: Date?
        var invalidEntries: Int
    }

    struct Snapshot: Sendable {
        var peers: [PeerSnapshot]
        /// Nodes reachable through the mesh, this relay's clients included.
        var routes: Int
        var routingFramesIn: Int
        var routingFramesOut: Int
        var authFailures: Int
    }

    func snapshot() -> Snapshot {
        state.withLockedValue { state in
            let peers = state.peers.values.map { link in
                PeerSnapshot(
                    relay: link.relay, dialedAddress: link.dialedAddress, remoteAddress: link.remoteAddress, since: link.since,
                    routesLearned: state.table.routesVia(link.relay.id), routingFramesIn: link.routingFramesIn,
                    routingFramesOut: link.routingFramesOut, routingBytesIn: link.routingBytesIn,
                    routingBytesOut: link.routingBytesOut, lastRoutingIn: link.lastRoutingIn, invalidEntries: link.invalidEntries)
            }
            let localClients = state.holdsLocalClients ? 0 : registry.routableCount
            return Snapshot(
                peers: peers.sorted { $0.relay.id < $1.relay.id }, routes: state.table.reachableCount + localClients,
                routingFramesIn: state.routingFramesIn, routingFramesOut: state.routingFramesOut, authFailures: state.authFailures)
        }
    }

    /// The table as an operator reads it: every reachable node, its distance and next hop.
    func routes() -> [Route] {
        state.withLockedValue { state in
            var routes = state.table.reachableNodes()
            if !state.holdsLocalClients {
                for (address, legacy) in registry.boundNodes() {
                    routes.append(Route(node: address, nextHop: .local, ttl: 1, seq: nil, legacy: legacy))
                }
            }
            return routes
        }.sorted { $0.node.id < $1.node.id }
    }

    /// The relay the `mesh.peers` entry `address` proved to be when it was last dialed.
    func relay(dialedAt address: String) -> GUID? {
        state.withLockedValue { $0.dialedRelays[address] }
    }

    /// Whether `relay` is connected as a peer now (a dialer does not redial it then).
    func isConnected(_ relay: GUID) -> Bool {
        state.withLockedValue { $0.peers[relay] != nil }
    }
}

extension MeshRouter.PeerLink {
    mutating func addPending(_ ids: [GUID]) {
        for id in ids where pendingSet.insert(id).inserted {
            pending.append(id)
        }
    }
}
