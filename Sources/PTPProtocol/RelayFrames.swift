import NIOCore

/// The `msg_data` bodies of the frames the relay writes on its own behalf.
public enum RelayFrames {
    public static let version = "ptpchat-relay \(ProjectVersion.number)"

    /// `HELLO` with `node_type: server`.
    public static func hello(_ out: inout ByteBuffer, messageID: GUID, relay: SenderTag) {
        hello(&out, messageID: messageID, node: relay, nodeType: "server")
    }

    /// A HELLO under another node's id for the existing client (PROFILE.md section 4a), which gives
    /// a node an address only from a HELLO whose `sender_id` is that node: `node_type: client`.
    public static func introduction(_ out: inout ByteBuffer, messageID: GUID, node: SenderTag) {
        hello(&out, messageID: messageID, node: node, nodeType: "client")
    }

    private static func hello(_ out: inout ByteBuffer, messageID: GUID, node: SenderTag, nodeType: StaticString) {
        FrameWriter.write(&out, verb: .hello, messageID: messageID, ttl: 1, flood: false, sender: node) { out in
            out.writeASCII("{\"node_id\":")
            out.writeQuotedGUID(node.address.id)
            out.writeASCII(",\"version\":")
            out.writeJSONString(version)
            out.writeASCII(",\"attributes\":{\"node_type\":\"")
            out.writeASCII(nodeType)
            out.writeASCII("\"}}")
        }
    }

    /// A JOIN under another node's id for the existing client's built-in channel, sent to that
    /// client only (`ttl` 1, `flood` false): it never announces its own membership.
    public static func legacyChannelJoin(_ out: inout ByteBuffer, messageID: GUID, node: SenderTag) {
        join(&out, messageID: messageID, node: node, channel: LegacyClientChannel.name, channelID: LegacyClientChannel.id, ttl: 1, flood: false)
    }

    /// `JOIN {msg_id, node_id, channel, channel_id}` for `node`; `msg_data.msg_id` is the head's
    /// (the existing client needs it).
    public static func join(
        _ out: inout ByteBuffer, messageID: GUID, node: SenderTag, channel: String, channelID: String, ttl: Int, flood: Bool
    ) {
        FrameWriter.write(&out, verb: .join, messageID: messageID, ttl: ttl, flood: flood, sender: node) { out in
            writeChannelRequest(&out, messageID: messageID, node: node.address.id, channel: channel, channelID: channelID)
        }
    }

    /// `{msg_id, node_id, channel, channel_id}`: the `msg_data` of JOIN and of GETKEY.
    public static func writeChannelRequest(_ out: inout ByteBuffer, messageID: GUID, node: GUID, channel: String, channelID: String) {
        out.writeASCII("{\"msg_id\":")
        out.writeQuotedGUID(messageID)
        out.writeASCII(",\"node_id\":")
        out.writeQuotedGUID(node)
        out.writeASCII(",\"channel\":")
        out.writeJSONString(channel)
        out.writeASCII(",\"channel_id\":")
        out.writeJSONString(channelID)
        out.writeInteger(UInt8(ascii: "}"))
    }

    /// `ACK {node_id: relay, msg_id}`, hop by hop (`ttl` 1).
    @inline(__always)
    public static func ack(_ out: inout ByteBuffer, messageID: GUID, acknowledging: GUID, relay: SenderTag) {
        FrameWriter.write(&out, verb: .ack, messageID: messageID, ttl: 1, flood: false, sender: relay) { out in
            out.writeASCII("{\"node_id\":")
            out.writeQuotedGUID(relay.address.id)
            out.writeASCII(",\"msg_id\":")
            out.writeQuotedGUID(acknowledging)
            out.writeInteger(UInt8(ascii: "}"))
        }
    }

    /// `NACK {node_id: relay, msg_id, reason, stored[, recipient]}`.
    public static func nack(
        _ out: inout ByteBuffer, messageID: GUID, refusing: GUID, reason: NackReason, stored: Bool,
        recipients: Recipients = Recipients(), relay: SenderTag
    ) {
        nack(&out, messageID: messageID, refusing: refusing, reason: reason.rawValue, stored: stored, recipients: recipients, by: relay)
    }

    /// A NACK in the name of the node that refused (`sender_id` and `node_id` name it, PROFILE.md
    /// section 5): the relay's own refusals name the relay, a refusal passed on names its node.
    public static func nack(
        _ out: inout ByteBuffer, messageID: GUID, refusing: GUID, reason: String, stored: Bool,
        recipients: Recipients = Recipients(), by node: SenderTag
    ) {
        FrameWriter.write(&out, verb: .nack, messageID: messageID, ttl: 32, flood: false, sender: node) { out in
            out.writeASCII("{\"node_id\":")
            out.writeQuotedGUID(node.address.id)
            out.writeASCII(",\"msg_id\":")
            out.writeQuotedGUID(refusing)
            out.writeASCII(",\"reason\":")
            out.writeJSONString(reason)
            out.writeASCII(stored ? ",\"stored\":true" : ",\"stored\":false")
            if !recipients.isEmpty {
                out.writeASCII(",\"recipient\":")
                FrameWriter.writeRecipients(&out, recipients)
            }
            out.writeInteger(UInt8(ascii: "}"))
        }
    }

    /// `ROUTING` frames for clients (`node_id` and `ttl` per entry) of at most `maxFrameBytes`
    /// each (PROFILE.md: 8 KiB), always at least one.
    public static func routing(
        _ out: inout ByteBuffer, entries: [(address: SenderTag, ttl: Int)], relay: SenderTag,
        maxFrameBytes: Int = 8192, nextID: () -> GUID
    ) {
        chunkedRouting(&out, count: entries.count, relay: relay, maxFrameBytes: maxFrameBytes, nextID: nextID) { out, index in
            let entry = entries[index]
            out.writeASCII("{\"node_id\":\"")
            out.writeBytes(entry.address.rendered)
            out.writeASCII("\",\"ttl\":")
            out.writeDecimal(entry.ttl)
            out.writeInteger(UInt8(ascii: "}"))
        }
    }

    /// ROUTING frames holding `count` entries, each written by `writeEntry` (an object): as many
    /// per frame as fit in `maxFrameBytes` with the 4-byte length prefix (an entry is written,
    /// then taken back if it does not fit), always at least one frame (`nodes: []` for none).
    static func chunkedRouting(
        _ out: inout ByteBuffer, count: Int, relay: SenderTag, maxFrameBytes: Int, nextID: () -> GUID,
        writeEntry: (inout ByteBuffer, Int) -> Void
    ) {
        var index = 0
        repeat {
            let lengthIndex = FrameWriter.begin(&out, verb: .routing, messageID: nextID(), ttl: 1, flood: false, sender: relay)
            out.writeASCII("{\"node_id\":")
            out.writeQuotedGUID(relay.address.id)
            out.writeASCII(",\"nodes\":[")
            var first = true
            while index < count {
                let entryStart = out.writerIndex
                if !first { out.writeInteger(UInt8(ascii: ",")) }
                writeEntry(&out, index)
                // The frame so far plus the closing `]}` and `}`.
                if !first && out.writerIndex - lengthIndex + 3 > maxFrameBytes {
                    out.moveWriterIndex(to: entryStart)
                    break
                }
                first = false
                index += 1
            }
            out.writeASCII("]}")
            FrameWriter.end(&out, lengthIndex: lengthIndex)
        } while index < count
    }
}

/// The one channel of the existing public client, built in (CLIENT-FRAMES.md).
public enum LegacyClientChannel {
    public static let id = "82ae2035-55b8-4223-af24-c538731d6119"
    public static let name = "Test Channel"
}

/// The `reason` of a NACK.
public enum NackReason: String, Sendable, CaseIterable {
    case unreachable
    case ttlExpired = "ttl_expired"
    case queueFull = "queue_full"
    case rateLimited = "rate_limited"
    case invalid
    case spoofedSender = "spoofed_sender"
    case idInUse = "id_in_use"
    case noCertificate = "no_certificate"
    case notAMember = "not_a_member"
    case slowConsumer = "slow_consumer"
}
