import PTPProtocol

/// This shard's replica of where every node is and how it is announced, kept up to date by the
/// `nodeBound`/`nodeUnbound` commands, and the ROUTING changes clients have not heard yet.
/// Owned by the shard's event loop.
struct NodeDirectory {
    struct Node {
        var location: NodeLocation
        var tag: SenderTag
    }

    /// The nodes connected to this relay, on any shard: one table for both what a lookup needs
    /// (where) and what ROUTING needs (how it is announced). Every shard holds one of these per
    /// node, so its cost counts once per shard in what an idle connection costs; two tables kept
    /// the id twice.
    private var nodes: [GUID: Node] = [:]
    /// Nodes reached through peer relays (PROFILE.md section 9), as the mesh router announced them.
    private var remote: [GUID: MeshRouter.RemoteNode] = [:]
    /// ROUTING changes not yet sent to clients.
    private var delta: [GUID: (tag: SenderTag, ttl: Int)] = [:]
    /// False while clients hear no ROUTING changes (`routing.to_clients: false`): nothing is
    /// recorded, where a connection storm otherwise grew `delta` by an entry per node until the
    /// next interval threw it away (set by the shard from its configuration).
    var recordsChanges = true

    subscript(id: GUID) -> NodeLocation? { nodes[id]?.location }

    /// How a node connected here or reached through the mesh is announced.
    func tag(of id: GUID) -> SenderTag? { nodes[id]?.tag ?? remote[id]?.tag }

    /// A node reached through a peer.
    func remote(_ id: GUID) -> MeshRouter.RemoteNode? { remote[id] }

    /// Nodes reached through peers, with their distance.
    var remoteNodes: Dictionary<GUID, MeshRouter.RemoteNode>.Values { remote.values }

    /// A node reached through a peer changed (nil: no peer reaches it any more). Returns true
    /// when it was not reachable through a peer before.
    @discardableResult
    mutating func remoteChanged(_ id: GUID, _ node: MeshRouter.RemoteNode?) -> Bool {
        if let node {
            let isNew = remote.updateValue(node, forKey: id) == nil
            if nodes[id] == nil { record(id, node.tag, node.ttl) }
            return isNew
        }
        if let gone = remote.removeValue(forKey: id), nodes[id] == nil {
            record(id, gone.tag, Forwarding.maxTTL)
        }
        return false
    }

    var count: Int { nodes.count }

    /// Every node as it is announced.
    var allTags: LazyMapSequence<Dictionary<GUID, Node>.Values, SenderTag> { nodes.values.lazy.map(\.tag) }

    mutating func bound(_ id: GUID, at location: NodeLocation, tag: SenderTag) {
        nodes[id] = Node(location: location, tag: tag)
        record(id, tag, 1)
    }

    /// Forgets the node if it is still at `location` (a newer binding elsewhere stays); a node
    /// a peer reaches stays listed at its distance through the mesh.
    mutating func unbound(_ id: GUID, from location: NodeLocation, tag: SenderTag) {
        guard nodes[id]?.location == location else { return }
        nodes[id] = nil
        if let remote = remote[id] {
            record(id, remote.tag, remote.ttl)
        } else {
            record(id, tag, Forwarding.maxTTL)
        }
    }

    private mutating func record(_ id: GUID, _ tag: SenderTag, _ ttl: Int) {
        if recordsChanges { delta[id] = (tag, ttl) }
    }

    /// The ROUTING changes since the last call.
    mutating func takeDelta() -> [GUID: (tag: SenderTag, ttl: Int)] {
        let taken = delta
        delta.removeAll()
        return taken
    }
}
