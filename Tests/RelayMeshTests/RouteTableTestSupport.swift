import PTPProtocol
import RelayMesh
import XCTest

/// Ids that read well in failures: relays are `relay(n)`, clients `node(n)`.
func relay(_ number: UInt64) -> GUID { GUID(high: 0xAAAA_0000_0000_4000, low: 0x8000_0000_0000_0000 | number) }
func node(_ number: UInt64) -> GUID { GUID(high: 0xBBBB_0000_0000_4000, low: 0x8000_0000_0000_0000 | number) }
func address(_ id: GUID, _ name: String = "n") -> NodeAddress { NodeAddress(id: id, name: name) }

func entry(_ id: GUID, ttl: Int, seq: UInt32?, legacy: Bool = false) -> MeshRouteEntry {
    MeshRouteEntry(node: address(id), ttl: ttl, seq: seq, legacy: legacy)
}

extension RouteTable {
    /// A table for `relay(number)` with `peers` up.
    static func make(_ number: UInt64, peers: [GUID] = []) -> RouteTable {
        var table = RouteTable(selfID: relay(number), name: "r\(number)")
        for peer in peers { table.peerUp(peer) }
        return table
    }

    /// The entry this table sends `peer` about `id`, or nil when it sends none.
    func advertised(_ id: GUID, to peer: GUID) -> MeshRouteEntry? {
        advertisement(to: peer, of: [id]).first
    }
}

/// Relays wired in one process, exchanging in synchronous rounds: in each round every relay sends
/// each neighbour one batch with everything that changed since its previous batch, and all batches
/// are delivered before the next round. This is the batching rule at its coarsest (one batch per
/// interval everywhere), for the small topologies of the unit tests.
struct RoundMesh {
    var tables: [GUID: RouteTable] = [:]
    private(set) var neighbours: [GUID: [GUID]] = [:]
    private(set) var entriesSent = 0

    init(relays: [GUID]) {
        for id in relays {
            tables[id] = RouteTable(selfID: id)
            neighbours[id] = []
        }
    }

    /// Brings the link up on both sides and exchanges full tables.
    mutating func connect(_ a: GUID, _ b: GUID) {
        neighbours[a]!.append(b)
        neighbours[b]!.append(a)
        tables[a]!.peerUp(b)
        tables[b]!.peerUp(a)
        let toB = tables[a]!.fullAdvertisement(to: b)
        let toA = tables[b]!.fullAdvertisement(to: a)
        _ = tables[b]!.receive(toB, from: a)
        _ = tables[a]!.receive(toA, from: b)
    }

    mutating func disconnect(_ a: GUID, _ b: GUID) {
        neighbours[a]!.removeAll { $0 == b }
        neighbours[b]!.removeAll { $0 == a }
        tables[a]!.peerDown(b)
        tables[b]!.peerDown(a)
    }

    /// One round; returns how many entries were sent (0: the mesh is quiet).
    @discardableResult
    mutating func round() -> Int {
        var batches: [(from: GUID, to: GUID, entries: [MeshRouteEntry])] = []
        for id in tables.keys.sorted() {
            let changed = tables[id]!.takeChanges().ids
            guard !changed.isEmpty else { continue }
            for peer in neighbours[id]! {
                batches.append((id, peer, tables[id]!.advertisement(to: peer, of: changed)))
            }
        }
        var sent = 0
        for batch in batches {
            sent += batch.entries.count
            let result = tables[batch.to]!.receive(batch.entries, from: batch.from)
            XCTAssertEqual(result.invalid, 0)
        }
        entriesSent += sent
        return sent
    }

    /// Rounds until quiet (at most `limit`); returns how many rounds sent something.
    @discardableResult
    mutating func settle(limit: Int = 100) -> Int {
        for count in 0..<limit where round() == 0 { return count }
        XCTFail("no quiet after \(limit) rounds")
        return limit
    }

    /// True when following next hops for `node` from some relay comes back to a relay already on the path.
    func hasLoop(to node: GUID) -> Bool {
        for start in tables.keys {
            var seen: Set<GUID> = [start]
            var current = start
            while let next = tables[current]?.nextHopPeer(for: node) {
                guard seen.insert(next).inserted else { return true }
                current = next
            }
        }
        return false
    }

    /// The largest ttl any relay has for `node`, or nil when none has a route.
    func maxTTL(to node: GUID) -> Int? {
        tables.values.compactMap { $0.route(to: node)?.ttl }.max()
    }
}
