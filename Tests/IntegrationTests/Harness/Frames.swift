import Foundation

/// A node the test speaks for: its connection, id and name.
struct Node {
    let client: TestClient
    let id: String
    /// The name it sent, nil when it sent a bare id.
    let name: String?

    /// `name@GUID` as the relay should write it (`node@GUID` for a missing or invalid name).
    var address: String {
        guard let name, Ids.isAddress("\(name)@\(id)") else { return "node@\(id)" }
        return "\(name)@\(id)"
    }

    var label: String { client.label }
}

/// Frames in the shapes of SPEC.md and PROFILE.md section 2 (the head as a SPEC client with the
/// compatibility keys writes it).
enum Frames {
    static func head(_ verb: String, id: String = Ids.make(), ttl: Int?, flood: Bool?, sender: String?, data: [String: Any]) -> [String: Any] {
        var frame: [String: Any] = ["msg_type": verb, "msg_id": id, "target_id": NSNull(), "msg_data": data]
        if let ttl { frame["ttl"] = ttl }
        if let flood { frame["flood"] = flood }
        if let sender { frame["sender_id"] = sender }
        return frame
    }

    /// SPEC.md HELLO: `msg_data.node_id` (bare id), head `sender_id` `name@id` when a name is given.
    static func hello(id: String, name: String?, messageID: String = Ids.make(), nodeType: String = "client") -> [String: Any] {
        head(
            "HELLO", id: messageID, ttl: 1, flood: false, sender: name.map { "\($0)@\(id)" },
            data: ["node_id": id, "version": "integration-tests 1", "attributes": ["node_type": nodeType]])
    }

    static func message(
        from node: Node, to recipients: [String], id: String = Ids.make(), ttl: Int? = 32, text: String = "hello",
        channel: String = "integration", channelID: String = "82ae2035-55b8-4223-af24-c538731d6119"
    ) -> [String: Any] {
        head(
            "MESSAGE", id: id, ttl: ttl, flood: false, sender: node.address,
            data: [
                "msg_id": id,
                "node_id": node.id,
                "recipient": recipients.map { ["node_id": $0] },
                "timestamp": "2016-05-04T13:23:29.123456+01:00",
                "channel": channel,
                "channel_id": channelID,
                "message": Data(text.utf8).base64EncodedString(),
                "attachment": [] as [Any],
            ])
    }

    static func ack(from node: Node, acknowledging messageID: String) -> [String: Any] {
        head("ACK", ttl: 1, flood: false, sender: node.address, data: ["node_id": node.id, "msg_id": messageID])
    }

    /// JOIN or LEAVE (flooded).
    static func membership(
        _ verb: String, from node: Node, id: String? = Ids.make(), headID: String? = nil, channelID: String = Ids.make()
    ) -> [String: Any] {
        var data: [String: Any] = ["node_id": node.id, "channel": "integration", "channel_id": channelID]
        if let id { data["msg_id"] = id }
        var frame = head(verb, ttl: 32, flood: true, sender: node.address, data: data)
        if let headID { frame["msg_id"] = headID } else { frame.removeValue(forKey: "msg_id") }
        return frame
    }

    static func getCertificate(from node: Node, id: String = Ids.make(), recipientID: String? = nil) -> [String: Any] {
        var data: [String: Any] = ["msg_id": id, "node_id": node.id]
        if let recipientID { data["recipient_id"] = recipientID }
        return head("GETCERTIFICATE", id: id, ttl: 32, flood: false, sender: node.address, data: data)
    }

    static func certificate(from node: Node, id: String, recipientID: String) -> [String: Any] {
        head(
            "CERTIFICATE", id: id, ttl: 32, flood: false, sender: node.address,
            data: ["msg_id": id, "node_id": node.id, "recipient_id": recipientID, "certificate": "TUlJQg=="])
    }

    static func getKey(from node: Node, id: String = Ids.make(), recipientID: String? = nil) -> [String: Any] {
        var data: [String: Any] = ["msg_id": id, "node_id": node.id, "channel": "secret", "channel_id": Ids.make()]
        if let recipientID { data["recipient_id"] = recipientID }
        return head("GETKEY", id: id, ttl: 32, flood: false, sender: node.address, data: data)
    }
}

/// The existing C# client's frames, byte for byte as CLIENT-FRAMES.md shows them, with the ids
/// replaced.
enum LegacyFrames {
    static func hello(id: String, messageID: String = Ids.make()) -> String {
        #"{"msg_type":"HELLO","msg_data":{"version":"ptpchat-client; 0.0","attributes":{"node_type":"string"}},"flood":false,"msg_id":"\#(messageID)","ttl":1,"sender_id":"LocalNode@\#(id)","target_id":null}"#
    }

    /// The chat frame labelled HELLO, `ttl` 0, zero head `msg_id`, the sender among the recipients.
    static func chat(from id: String, to recipients: [String], messageID: String, text: String = "hi from client") -> String {
        let list = recipients.map { #"{"node_id":"\#($0)"}"# }.joined(separator: ",")
        return #"{"msg_data":{"attachment":null,"channel":"Test Channel","channel_id":"82ae2035-55b8-4223-af24-c538731d6119","message":"\#(text)","msg_id":"\#(messageID)","recipient":[\#(list)],"timestamp":"2016-05-04T13:23:29.123456+01:00"},"flood":false,"msg_type":"HELLO","msg_id":"00000000-0000-0000-0000-000000000000","ttl":0,"sender_id":"LocalNode@\#(id)","target_id":null}"#
    }

    /// ACK without `node_id`, `sender_id` null.
    static func ack(_ messageID: String) -> String {
        #"{"msg_data":{"msg_id":"\#(messageID)"},"msg_type":"ACK","flood":false,"msg_id":"00000000-0000-0000-0000-000000000000","ttl":1,"sender_id":null,"target_id":null}"#
    }

    static func channel(from id: String, channelID: String, messageID: String, members: [String]) -> String {
        let list = members.map { #"{"node_id":"\#($0)"}"# }.joined(separator: ",")
        return #"{"msg_type":"CHANNEL","msg_data":{"channel":"Test Channel","channel_id":"\#(channelID)","closed":false,"members":[\#(list)],"msg_id":"\#(messageID)"},"flood":true,"msg_id":"00000000-0000-0000-0000-000000000000","ttl":32,"sender_id":"LocalNode@\#(id)","target_id":null}"#
    }

    /// JOIN: the flood id in `msg_data.msg_id`, another id in the head.
    static func join(from id: String, channelID: String, messageID: String, headID: String = Ids.make()) -> String {
        #"{"msg_data":{"channel":"Test Channel","channel_id":"\#(channelID)","msg_id":"\#(messageID)"},"flood":true,"msg_type":"JOIN","msg_id":"\#(headID)","ttl":32,"sender_id":"LocalNode@\#(id)","target_id":null}"#
    }
}
