import PTPProtocol

/// This shard's replica of where every node is and how it is announced, kept up to date by the
/// `nodeBound`/`nodeUnbound` commands, and the ROUTING changes clients have not heard yet.
/// Owned by the shard's event loop.
struct NodeDirectory {
    private var locations: [GUID: NodeLocation] = [:]
    private var tags: [GUID: SenderTag] = [:]
    /// ROUTING changes not yet sent to clients.
    private var delta: [GUID: (tag: SenderTag, ttl: Int)] = [:]

    subscript(id: GUID) -> NodeLocation? { locations[id] }

    func tag(of id: GUID) -> SenderTag? { tags[id] }

    var count: Int { tags.count }

    /// Every node as it is announced.
    var allTags: Dictionary<GUID, SenderTag>.Values { tags.values }

    mutating func bound(_ id: GUID, at location: NodeLocation, tag: SenderTag) {
        locations[id] = location
        tags[id] = tag
        delta[id] = (tag, 1)
    }

    /// Forgets the node if it is still at `location` (a newer binding elsewhere stays).
    mutating func unbound(_ id: GUID, from location: NodeLocation, tag: SenderTag) {
        guard locations[id] == location else { return }
        locations[id] = nil
        tags[id] = nil
        delta[id] = (tag, Forwarding.maxTTL)
    }

    /// The ROUTING changes since the last call.
    mutating func takeDelta() -> [GUID: (tag: SenderTag, ttl: Int)] {
        let taken = delta
        delta.removeAll()
        return taken
    }
}
