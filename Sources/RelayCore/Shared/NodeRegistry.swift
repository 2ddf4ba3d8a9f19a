import NIOConcurrencyHelpers
import PTPProtocol

/// Where a bound node's connection lives: which shard (event loop) and which connection on it.
///
/// One word: a connection id's top byte is the index of its shard (`RelayShard.open` numbers them
/// so). The registry, every shard's directory and the mesh keep a location per node.
public struct NodeLocation: Sendable, Hashable {
    /// The connection's id, its shard in the top byte.
    public let connection: UInt64
    public var shard: Int { Int(truncatingIfNeeded: connection >> Self.shardShift) }

    static let shardShift: UInt64 = 56

    /// `connection` is the shard's id for it: its top byte is `shard` already, or zero.
    public init(shard: Int, connection: UInt64) {
        precondition(connection >> Self.shardShift == 0 || Int(connection >> Self.shardShift) == shard, "connection of another shard")
        self.connection = UInt64(shard) << Self.shardShift | connection
    }
}

/// The authoritative map of node id to connection. Only handshakes and disconnects take its lock;
/// the hot path reads each shard's own replica and comes here only on a miss.
final class NodeRegistry: Sendable {
    private struct Binding {
        var location: NodeLocation
        var tag: SenderTag
        /// The existing public client (PROFILE.md section 4a).
        var legacy: Bool
    }

    private let bindings = NIOLockedValueBox<[GUID: Binding]>([:])

    /// Binds `id` unless another live connection holds it.
    func bind(_ id: GUID, to location: NodeLocation, tag: SenderTag, legacy: Bool = false) -> Bool {
        bindings.withLockedValue { table in
            if let existing = table[id], existing.location != location { return false }
            table[id] = Binding(location: location, tag: tag, legacy: legacy)
            return true
        }
    }

    /// Binds `id` to `location` whatever holds it (a connection that proved the id takes it over).
    /// Returns the connection that held it, which the caller closes; its later `unbind` finds
    /// the id bound elsewhere and leaves the new binding alone.
    func takeOver(_ id: GUID, to location: NodeLocation, tag: SenderTag, legacy: Bool = false) -> NodeLocation? {
        bindings.withLockedValue { table in
            let previous = table[id]?.location
            table[id] = Binding(location: location, tag: tag, legacy: legacy)
            return previous == location ? nil : previous
        }
    }

    /// Unbinds `id` if it is still bound to that connection.
    @discardableResult
    func unbind(_ id: GUID, from location: NodeLocation) -> Bool {
        bindings.withLockedValue { table in
            guard table[id]?.location == location else { return false }
            table[id] = nil
            return true
        }
    }

    func lookup(_ id: GUID) -> NodeLocation? {
        bindings.withLockedValue { $0[id]?.location }
    }

    var count: Int { bindings.withLockedValue { $0.count } }

    /// Every node bound now that the route table would list (not the all-zero id, which it never
    /// holds), as it lists a client of this relay.
    func boundNodes() -> [(address: NodeAddress, legacy: Bool)] {
        bindings.withLockedValue { table in
            table.values.compactMap { $0.tag.address.id.isZero ? nil : ($0.tag.address, $0.legacy) }
        }
    }

    /// How many of them (`boundNodes().count`, without the array).
    var routableCount: Int {
        bindings.withLockedValue { table in table.count - (table[GUID.zero] == nil ? 0 : 1) }
    }
}
