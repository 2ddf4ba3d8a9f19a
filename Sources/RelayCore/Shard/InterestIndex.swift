import PTPProtocol

/// A change of channel membership the relay saw in a JOIN, LEAVE or CHANNEL it relayed.
struct MembershipChange: Sendable {
    var channelID: String
    var node: GUID
    var joined: Bool
}

/// Who shares a channel with whom (PROFILE.md section 9, `routing.to_clients: channels`): every
/// shard keeps its own replica, fed by the membership changes of every flood the relay relays (the
/// mesh brings every flood to every relay). Owned by the shard's event loop.
///
/// Bounded: a node is in at most `maxChannelsPerNode` channels here, a channel lists at most
/// `maxMembersPerChannel` nodes; past that, new memberships are not recorded (the client sees
/// fewer routes, nothing else changes).
struct InterestIndex {
    static let maxChannelsPerNode = 64
    static let maxMembersPerChannel = 10_000

    private var members: [String: Set<GUID>] = [:]
    private var channels: [GUID: Set<String>] = [:]

    /// Applies a change; returns the nodes that share a channel with `change.node` because of it
    /// (they and it newly see each other), empty when nothing changed.
    mutating func apply(_ change: MembershipChange) -> [GUID] {
        if change.joined {
            var nodeChannels = channels[change.node, default: []]
            guard !nodeChannels.contains(change.channelID), nodeChannels.count < Self.maxChannelsPerNode,
                members[change.channelID, default: []].count < Self.maxMembersPerChannel
            else { return [] }
            let before = sharing(with: change.node)
            nodeChannels.insert(change.channelID)
            channels[change.node] = nodeChannels
            members[change.channelID, default: []].insert(change.node)
            return members[change.channelID, default: []].filter { $0 != change.node && !before.contains($0) }
        }
        guard channels[change.node]?.remove(change.channelID) != nil else { return [] }
        if channels[change.node]?.isEmpty == true { channels[change.node] = nil }
        members[change.channelID]?.remove(change.node)
        if members[change.channelID]?.isEmpty == true { members[change.channelID] = nil }
        return []
    }

    /// Every node that shares a channel with `node`.
    func sharing(with node: GUID) -> Set<GUID> {
        guard let nodeChannels = channels[node] else { return [] }
        var result = Set<GUID>()
        for channel in nodeChannels {
            result.formUnion(members[channel] ?? [])
        }
        result.remove(node)
        return result
    }

    /// Whether `a` and `b` share a channel.
    func share(_ a: GUID, _ b: GUID) -> Bool {
        guard let first = channels[a], let second = channels[b] else { return false }
        return !first.isDisjoint(with: second)
    }

    /// Memberships held (for tests).
    var membershipCount: Int { channels.values.reduce(0) { $0 + $1.count } }
}
