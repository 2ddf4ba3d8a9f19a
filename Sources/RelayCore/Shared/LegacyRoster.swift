import NIOConcurrencyHelpers
import PTPProtocol

/// The existing public client's connections on every shard (PROFILE.md section 4a). That client
/// never announces its channel membership, so when one binds the relay introduces it to every other
/// one and every other one to it.
final class LegacyRoster: Sendable {
    struct Member: Sendable {
        var location: NodeLocation
        var tag: SenderTag
    }

    private let members = NIOLockedValueBox<[GUID: Member]>([:])

    /// Adds the node and returns every other member, in one step: of two clients binding at the same
    /// instant on two loops, the second one sees the first, so each pair is introduced.
    func join(_ id: GUID, _ member: Member) -> [Member] {
        members.withLockedValue { table in
            table[id] = member
            return table.filter { $0.key != id }.map(\.value)
        }
    }

    /// Removes the node if it is still bound to that connection.
    func leave(_ id: GUID, from location: NodeLocation) {
        members.withLockedValue { table in
            if table[id]?.location == location { table[id] = nil }
        }
    }

    /// Existing clients bound now.
    var count: Int { members.withLockedValue { $0.count } }
}
