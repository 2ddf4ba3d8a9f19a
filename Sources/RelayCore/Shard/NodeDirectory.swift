import PTPProtocol

/// This shard's replica of where every node is and how it is announced, kept up to date by the
/// `nodeBound`/`nodeUnbound` commands, and the ROUTING changes clients have not heard yet.
/// Owned by the shard's event loop.
struct NodeDirectory {
    private var locations: [GUID: NodeLocation] = [:]
    private var tags: [GUID: SenderTag] = [:]
    /// Nodes reached through peer relays (PROFILE.md section 9), as the mesh router announced them.
    private var remote: [GUID: MeshRouter.RemoteNode] = [:]
    /// ROUTING changes not yet sent to clients.
    private var delta: [GUID: (tag: SenderTag, ttl: Int)] = [:]

    subscript(id: GUID) -> NodeLocation? { locations[id] }

    /// How a node connected here or reached through the mesh is announced.
    func tag(of id: GUID) -> SenderTag? { tags[id] ?? remote[id]?.tag }

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
            if locations[id] == nil { delta[id] = (node.tag, node.ttl) }
            return isNew
        }
        if let gone = remote.removeValue(forKey: id), locations[id] == nil {
            delta[id] = (gone.tag, Forwarding.maxTTL)
        }
        return false
    }

    var count: Int { tags.count }

    /// Every node as it is announced.
    var allTags: Dictionary<GUID, SenderTag>.Values { tags.values }

    mutating func bound(_ id: GUID, at location: NodeLocation, tag: SenderTag) {
        locations[id] = location
        tags[id] = tag
        delta[id] = (tag, 1)
    }

    /// Forgets the node if it is still at `location` (a newer binding elsewhere stays); a node
    /// a peer reaches stays listed at its distance through the mesh.
    mutating func unbound(_ id: GUID, from location: NodeLocation, tag: SenderTag) {
        guard locations[id] == location else { return }
        locations[id] = nil
        tags[id] = nil
        delta[id] = remote[id].map { ($0.tag, $0.ttl) } ?? (tag, Forwarding.maxTTL)
    }

    /// The ROUTING changes since the last call.
    mutating func takeDelta() -> [GUID: (tag: SenderTag, ttl: Int)] {
        let taken = delta
        delta.removeAll()
        return taken
    }
}
