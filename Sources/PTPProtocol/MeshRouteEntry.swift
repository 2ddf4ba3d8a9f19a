/// One entry of a ROUTING frame between relays (PROFILE.md section 9): a node, its distance in
/// relay hops (`ttl`), and the keys that only relays exchange. Clients get `node_id` and `ttl` only.
public struct MeshRouteEntry: Sendable, Hashable {
    /// The node as `name@GUID`.
    public var node: NodeAddress
    /// 1 for a node connected to the sender, entry + 1 per relay; 31 or more from a peer is a
    /// withdrawal (32 is unreachable).
    public var ttl: Int
    /// The sequence number the node's own relay (its origin) gave this route; nil from a relay
    /// that does not use them. Only the origin makes a new one (see `RouteTable`).
    public var seq: UInt32?
    /// The node is the existing public client (PROFILE.md section 4a): relays introduce it.
    public var legacy: Bool

    public init(node: NodeAddress, ttl: Int, seq: UInt32? = nil, legacy: Bool = false) {
        self.node = node
        self.ttl = ttl
        self.seq = seq
        self.legacy = legacy
    }

    /// The distance that means "no route".
    public static let unreachable = 32
}
