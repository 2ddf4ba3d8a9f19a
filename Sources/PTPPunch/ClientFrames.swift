import Foundation
import NIOCore
import PTPProtocol

/// The frames this client sends, written with PTPProtocol's `FrameWriter`: exact head, compact
/// ASCII-only JSON, 4-byte big-endian length.
public enum ClientFrames {
    public static let version = "ptpchat-cli \(ProjectVersion.number)"

    /// `HELLO {node_id, version, attributes: {node_type: client}}`, `ttl` 1, `flood` false.
    public static func hello(from identity: SenderTag) -> ByteBuffer {
        var out = ByteBuffer()
        FrameWriter.write(&out, verb: .hello, messageID: .random(), ttl: 1, flood: false, sender: identity) { out in
            out.writeASCII("{\"node_id\":")
            out.writeQuotedGUID(identity.address.id)
            out.writeASCII(",\"version\":")
            out.writeJSONString(version)
            out.writeASCII(",\"attributes\":{\"node_type\":\"client\"}}")
        }
        return out
    }

    /// `ACK {node_id, msg_id}`, hop by hop (`ttl` 1).
    public static func ack(_ acknowledged: GUID, from identity: SenderTag) -> ByteBuffer {
        var out = ByteBuffer()
        RelayFrames.ack(&out, messageID: .random(), acknowledging: acknowledged, relay: identity)
        return out
    }

    /// `GETKEY {msg_id, node_id, channel, channel_id}` with no `recipient_id`: addressed to the relay
    /// itself, which holds no channel keys and answers NACK `not_a_member` at once (PROFILE.md
    /// section 5), after whatever it wrote to this node before reading it.
    public static func getKeyFromRelay(id messageID: GUID, from identity: SenderTag, channel: String, channelID: GUID) -> ByteBuffer {
        var out = ByteBuffer()
        FrameWriter.write(&out, verb: .getKey, messageID: messageID, ttl: 32, flood: false, sender: identity) { out in
            RelayFrames.writeChannelRequest(
                &out, messageID: messageID, node: identity.address.id, channel: channel, channelID: channelID.description)
        }
        return out
    }

    /// A chat `MESSAGE` of `text` (base64 in `message`) on channel `cli`; head `msg_id` is `messageID`.
    /// `plain`: the text as it is, on the existing client's built-in channel, as that client sends
    /// and shows chat (CLIENT-FRAMES.md).
    public static func message(
        _ text: String, id messageID: GUID, to recipients: [GUID], channelID: GUID, from identity: SenderTag,
        plain: Bool = false, at date: Date = Date()
    ) -> ByteBuffer {
        var out = ByteBuffer()
        FrameWriter.write(&out, verb: .message, messageID: messageID, ttl: 32, flood: false, sender: identity) { out in
            out.writeASCII("{\"msg_id\":")
            out.writeQuotedGUID(messageID)
            out.writeASCII(",\"node_id\":")
            out.writeQuotedGUID(identity.address.id)
            out.writeASCII(",\"recipient\":")
            FrameWriter.writeRecipients(&out, recipients)
            out.writeASCII(",\"timestamp\":")
            out.writeJSONString(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
            if plain {
                out.writeASCII(",\"channel\":")
                out.writeJSONString(LegacyClientChannel.name)
                out.writeASCII(",\"channel_id\":")
                out.writeJSONString(LegacyClientChannel.id)
            } else {
                out.writeASCII(",\"channel\":\"cli\",\"channel_id\":")
                out.writeQuotedGUID(channelID)
            }
            out.writeASCII(",\"message\":")
            out.writeJSONString(plain ? text : Data(text.utf8).base64EncodedString())
            out.writeASCII(",\"attachment\":[]}")
        }
        return out
    }

    /// `JOIN {msg_id, node_id, channel, channel_id}`, flooded: announces this node as a member (the
    /// existing client sends chat only to the members of its channel).
    public static func join(channelID: String, channel: String, from identity: SenderTag) -> ByteBuffer {
        var out = ByteBuffer()
        RelayFrames.join(&out, messageID: .random(), node: identity, channel: channel, channelID: channelID, ttl: 32, flood: true)
        return out
    }

    /// A CONNECT (PROFILE.md section 8) from this node; see `ConnectFrames`.
    public static func connect(
        id messageID: GUID = .random(), from identity: SenderTag, source: GUID, destination: GUID,
        src: ConnectAddress?, dst: ConnectAddress?, extras: ConnectFrames.Extras = .init()
    ) -> ByteBuffer {
        var out = ByteBuffer()
        ConnectFrames.connect(
            &out, messageID: messageID, sender: identity, source: source, destination: destination, src: src, dst: dst,
            extras: extras)
        return out
    }

    /// A keepalive: a frame of length 0.
    public static var keepalive: ByteBuffer {
        var out = ByteBuffer()
        out.writeKeepalive()
        return out
    }
}
