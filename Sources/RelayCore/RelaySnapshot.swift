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

    /// Messages relayed (every unicast and flood verb) since start.
    public var messagesRelayed: Int { counters.relayedByVerb.reduce(0, +) }
}

extension RelayServer {
    /// Adds up every shard's counters and connections (each read on its own loop) and the store's
    /// totals (read off the loops).
    public func snapshot() async throws -> RelaySnapshot {
        var counters = RelayCounters()
        var clients = 0
        var handshaking = 0
        for shard in shards {
            let (shardCounters, bound, waiting) = try await shard.eventLoop.submit {
                var bound = 0
                var waiting = 0
                for connection in shard.connections.values {
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
        }
        let totals = (try? context.store.totals()) ?? (0, 0)
        return RelaySnapshot(
            identity: identity, uptime: Double((NIODeadline.now() - startedAt).nanoseconds) / 1e9, clients: clients,
            handshaking: handshaking, legacyClients: context.legacyClients.count, nodes: context.registry.count,
            counters: counters, storeMessages: totals.0, storeBytes: totals.1)
    }
}
