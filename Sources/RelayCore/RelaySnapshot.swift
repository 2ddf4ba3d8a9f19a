import Foundation
import NIOCore
import PTPProtocol

/// The relay's state at one instant, for the stats endpoint and `STATUS=`.
public struct RelaySnapshot: Sendable {
    public var identity: NodeAddress
    /// Seconds since the relay started.
    public var uptime: Double
    /// Connections bound to a node (clients), and those still in their handshake.
    public var clients: Int
    public var handshaking: Int
    /// Clients recognised as the existing public client (PROFILE.md section 4a).
    public var legacyClients: Int = 0
    /// Nodes the relay can reach (directly connected, for now).
    public var nodes: Int
    public var counters: RelayCounters
    /// Messages and bytes in the offline buffer.
    public var storeMessages: Int
    public var storeBytes: Int
    /// `store.max_bytes`: the offline buffer refuses messages beyond it (0: not known).
    public var storeMaxBytes: Int = 0
    /// Addresses banned at the listening sockets now (`limits.ban_after_refusals`).
    public var bannedAddresses: Int = 0
    /// The mesh: peer relays and the route table (PROFILE.md section 9).
    public var mesh = MeshStatus()
    /// Each event loop's share of the work, in loop order.
    public var eventLoops: [EventLoopLoad] = []

    /// Messages relayed (every unicast and flood verb) since start.
    public var messagesRelayed: Int { counters.relayedByVerb.reduce(0, +) }
}

/// One event loop's share of the connections and of the traffic: whether the kernel spread the
/// connections evenly, and how much of the traffic crosses between loops (a message whose sender
/// and recipient are served by different loops is handed over, and so is its ACK).
public struct EventLoopLoad: Sendable, Equatable {
    public var clients: Int
    public var handshaking: Int
    public var framesIn: Int
    /// `RelayCounters.commandsFromOtherLoops`.
    public var commandsFromOtherLoops: Int

    public init(clients: Int, handshaking: Int, framesIn: Int, commandsFromOtherLoops: Int) {
        self.clients = clients
        self.handshaking = handshaking
        self.framesIn = framesIn
        self.commandsFromOtherLoops = commandsFromOtherLoops
    }
}

/// The mesh as an operator sees it.
public struct MeshStatus: Sendable {
    public struct Peer: Sendable {
        public var relayID: String?
        public var name: String?
        /// `HOST:PORT`: the `mesh.peers` entry when this relay dials it, else where it came from.
        public var address: String?
        /// `up` (proven), or `connecting` (a `mesh.peers` entry not connected now).
        public var state: String
        /// Unix time the connection was proven.
        public var since: Double?
        public var routesLearned = 0
        public var routingFramesIn = 0
        public var routingFramesOut = 0
        public var routingBytesIn = 0
        public var routingBytesOut = 0
        /// Unix time of the last ROUTING from it.
        public var lastRoutingIn: Double?
        public var invalidEntries = 0

        public init(relayID: String?, name: String?, address: String?, state: String) {
            self.relayID = relayID
            self.name = name
            self.address = address
            self.state = state
        }
    }

    public var peers: [Peer] = []
    /// Nodes this relay can reach, its own clients and peer relays included.
    public var routes = 0
    public var routingFramesIn = 0
    public var routingFramesOut = 0

    public init() {}

    public var peersUp: Int { peers.filter { $0.state == "up" }.count }
    /// `mesh.peers` entries this relay dials that are not connected now.
    public var peersConnecting: Int { peers.filter { $0.state == "connecting" }.count }
}

/// One row of the route table, for `/routes`.
public struct RouteRow: Sendable {
    /// `name@GUID`.
    public var node: String
    /// Relay hops (1: connected here, or a peer relay).
    public var ttl: Int
    /// `local`, or the id of the peer relay the route goes through.
    public var via: String
    public var legacy: Bool
}

extension RelayServer {
    /// The route table, sorted by node id.
    public func routes() -> [RouteRow] {
        context.mesh.routes().map { route in
            let via: String
            switch route.nextHop {
            case .local: via = "local"
            case .peer(let relay): via = relay.description
            }
            return RouteRow(node: route.node.description, ttl: route.ttl, via: via, legacy: route.legacy)
        }
    }

    /// The mesh's peers (proven ones, and `mesh.peers` entries not connected now) and counts.
    func meshStatus() -> MeshStatus {
        let snapshot = context.mesh.snapshot()
        var status = MeshStatus()
        status.routes = snapshot.routes
        status.routingFramesIn = snapshot.routingFramesIn
        status.routingFramesOut = snapshot.routingFramesOut
        var dialedUp = Set<String>()
        for link in snapshot.peers {
            var peer = MeshStatus.Peer(
                relayID: link.relay.id.description, name: link.relay.name, address: link.dialedAddress ?? link.remoteAddress, state: "up")
            if let dialed = link.dialedAddress { dialedUp.insert(dialed) }
            peer.since = link.since.timeIntervalSince1970
            peer.routesLearned = link.routesLearned
            peer.routingFramesIn = link.routingFramesIn
            peer.routingFramesOut = link.routingFramesOut
            peer.routingBytesIn = link.routingBytesIn
            peer.routingBytesOut = link.routingBytesOut
            peer.lastRoutingIn = link.lastRoutingIn?.timeIntervalSince1970
            peer.invalidEntries = link.invalidEntries
            status.peers.append(peer)
        }
        for address in dialer.addresses where !dialedUp.contains(address) {
            let relay = context.mesh.relay(dialedAt: address)
            // Connected the other way counts as up already.
            if let relay, context.mesh.isConnected(relay) { continue }
            status.peers.append(MeshStatus.Peer(relayID: relay?.description, name: nil, address: address, state: "connecting"))
        }
        return status
    }

    /// Adds up every shard's counters and connections (each read on its own loop) and the store's
    /// totals (read off the loops).
    public func snapshot() async throws -> RelaySnapshot {
        var counters = RelayCounters()
        var clients = 0
        var handshaking = 0
        var eventLoops: [EventLoopLoad] = []
        for shard in shards {
            let (shardCounters, bound, waiting) = try await shard.eventLoop.submit {
                var bound = 0
                var waiting = 0
                for connection in shard.connections.values where !connection.isPeer {
                    switch connection.phase {
                    case .bound: bound += 1
                    case .awaitingHello: waiting += 1
                    case .closing: break
                    }
                }
                return (shard.counters, bound, waiting)
            }.get()
            counters = counters + shardCounters
            clients += bound
            handshaking += waiting
            eventLoops.append(
                EventLoopLoad(
                    clients: bound, handshaking: waiting, framesIn: shardCounters.framesIn,
                    commandsFromOtherLoops: shardCounters.commandsFromOtherLoops))
        }
        let totals = (try? context.store.totals()) ?? (0, 0)
        var snapshot = RelaySnapshot(
            identity: identity, uptime: Double((NIODeadline.now() - startedAt).nanoseconds) / 1e9, clients: clients,
            handshaking: handshaking, legacyClients: context.legacyClients.count, nodes: context.registry.count,
            counters: counters, storeMessages: totals.0, storeBytes: totals.1)
        snapshot.storeMaxBytes = context.configuration.store.maxBytes
        snapshot.bannedAddresses = context.listenerBans.bannedCount
        snapshot.mesh = meshStatus()
        snapshot.eventLoops = eventLoops
        return snapshot
    }
}
