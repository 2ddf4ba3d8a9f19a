import NIOCore
import PTPProtocol

extension RelayShard {
    /// The peer's first HELLO binds the connection to its node id. A connection whose client
    /// certificate proved an id (PROFILE.md section 3) may say HELLO for that id only, and takes
    /// it over from a connection holding it; an unproven one never takes an id that is live.
    func handleHello(_ connection: Connection, _ envelope: Envelope) {
        guard let address = envelope.origin else { return }
        // A relay with `mesh.key` settles the peering proof first; the HELLO binds as a client
        // only when the proof says it is one.
        if connection.meshHandshake != nil, !meshHandshakeBindsClient(connection, envelope, address) { return }
        let refusedID = envelope.headMessageID ?? envelope.messageID ?? newMessageID()
        if let proven = connection.provenNodeID, proven != address.id {
            counters.drop(.spoofedSender)
            logger.info(
                "HELLO for another id than the certificate proves",
                metadata: ["conn": "\(connection.id)", "node": "\(address)", "proven": "\(proven)"])
            sendNack(to: connection, refusing: refusedID, reason: .spoofedSender)
            close(connection, reason: "HELLO for \(address.id) on a connection whose certificate proves \(proven)")
            return
        }
        if address.id == relay.address.id {
            counters.drop(.idInUse)
            sendNack(to: connection, refusing: refusedID, reason: .idInUse)
            close(connection, reason: "HELLO with the relay's own node id")
            return
        }
        if context.mesh.routesElsewhere(address.id) {
            // PROFILE.md section 9: connected through a peer relay already.
            counters.drop(.idInUse)
            logger.info("node id connected elsewhere in the mesh", metadata: ["conn": "\(connection.id)", "node": "\(address)"])
            sendNack(to: connection, refusing: refusedID, reason: .idInUse)
            close(connection, reason: "node id \(address.id) is connected to another relay of the mesh")
            return
        }
        let tag = SenderTag(address)
        let location = NodeLocation(shard: index, connection: connection.id)
        let isLegacy = configuration.compat.legacyClients && envelope.declaresLegacyClient
        if connection.provenNodeID == address.id {
            if let old = context.registry.takeOver(address.id, to: location, tag: tag, legacy: isLegacy) {
                counters.drop(.takenOver)
                logger.info(
                    "node id taken over by a connection that proved it",
                    metadata: ["conn": "\(connection.id)", "node": "\(address)", "old_conn": "\(old.connection)"])
                enqueue(.close(connection: old.connection, reason: "node id \(address.id) taken over by a connection that proved it"), to: old.shard)
            }
        } else if !context.registry.bind(address.id, to: location, tag: tag, legacy: isLegacy) {
            counters.drop(.idInUse)
            logger.info("node id already connected", metadata: ["conn": "\(connection.id)", "node": "\(address)"])
            sendNack(to: connection, refusing: refusedID, reason: .idInUse)
            close(connection, reason: "node id \(address.id) is live on another connection")
            return
        }
        connection.tag = tag
        connection.location = location
        connection.recipientKey = RecentDeliveries.key(address.id)
        connection.phase = .bound
        updateFrameCap(of: connection)
        connection.isLegacy = isLegacy
        logger.debug(
            "node bound",
            metadata: [
                "conn": "\(connection.id)", "node": "\(address)", "server": "\(envelope.declaresServer)",
                "legacy": "\(connection.isLegacy)",
            ])
        context.mesh.localBound(address, legacy: connection.isLegacy)
        broadcastToShards(.nodeBound(address.id, location, tag))
        sendWelcome(to: connection)
        if connection.isLegacy { introduceToOtherLegacyClients(connection, tag: tag, location: location) }
        deliverStored(to: connection)
    }

    /// A later HELLO on a bound connection refreshes it; it may not change the node id.
    func handleHelloRefresh(_ connection: Connection, _ envelope: Envelope) {
        guard let address = envelope.origin, address.id == connection.nodeID else {
            refuseSpoofed(connection, envelope)
            return
        }
    }

    /// The relay's HELLO again, every `timeouts.hello_refresh` (the existing client marks a node
    /// offline after 120 s without one).
    func sendHelloRefresh() {
        var frame = ByteBufferAllocator().buffer(capacity: 256)
        RelayFrames.hello(&frame, messageID: newMessageID(), relay: relay)
        for connection in connections.values where connection.phase == .bound {
            writeBytes(to: connection, frame)
            if connection.isLegacy { refreshIntroductions(to: connection) }
        }
        flushDirty()
    }
}
