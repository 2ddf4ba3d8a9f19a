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
        let ttl = Forwarding.outgoingTTL(of: envelope)
        guard ttl >= 1 else {
            counters.drop(.floodTTLExpired)
            logger.debug("flood ttl expired", metadata: ["conn": "\(connection.logID)", "flood_id": "\(floodID)"])
            return
        }
        // The budget is per origin node; a peer relay's floods were admitted by the relay of their origin.
        switch context.floods.admit(floodID: floodID, origin: connection.isPeer ? nil : connection.nodeID) {
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
        guard let sender = sender(of: envelope, on: connection) else { return }

        var frame = ByteBufferAllocator().buffer(capacity: bytes.count + 200)
        ForwardedFrames.flood(&frame, envelope, from: ReceivedJSON(tape: reader.tape, bytes: bytes), floodID: floodID, ttl: ttl, sender: sender)
        if envelope.verb == .channel, let channelID = envelope.channelID {
            context.channels.update(channelID: channelID, frame: frame)
        }
        counters.relayed(envelope.verb, bytes: frame.readableBytes)
        let changes = membershipChanges(envelope, bytes, origin: sender.address.id)
        if !changes.isEmpty { broadcastToShards(.membership(changes)) }
        // A JOIN makes the existing client file its sender: it must know the sender's address first.
        let introducing = envelope.verb == .join ? sender : nil
        sendToAll(frame, except: connection.id, introducing: introducing)
    }
}

extension RelayShard {
    /// Who joined or left which channel (`routing.to_clients: channels`): the origin of a JOIN or
    /// LEAVE, and every member a CHANNEL lists.
    func membershipChanges(_ envelope: Envelope, _ bytes: UnsafeRawBufferPointer, origin: GUID) -> [MembershipChange] {
        let tape = reader.tape
        guard let channelToken = tape.member("channel_id", in: envelope.data, of: bytes), tape[channelToken].kind == .string else {
            return []
        }
        let channelID = tape.string(channelToken, of: bytes)
        switch envelope.verb {
        case .join, .leave:
            return [MembershipChange(channelID: channelID, node: origin, joined: envelope.verb == .join)]
        case .channel:
            guard let members = tape.member("members", in: envelope.data, of: bytes), tape[members].kind == .array else { return [] }
            var changes: [MembershipChange] = []
            tape.forEachElement(of: members) { element in
                guard tape[element].kind == .object, let node = tape.member("node_id", in: element, of: bytes),
                    tape[node].kind == .string, let address = NodeAddress(tape.string(node, of: bytes))
                else { return }
                changes.append(MembershipChange(channelID: channelID, node: address.id, joined: true))
            }
            return changes
        default:
            return []
        }
    }

    /// Sends a frame that expects no answer to every bound connection of every shard except
    /// `except`; an existing client first gets `introducing` introduced.
    func sendToAll(_ frame: ByteBuffer, except: UInt64?, introducing: SenderTag?) {
        for shard in shards.indices where shard != index {
            var copy = frame
            let frame = outbox.appendFrame(for: shard, shardCount: shards.count) { $0.writeBuffer(&copy) }
            outbox.append(.broadcast(frame: frame, except: except, introducing: introducing), for: shard, shardCount: shards.count)
        }
        sendToLocal(frame, except: except, introducing: introducing)
    }

    /// `sendToAll` for this shard's connections.
    func sendToLocal(_ frame: ByteBuffer, except: UInt64?, introducing: SenderTag?) {
        for target in connections.values where target.phase == .bound && target.id != except {
            if isOverSoftLimit(target) {
                // PROFILE.md section 10: floods to a connection over its outbound soft limit are dropped.
                counters.drop(.slowConsumer)
                logger.debug("flood to a connection over its outbound soft limit dropped", metadata: ["conn": "\(target.logID)"])
                continue
            }
            if let introducing { introduce(introducing, to: target) }
            writeBytes(to: target, frame)
        }
    }
}
