import NIOCore
import PTPProtocol

extension RelayShard {
    /// JOIN, LEAVE and CHANNEL: once to every neighbour except the one it came from.
    func forwardFlood(from connection: Connection, _ envelope: Envelope, _ bytes: UnsafeRawBufferPointer) {
        guard let floodID = envelope.floodID else {
            counters.drop(.floodNoID)
            logger.debug("flood without an id dropped", metadata: ["conn": "\(connection.logID)", "verb": "\(envelope.verb.name)"])
            return
        }
        let ttl = min(envelope.ttl, context.maxTTL) - 1
        guard ttl >= 1 else {
            counters.drop(.floodTTLExpired)
            logger.debug("flood ttl expired", metadata: ["conn": "\(connection.logID)", "flood_id": "\(floodID)"])
            return
        }
        switch context.floods.admit(floodID: floodID, origin: connection.nodeID) {
        case .accept:
            break
        case .duplicate:
            counters.drop(.floodDuplicate)
            logger.debug("repeated flood dropped", metadata: ["conn": "\(connection.logID)", "flood_id": "\(floodID)"])
            return
        case .overBudget:
            counters.drop(.floodOverBudget)
            logger.debug("flood over budget dropped", metadata: ["conn": "\(connection.logID)", "flood_id": "\(floodID)"])
            return
        }
        guard let sender = connection.tag else { return }

        var frame = ByteBufferAllocator().buffer(capacity: bytes.count + 200)
        let tape = reader.tape
        let needsID = tape.member("msg_id", in: envelope.data, of: bytes).map { tape[$0].kind == .null } ?? true
        FrameWriter.write(&frame, verb: envelope.verb, messageID: floodID, ttl: ttl, flood: true, sender: sender) { out in
            if needsID {
                // The existing client needs `msg_data.msg_id` on JOIN and LEAVE; CHANNEL gets it too.
                out.writeASCII("{\"msg_id\":")
                out.writeQuotedGUID(floodID)
                FrameWriter.copyMembers(&out, tape: tape, bytes: bytes, object: envelope.data, leadingComma: true) {
                    $0.count == 6 && JSONTape.equals("msg_id", $0, 0, 6)
                }
                out.writeInteger(UInt8(ascii: "}"))
            } else {
                FrameWriter.copyValue(&out, tape: tape, bytes: bytes, token: envelope.data)
            }
        }
        if envelope.verb == .channel, let channelID = envelope.channelID {
            context.channels.update(channelID: channelID, frame: frame)
        }
        counters.relayed(envelope.verb, bytes: frame.readableBytes)
        // A JOIN makes the existing client file its sender: it must know the sender's address first.
        let introducing = envelope.verb == .join ? sender : nil
        for shard in shards.indices {
            if shard == index {
                for target in connections.values where target.phase == .bound && target.id != connection.id {
                    if let introducing { introduce(introducing, to: target) }
                    writeBytes(to: target, frame)
                }
            } else {
                let batchIndex = batch(for: shard)
                var copy = frame
                let range = outbox[batchIndex].appendFrame { $0.writeBuffer(&copy) }
                outbox[batchIndex].commands.append(.broadcast(frame: range, except: nil, introducing: introducing))
            }
        }
    }
}
