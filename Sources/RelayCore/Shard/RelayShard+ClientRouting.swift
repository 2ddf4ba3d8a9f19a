import NIOCore
import PTPProtocol
import RelayConfig

/// What clients hear in ROUTING (PROFILE.md sections 4 and 9, `routing.to_clients`): the whole
/// view (`true`), nothing but the first empty frame (`false`), or the nodes each client shares a
/// channel or exchanged messages with (`channels`), which stays small however large the mesh.
/// A client is never listed in its own ROUTING.
extension RelayShard {
    /// Most nodes a client's exchanged messages add to its view.
    static let maxContactsPerClient = 1024

    var clientView: RelayConfiguration.ClientRoutingView { configuration.routing.clientView }

    /// After a client's HELLO: ROUTING (always, even empty), then the cached CHANNELs.
    func sendWelcome(to connection: Connection) {
        var entries: [(address: SenderTag, ttl: Int)] = []
        let own = connection.nodeID
        switch clientView {
        case .none:
            break
        case .all:
            entries.reserveCapacity(directory.count)
            for tag in directory.allTags where tag.address.id != own { entries.append((tag, 1)) }
            for node in directory.remoteNodes where node.tag.address.id != own && directory[node.tag.address.id] == nil {
                entries.append((node.tag, node.ttl))
            }
        case .channels:
            if let own {
                for id in interest.sharing(with: own) {
                    if let route = currentRoute(to: id) { entries.append(route) }
                }
            }
        }
        writeRouting(entries, to: connection)
        for frame in context.channels.current() {
            writeBytes(to: connection, frame)
        }
    }

    /// How `id` is listed now: connected here at `ttl` 1, or through a peer at its distance.
    func currentRoute(to id: GUID) -> (address: SenderTag, ttl: Int)? {
        if directory[id] != nil, let tag = directory.tag(of: id) { return (tag, 1) }
        if let remote = directory.remote(id) { return (remote.tag, remote.ttl) }
        return nil
    }

    /// Sends the ROUTING changes since the last interval to the bound clients of this shard.
    func sendRoutingDelta() {
        let delta = directory.takeDelta()
        switch clientView {
        case .none:
            return
        case .all:
            guard !delta.isEmpty else { return }
            sendWholeDelta(delta)
        case .channels:
            sendInterestDelta(delta)
        }
        flushDirty()
    }

    private func sendWholeDelta(_ delta: [GUID: (tag: SenderTag, ttl: Int)]) {
        var frame = ByteBufferAllocator().buffer(capacity: 256)
        var frames = 0
        RelayFrames.routing(&frame, entries: delta.values.map { ($0.tag, $0.ttl) }, relay: relay) {
            frames += 1
            return newMessageID()
        }
        for connection in connections.values where connection.phase == .bound && !connection.isPeer {
            guard let own = connection.nodeID, delta[own] != nil else {
                writeBytes(to: connection, frame)
                counters.routingFramesToClients += frames
                counters.routingBytesToClients += frame.readableBytes
                continue
            }
            // A client is never listed in its own ROUTING: it gets the delta without its entry.
            let others = delta.filter { $0.key != own }
            guard !others.isEmpty else { continue }
            writeRouting(others.values.map { ($0.tag, $0.ttl) }, to: connection)
        }
    }

    /// `channels`: each changed node goes to the clients here that share a channel with it or
    /// exchanged messages with it, with what each client newly shares (one frame per client).
    private func sendInterestDelta(_ delta: [GUID: (tag: SenderTag, ttl: Int)]) {
        for (id, entry) in delta {
            for node in interest.sharing(with: id) {
                if let client = localClient(node) { queueRoute(id, entry, for: client) }
            }
            for connectionID in contactWatchers[id] ?? [] {
                if let connection = connections[connectionID] { queueRoute(id, entry, for: connection) }
            }
        }
        guard !routingPendingConnections.isEmpty else { return }
        let pendingIDs = routingPendingConnections
        routingPendingConnections.removeAll(keepingCapacity: true)
        for connectionID in pendingIDs {
            // Gone since (its queue went with it), or already sent.
            guard let connection = connections[connectionID], !connection.routingPending.isEmpty else { continue }
            let pending = connection.routingPending
            connection.routingPending.removeAll()
            guard connection.phase == .bound, !connection.isPeer else { continue }
            let entries = pending.compactMap { $0.key == connection.nodeID ? nil : ($0.value.tag, $0.value.ttl) }
            guard !entries.isEmpty else { continue }
            writeRouting(entries, to: connection)
        }
    }

    /// ROUTING frames with `entries` (at most 8 KiB each) to a client, counted.
    private func writeRouting(_ entries: [(address: SenderTag, ttl: Int)], to connection: Connection) {
        let before = connection.out.writerIndex
        if entries.isEmpty {
            write(to: connection) { out in emptyRoutingTemplate.write(&out, messageID: newMessageID()) }
            counters.routingFramesToClients += 1
        } else {
            write(to: connection) { out in
                RelayFrames.routing(&out, entries: entries, relay: relay) { [self] in
                    counters.routingFramesToClients += 1
                    return newMessageID()
                }
            }
        }
        counters.routingBytesToClients += connection.out.writerIndex - before
    }

    /// The bound client connection of `node` on this shard.
    func localClient(_ node: GUID) -> Connection? {
        guard let location = directory[node], location.shard == index,
            let connection = connections[location.connection], connection.phase == .bound, !connection.isPeer
        else { return nil }
        return connection
    }

    /// `connection`'s client now cares about `node` (a channel in common, a message exchanged):
    /// its route goes out with the next delta.
    func addInterest(_ connection: Connection, in node: GUID) {
        guard clientView == .channels, node != connection.nodeID, let route = currentRoute(to: node) else { return }
        queueRoute(node, (route.address, route.ttl), for: connection)
    }

    /// Queues `id`'s route for the connection's next ROUTING delta.
    private func queueRoute(_ id: GUID, _ entry: (tag: SenderTag, ttl: Int), for connection: Connection) {
        if connection.routingPending.isEmpty { routingPendingConnections.append(connection.id) }
        connection.routingPending[id] = entry
    }

    /// Channel memberships seen in a relayed JOIN, LEAVE or CHANNEL (every shard applies them).
    func membershipChanged(_ changes: [MembershipChange]) {
        for change in changes {
            let newlySharing = interest.apply(change)
            guard !newlySharing.isEmpty, clientView == .channels else { continue }
            if let client = localClient(change.node) {
                for other in newlySharing { addInterest(client, in: other) }
            }
            for other in newlySharing {
                if let client = localClient(other) { addInterest(client, in: change.node) }
            }
        }
    }

    /// A client exchanged a message with `node`: it sees `node`'s route from now on.
    @inline(__always)
    func noteContact(_ connection: Connection, _ node: GUID) {
        // Most messages go to the node the last one went to: one comparison, no hashing.
        guard connection.lastContact != node else { return }
        connection.lastContact = node
        guard clientView == .channels, !connection.isPeer, node != connection.nodeID,
            connection.contacts.count < Self.maxContactsPerClient, connection.contacts.insert(node).inserted
        else { return }
        contactWatchers[node, default: []].insert(connection.id)
        addInterest(connection, in: node)
    }

    /// A closed connection stops watching its contacts.
    func forgetContacts(of connection: Connection) {
        guard !connection.contacts.isEmpty else { return }
        for node in connection.contacts {
            contactWatchers[node]?.remove(connection.id)
            if contactWatchers[node]?.isEmpty == true { contactWatchers[node] = nil }
        }
        connection.contacts.removeAll()
    }
}
