import NIOCore
import PTPProtocol
import RelayMesh

/// The mesh on a shard (PROFILE.md section 9): the peering proof on a connection, a proven peer's
/// life (its full table, its ROUTING, its loss), and the route changes the mesh router hands out.
extension RelayShard {
    /// Bad frames a peer relay may send before it is disconnected.
    static let peerStrikesBeforeClose = 16
    /// The largest ROUTING frame a peer may send (PROFILE.md section 9).
    static let maxRoutingFrameBytes = 8192

    // MARK: The proof

    /// At open: an accepted connection gets the relay's HELLO (with `mesh_nonce` when the relay
    /// has a mesh key); a dialed one waits for the accepting relay's HELLO.
    func openMeshHandshake(_ connection: Connection, dialedPeer: String?) {
        if let dialedPeer {
            connection.dialedPeer = dialedPeer
            if let meshKey {
                connection.meshHandshake = MeshHandshake(dialing: meshKey, ownID: relay.address.id)
            }
        } else if let meshKey {
            connection.meshHandshake = MeshHandshake(accepting: meshKey, ownID: relay.address.id)
        }
        let nonce = connection.meshHandshake?.initialAttributes?.nonce
        if dialedPeer == nil {
            write(to: connection) { out in
                if let nonce {
                    MeshFrames.hello(&out, messageID: newMessageID(), relay: relay, nonce: nonce, proof: nil)
                } else {
                    helloTemplate.write(&out, messageID: newMessageID())
                }
            }
        }
    }

    /// A HELLO on a connection whose proof is under way. Returns true when it binds as a client;
    /// otherwise the proof took it (answered, proven, or failed and closing).
    func meshHandshakeBindsClient(_ connection: Connection, _ envelope: Envelope, _ address: NodeAddress) -> Bool {
        guard var handshake = connection.meshHandshake else { return true }
        let step = handshake.receive(
            MeshHelloReceived(nodeID: address.id, declaresServer: envelope.declaresServer, nonce: envelope.meshNonce, proof: envelope.meshProof))
        connection.meshHandshake = handshake.isFinished ? nil : handshake
        switch step {
        case .client:
            return true
        case .send(let attributes):
            write(to: connection) { out in
                MeshFrames.hello(&out, messageID: newMessageID(), relay: relay, nonce: attributes.nonce, proof: attributes.proof)
            }
            return false
        case .proven(let peer, let reply):
            if let reply {
                write(to: connection) { out in
                    MeshFrames.hello(&out, messageID: newMessageID(), relay: relay, nonce: reply.nonce, proof: reply.proof)
                }
            }
            bindPeer(connection, NodeAddress(id: peer, name: address.name))
            return false
        case .failed(let failure):
            counters.drop(.meshAuthFailed)
            context.mesh.countAuthFailure()
            logger.warning(
                "peering proof failed",
                metadata: [
                    "conn": "\(connection.logID)", "peer": "\(connection.dialedPeer ?? connection.observedIP ?? "?")",
                    "node": "\(address)", "reason": "\(failure)",
                ])
            close(connection, reason: "peering proof failed: \(failure)")
            return false
        }
    }

    // MARK: A proven peer

    /// The peer proved it is a relay of this mesh: bind it, keep one connection per pair of relays,
    /// and send it the whole table and the cached CHANNELs.
    private func bindPeer(_ connection: Connection, _ peer: NodeAddress) {
        let location = NodeLocation(shard: index, connection: connection.id)
        let remote = connection.observedEndpoint
        switch context.mesh.peerProven(peer, at: location, dialedAddress: connection.dialedPeer, remoteAddress: remote) {
        case .duplicate:
            counters.drop(.meshDuplicatePeer)
            logger.info("second connection to a peer relay closed", metadata: ["conn": "\(connection.id)", "relay": "\(peer)"])
            close(connection, reason: "another connection to relay \(peer.id) is kept")
            return
        case .replaces(let old):
            counters.drop(.meshDuplicatePeer)
            enqueue(.close(connection: old.connection, reason: "another connection to relay \(peer.id) is kept"), to: old.shard)
        case .admitted:
            break
        }
        connection.tag = SenderTag(peer)
        connection.location = location
        connection.peerRelay = peer.id
        connection.phase = .bound
        updateFrameCap(of: connection)
        exemptFromNodeLimits(connection)
        logger.info(
            "peer relay up",
            metadata: ["conn": "\(connection.id)", "relay": "\(peer)", "address": "\(connection.dialedPeer ?? remote ?? "?")"])
        for batch in context.mesh.fullTables(for: peer.id) { writeRouting(batch) }
        for frame in context.channels.current() { writeBytes(to: connection, frame) }
    }

    /// A peer's connection closed: the routes through it go at once; what it had not ACKed was
    /// stored by `closed`.
    func peerClosed(_ relay: GUID, at location: NodeLocation) {
        context.mesh.peerLost(relay, at: location)
        logger.info("peer relay down", metadata: ["relay": "\(relay)", "conn": "\(location.connection)"])
        flushMesh()
    }

    /// A ROUTING frame from a proven peer: its entries go to the table; malformed ones and an
    /// oversized frame are counted against the peer, which is closed when it keeps sending them.
    func handleMeshRouting(from connection: Connection, _ envelope: Envelope, _ bytes: UnsafeRawBufferPointer) {
        guard let relayID = connection.peerRelay else { return }
        if bytes.count + 4 > Self.maxRoutingFrameBytes {
            counters.drop(.meshOversizedRouting)
            logger.warning("peer relay sent a ROUTING frame above 8 KiB", metadata: ["conn": "\(connection.logID)", "bytes": "\(bytes.count + 4)"])
            strike(connection)
        }
        let parsed: MeshRouting
        do {
            parsed = try MeshRouting.entries(tape: reader.tape, bytes: bytes, data: envelope.data)
        } catch {
            counters.drop(.meshInvalidEntry)
            logger.warning("peer relay sent a ROUTING frame that cannot be read", metadata: ["conn": "\(connection.logID)", "reason": "\(error)"])
            strike(connection)
            return
        }
        let result = context.mesh.receive(parsed.entries, from: relayID, frameBytes: bytes.count + 4, malformed: parsed.malformed)
        let invalid = parsed.malformed + result.invalid
        if invalid > 0 {
            counters.drop(.meshInvalidEntry, count: invalid)
            logger.warning("peer relay sent invalid ROUTING entries", metadata: ["conn": "\(connection.logID)", "entries": "\(invalid)"])
            strike(connection)
        }
        for collision in result.collisions {
            counters.drop(.meshIDCollision)
            logger.warning(
                "peer relay claims a node connected here", metadata: ["relay": "\(relayID)", "node": "\(collision.node)"])
        }
        flushMesh()
    }

    private func strike(_ connection: Connection) {
        connection.peerStrikes += 1
        if connection.peerStrikes >= Self.peerStrikesBeforeClose {
            logger.warning("closing a peer relay that keeps sending bad frames", metadata: ["conn": "\(connection.logID)"])
            close(connection, reason: "repeated bad frames from a peer relay")
        }
    }

    // MARK: ROUTING out

    /// The delta batches due now go to their peers, and the shards hear of changed routes. Runs
    /// after every mesh event and from a short timer (a batch held back by the interval).
    func flushMesh() {
        let interval = TimeAmount.fromSeconds(configuration.routing.interval)
        // The loop's clock: virtual on a test's embedded loop, so a simulation drives the batching.
        for batch in context.mesh.dueDeltas(now: eventLoop.now, interval: interval) { writeRouting(batch) }
        let changed = context.mesh.takeRemoteChanges()
        guard !changed.isEmpty else { return }
        broadcastToShards(.remoteRoutes(changed))
        let appeared = context.mesh.remoteNodes(changed).compactMap { $0.node == nil ? nil : $0.id }
        if !appeared.isEmpty { sendStoredForNewRoutes(appeared) }
    }

    /// Every `routing.refresh`: the whole table to every peer.
    func refreshMesh() {
        for batch in context.mesh.fullTables() { writeRouting(batch) }
    }

    /// Writes ROUTING frames (at most 8 KiB each) with `batch`'s entries to its peer's connection.
    func writeRouting(_ batch: MeshRouter.Batch) {
        var frames = ByteBufferAllocator().buffer(capacity: min(batch.entries.count * 80 + 256, 1 << 20))
        var count = 0
        MeshFrames.routing(&frames, entries: batch.entries, relay: relay, maxFrameBytes: Self.maxRoutingFrameBytes) {
            count += 1
            return newMessageID()
        }
        context.mesh.sent(frames: count, bytes: frames.readableBytes, to: batch.relay)
        counters.routingFramesOut += count
        send(verb: .routing, to: .peer(batch.location, relay: batch.relay), relayed: false) {
            var copy = frames
            $0.writeBuffer(&copy)
        }
    }

    // MARK: Route changes

    /// Nodes reached through peers changed: clients hear it with the next ROUTING delta, existing
    /// clients meet the existing clients of other relays (PROFILE.md section 4a). The routes are
    /// read now, not carried in the command (see `MeshRouter.takeRemoteChanges`).
    func remoteRoutesChanged(_ ids: [GUID]) {
        for (id, node) in context.mesh.remoteNodes(ids) {
            let appeared = directory.remoteChanged(id, node)
            guard appeared, let node, node.legacy else { continue }
            membershipChanged([MembershipChange(channelID: LegacyClientChannel.id, node: id, joined: true)])
            guard configuration.compat.legacyClients else { continue }
            for connection in connections.values where connection.isLegacy && connection.phase == .bound {
                introduceAsChannelMember(node.tag, to: connection)
            }
        }
    }

    /// Routes to these nodes appeared: messages the store holds for them go to their next hop.
    private func sendStoredForNewRoutes(_ nodes: [GUID]) {
        let shard = self
        context.store.recipients(withMessagesAmong: nodes, on: eventLoop).assumeIsolated().whenSuccess { recipients in
            guard !recipients.isEmpty else { return }
            shard.announceStored(for: recipients)
            shard.flushAll()
        }
    }
}
