import Foundation
import XCTest

/// An emulation of the existing public ptpchat client (C#, MUzzell/ptpchat at 2624216), written from
/// CLIENT-FRAMES.md: the frames it sends, byte for byte, and what it does with what it receives.
///
/// Modelled: its HELLO right after connecting and a keepalive every 5 s from 5 s on; the checks of
/// its `BaseVerbHandler` (non-zero head `msg_id`, `ttl` at least 1, `sender_id` `name@GUID` and not
/// its own id, no valid `target_id`, `ttl` counted down for frames not addressed to it); HELLO and
/// ROUTING only with `flood` false and `ttl` 1; its node table (an address only from a HELLO under
/// that node's id; ROUTING adds nodes without one); its one channel, "Test Channel", whose member
/// list starts as itself and grows by JOINs for that channel (with `msg_data.msg_id`), each new
/// member answered with a CONNECT; chat sent as its HELLO-labelled frame, one copy per member in
/// list order, members not in the node table skipped, and a throw at the first member without an
/// address; no ACK ever; verbs it does not know dropped. A frame it could not read (over 8 KiB,
/// not ASCII, not JSON, a CONNECT with `name@GUID` ids) or would drop for a broken rule fails the
/// test: the relay must never send one.
///
/// Not modelled: its UI, its UDP/TCP listener for direct peers, timestamps in its local offset
/// (the frames carry a fixed one), the 120 s offline marking (nothing here depends on it), and
/// anything it does with a received MESSAGE beyond accepting it (its handler is commented out).
final class StockClient {
    /// A chat the client accepted: the MESSAGE's id, its sender's id and its `message` as sent.
    struct Chat: Equatable {
        var id: String
        var sender: String
        var text: String
    }

    enum Failure: Error, CustomStringConvertible {
        /// `Node.IpEndPoint` throws `InvalidOperationException`: the real client stops sending there.
        case memberWithoutAddress(String)

        var description: String {
            switch self {
            case .memberWithoutAddress(let id): "the existing client throws: channel member \(id) has no address"
            }
        }
    }

    static let builtInChannel = "82ae2035-55b8-4223-af24-c538731d6119"
    static let keepaliveInterval: Double = 5
    static let maxFrame = 8192

    let id: String
    let label: String
    let connection: TestClient
    /// Node table: id to whether it has an address (the relay's, as every node is reached through it).
    private(set) var nodes: [String: Bool] = [:]
    /// The built-in channel's members in list order, itself first.
    private(set) var members: [String]
    private(set) var chats: [Chat] = []
    /// Frames of verbs it does not know (NACK and others): dropped with a warning.
    private(set) var unknownVerbs: [String] = []
    /// CONNECTs it sent (one per new channel member).
    private(set) var connectsSent = 0
    /// Every frame it accepted, by verb.
    private(set) var accepted: [String: Int] = [:]
    private var nextKeepalive: Date

    init(port: UInt16, id: String, label: String) throws {
        self.id = id.lowercased()
        self.label = label
        self.members = [self.id]
        connection = try TestClient(port: port, label: label)
        nextKeepalive = Date(timeIntervalSinceNow: Self.keepaliveInterval)
        connection.send(text: LegacyFrames.hello(id: self.id))
    }

    /// True when `node` is a channel member with an address: chat reaches it.
    func canReach(_ node: String) -> Bool {
        members.contains(node.lowercased()) && nodes[node.lowercased()] == true
    }

    var isBound: Bool { (accepted["ROUTING"] ?? 0) > 0 }

    // MARK: Sending

    /// Sends chat as the client's channel tab does: one copy of the same frame per member.
    @discardableResult
    func chat(_ text: String) throws -> String {
        let messageID = Ids.make()
        let frame = LegacyFrames.chat(from: id, to: members, messageID: messageID, text: text)
        for member in members {
            guard let hasAddress = nodes[member] else { continue }
            guard hasAddress else { throw Failure.memberWithoutAddress(member) }
            connection.send(text: frame)
        }
        return messageID
    }

    // MARK: Receiving

    /// Handles frames until `condition` holds (true) or `timeout` passes (false).
    @discardableResult
    func pump(timeout: Double, file: StaticString = #filePath, line: UInt = #line, until condition: (StockClient) -> Bool)
        -> Bool
    {
        let deadline = Deadline(timeout)
        while true {
            if condition(self) { return true }
            if deadline.hasPassed || connection.isClosed { return condition(self) }
            step(maxWait: min(deadline.remaining, 0.05), file: file, line: line)
        }
    }

    /// Handles every frame that comes within `seconds`.
    func pump(for seconds: Double, file: StaticString = #filePath, line: UInt = #line) {
        _ = pump(timeout: seconds, file: file, line: line) { _ in false }
    }

    private func step(maxWait: Double, file: StaticString, line: UInt) {
        if Date() >= nextKeepalive {
            connection.sendKeepalive()
            nextKeepalive = Date(timeIntervalSinceNow: Self.keepaliveInterval)
        }
        guard let frame = connection.receiveFrame(timeout: maxWait, file: file, line: line) else { return }
        handle(frame, file: file, line: line)
    }

    private func reject(_ why: String, _ frame: ReceivedFrame, file: StaticString, line: UInt) {
        XCTFail("\(label): the existing client would drop this frame (\(why)): \(TestClient.text(frame.bytes))", file: file, line: line)
    }

    private func handle(_ frame: ReceivedFrame, file: StaticString, line: UInt) {
        if frame.bytes.count > Self.maxFrame {
            XCTFail("\(label): a frame of \(frame.bytes.count) bytes desynchronises the existing client's stream", file: file, line: line)
            return
        }
        let json = frame.json
        guard let verb = json["msg_type"] as? String else { return reject("no msg_type", frame, file: file, line: line) }
        guard ["HELLO", "ACK", "JOIN", "LEAVE", "CHANNEL", "MESSAGE", "ROUTING", "CONNECT"].contains(verb) else {
            unknownVerbs.append(verb)
            return
        }
        // BaseVerbHandler.HandleMessage.
        guard Ids.isNonZeroGUID(json["msg_id"] as? String) else { return reject("head msg_id missing or zero", frame, file: file, line: line) }
        guard var ttl = json["ttl"] as? Int, ttl > 0 else { return reject("ttl below 1", frame, file: file, line: line) }
        guard let sender = json["sender_id"] as? String, Ids.isAddress(sender), let senderID = sender.split(separator: "@").last.map({ String($0).lowercased() })
        else { return reject("sender_id is not name@GUID", frame, file: file, line: line) }
        guard senderID != id else { return reject("sender_id is its own id", frame, file: file, line: line) }
        if let target = json["target_id"] as? String, Ids.isAddress(target) || Ids.isGUID(target) {
            return reject("a valid target_id", frame, file: file, line: line)
        }
        let flood = json["flood"] as? Bool ?? false
        if !(ttl == 1 || flood) {
            ttl -= 1
            if ttl == 0 { return reject("MessageTtlExpired", frame, file: file, line: line) }
        }
        let data = json.data
        switch verb {
        case "HELLO":
            guard !flood, json["ttl"] as? Int == 1 else { return reject("HELLO with flood or ttl other than 1", frame, file: file, line: line) }
            nodes[senderID] = true
        case "ROUTING":
            guard !flood, json["ttl"] as? Int == 1 else { return reject("ROUTING with flood or ttl other than 1", frame, file: file, line: line) }
            for entry in data["nodes"] as? [[String: Any]] ?? [] {
                guard let node = entry["node_id"] as? String, Ids.isAddress(node),
                    let nodeID = node.split(separator: "@").last.map({ String($0).lowercased() }), nodeID != id
                else { continue }
                if nodes[nodeID] == nil { nodes[nodeID] = false }
            }
        case "JOIN":
            guard Ids.isNonZeroGUID(data["msg_id"] as? String) else { return reject("JOIN without msg_data.msg_id", frame, file: file, line: line) }
            guard let channelID = data["channel_id"] as? String, Ids.isNonZeroGUID(channelID),
                let channel = data["channel"] as? String, !channel.trimmingCharacters(in: .whitespaces).isEmpty
            else { return reject("JOIN without channel or channel_id", frame, file: file, line: line) }
            guard channelID.lowercased() == Self.builtInChannel else { break }
            if nodes[senderID] == nil { nodes[senderID] = false }
            if !members.contains(senderID) {
                members.append(senderID)
                connection.send(text: Self.connect(from: id, to: senderID))
                connectsSent += 1
            }
        case "CONNECT":
            for key in ["src_node_id", "dst_node_id"] {
                guard let value = data[key] as? String, Ids.isGUID(value) else {
                    XCTFail("\(label): the existing client cannot parse a CONNECT whose \(key) is not a bare GUID: \(TestClient.text(frame.bytes))", file: file, line: line)
                    return
                }
            }
        case "MESSAGE":
            guard let timestamp = data["timestamp"] as? String, Self.isISO8601(timestamp) else {
                return reject("MESSAGE timestamp is not ISO-8601", frame, file: file, line: line)
            }
            chats.append(Chat(id: (data["msg_id"] as? String ?? "").lowercased(), sender: senderID, text: data["message"] as? String ?? ""))
        default:
            break
        }
        accepted[verb, default: 0] += 1
    }

    /// CONNECT step 1 as the client sends it to the relay for a new channel member.
    static func connect(from source: String, to destination: String) -> String {
        #"{"msg_type":"CONNECT","msg_data":{"dst":null,"dst_node_id":"\#(destination)","src":":23456","src_node_id":"\#(source)"},"flood":false,"msg_id":"00000000-0000-0000-0000-000000000000","ttl":32,"sender_id":null,"target_id":null}"#
    }

    private static func isISO8601(_ text: String) -> Bool {
        let formatter = ISO8601DateFormatter()
        if formatter.date(from: text) != nil { return true }
        formatter.formatOptions.insert(.withFractionalSeconds)
        return formatter.date(from: text) != nil
    }
}

extension RelayTestCase {
    /// An emulated existing client connected to `relay`, bound (its first ROUTING handled).
    func startStockClient(
        _ relay: RelayProcess, id: String = Ids.make(), label: String, file: StaticString = #filePath, line: UInt = #line
    ) throws -> StockClient {
        let client = try StockClient(port: relay.port, id: id, label: label)
        track(client.connection)
        XCTAssertTrue(
            client.pump(timeout: expectWithin, file: file, line: line) { $0.isBound },
            "\(label): not bound (\(client.connection.closeReason ?? "connection open"))", file: file, line: line)
        return client
    }
}
