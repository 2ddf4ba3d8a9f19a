import NIOCore
import PTPProtocol

/// The existing public client (PROFILE.md section 4a, CLIENT-FRAMES.md). It never ACKs, it gives a
/// node an address only from a HELLO under that node's id, and it sends chat only to members of its
/// one built-in channel, throwing at the first member without an address. The relay delivers to it
/// best effort and introduces nodes to it before it needs their address.
extension RelayShard {
    /// A HELLO under `node`'s id to an existing client, once per node per connection, before any
    /// frame that makes it file that node (a relayed JOIN or chat from it).
    func introduce(_ node: SenderTag, to connection: Connection) {
        guard connection.isLegacy, node.address.id != connection.nodeID,
            connection.introduced.insert(node.address.id).inserted
        else { return }
        counters.introductions += 1
        write(to: connection) { out in RelayFrames.introduction(&out, messageID: newMessageID(), node: node) }
    }

    /// `node` as a member of the client's built-in channel: its HELLO (once), then a JOIN under its id.
    func introduceAsChannelMember(_ node: SenderTag, to connection: Connection) {
        guard connection.isLegacy, node.address.id != connection.nodeID else { return }
        introduce(node, to: connection)
        write(to: connection) { out in RelayFrames.legacyChannelJoin(&out, messageID: newMessageID(), node: node) }
    }

    /// A newly bound existing client meets every other one, on any shard, and they meet it: the
    /// client never sends JOIN, so without this none of them would ever send chat to another.
    func introduceToOtherLegacyClients(_ connection: Connection, tag: SenderTag, location: NodeLocation) {
        // A member of its built-in channel, for the ROUTING view of those who share it.
        broadcastToShards(.membership([MembershipChange(channelID: LegacyClientChannel.id, node: tag.address.id, joined: true)]))
        let others = context.legacyClients.join(tag.address.id, .init(location: location, tag: tag))
        for other in others {
            introduceAsChannelMember(other.tag, to: connection)
            enqueue(.introduce(connection: other.location.connection, node: tag), to: other.location.shard)
        }
        // And to the existing clients of other relays of the mesh.
        for node in directory.remoteNodes where node.legacy {
            introduceAsChannelMember(node.tag, to: connection)
        }
    }

    /// The relay's periodic HELLO keeps the relay online in the client's node list; the same for
    /// the nodes introduced to it that are still connected.
    func refreshIntroductions(to connection: Connection) {
        for id in connection.introduced {
            guard let tag = directory.tag(of: id) else { continue }
            write(to: connection) { out in RelayFrames.introduction(&out, messageID: newMessageID(), node: tag) }
        }
    }

    /// The write that carried these deliveries to an existing client completed: each counts as
    /// delivered, as an ACK would (PROFILE.md section 4a). One not awaited any more was settled by
    /// a close meanwhile.
    func legacyWriteCompleted(_ connection: Connection, delivering messageIDs: [GUID]) {
        for messageID in messageIDs {
            guard let entry = connection.awaiting.removeValue(forKey: messageID) else { continue }
            counters.legacyDelivered += 1
            delivered(entry, messageID: messageID, on: connection)
        }
        scheduleFlush()
    }

    /// Writes a delivery's frame to `connection` as it is; returns where the frame starts.
    @inline(__always)
    func writeFrame(to connection: Connection, _ body: (inout ByteBuffer) -> Void) -> Int {
        let start = connection.out.writerIndex
        body(&connection.out)
        return start
    }

    /// Writes a delivery's frame to an existing client, preceded by the introduction of its sender
    /// when it is chat; returns where the frame starts. The sender's name is read back from the
    /// frame: deliveries do not carry it, and this runs once per sender per existing client.
    func writeIntroducingSender(to connection: Connection, _ body: (inout ByteBuffer) -> Void) -> Int {
        var frame = ByteBufferAllocator().buffer(capacity: 512)
        body(&frame)
        if let envelope = Self.envelope(ofFrame: frame), envelope.verb == .message, let sender = envelope.sender {
            introduce(SenderTag(sender), to: connection)
        }
        let start = connection.out.writerIndex
        connection.out.writeBuffer(&frame)
        return start
    }
}
