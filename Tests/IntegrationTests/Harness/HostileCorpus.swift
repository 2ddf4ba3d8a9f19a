import Foundation

/// What the hostile-input runner needs of a connection to the relay. `TestClient` (plaintext) has
/// it; a TLS client conforms with a few lines and the same corpus runs over TLS.
protocol FrameConnection: AnyObject {
    var isClosed: Bool { get }
    @discardableResult func sendRaw(_ bytes: [UInt8]) -> Bool
    func receive(timeout: Double, file: StaticString, line: UInt, where predicate: ([String: Any]) -> Bool) -> [String: Any]?
    func expectClosed(timeout: Double) -> Bool
    func close()
}

extension TestClient: FrameConnection {}

/// The node a hostile connection speaks for once it is bound.
struct HostileIdentity {
    let id: String
    var address: String { "hostile@\(id)" }
}

/// One hostile frame and what the relay must do with it (PROFILE.md sections 1, 5 and 10, and
/// RelayShard+Dispatch: a frame that is no message of its verb but names its id gets NACK
/// `invalid` and counts `drops.invalid`; one that names no id is dropped and counts
/// `drops.malformed`; before HELLO either closes the connection and counts
/// `drops.handshake_violation`; a length over `limits.max_frame_bytes` closes it and counts
/// `drops.frame_too_large`).
struct HostileFrame {
    enum Outcome: Equatable {
        /// No message id can be read: dropped without answer, the connection stays open.
        case malformed
        /// Refused with NACK `invalid` naming this id; the connection stays open.
        case invalid(id: String)
        /// The length header is over the cap: the connection is closed.
        case tooLarge
    }

    let label: String
    /// The verb the relay reads in it, nil when none (a NACK before HELLO answers only a HELLO).
    var verb: String? = nil
    /// The payload (the runner adds the 4-byte length), built for the node that sends it.
    let payload: (HostileIdentity) -> [UInt8]
    let outcome: (HostileIdentity) -> Outcome
}

/// The hostile corpus: frames generated systematically from a table of verbs and fields (every
/// field of every verb of SPEC.md with values of the wrong type), plus hand-made shapes:
/// truncated JSON, nesting 10,000 deep, huge numbers, invalid UTF-8, NUL bytes, 1 MiB strings,
/// duplicate keys.
enum HostileCorpus {
    /// A node id no client ever binds: a hostile frame that were wrongly accepted is NACKed
    /// `unreachable`, not delivered to a good client.
    static let ghost = "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d"
    static let channelID = "82ae2035-55b8-4223-af24-c538731d6119"

    /// The JSON kinds a field may require.
    enum Kind {
        case string, nodeID, guid, array, object, integer, boolean, verb
        /// Values that are never acceptable for this kind (JSON text). `null` is left out: the
        /// profile reads a null member as an absent one, which is fine for optional fields.
        var wrongValues: [String] {
            switch self {
            case .string: ["1", "true", "[]", "{}", "1e400"]
            case .nodeID: ["1", "false", "[]", "{}", "\"not-a-node-id\"", "\"name@\(Ids.zero.dropLast())\""]
            case .guid: ["1", "true", "[]", "{}", "\"not-a-guid\""]
            case .array: ["\"x\"", "1", "{}", "true"]
            case .object: ["\"x\"", "1", "[]", "false"]
            case .integer: ["\"3\"", "true", "[]", "{}", "1.5", "1e400", "123456789012345678901234567890", "-99999999999999999999"]
            case .boolean: ["1", "\"true\"", "[]", "{}"]
            case .verb: ["1", "\"NOPE\"", "\"MESSAGES\"", "\"\"", "[]"]
            }
        }
    }

    /// A field of a verb: where it sits (head member or `msg_data` path) and its kind.
    struct Field {
        let path: [String]
        let kind: Kind
        /// Extra wrong values for this field alone (JSON text).
        var extraWrong: [String] = []
        /// The wrong values when the kind's do not fit (a field that takes more than one kind).
        var onlyWrong: [String]? = nil

        var wrongValues: [String] { (onlyWrong ?? kind.wrongValues) + extraWrong }
    }

    /// The head fields every verb has (PROFILE.md section 2).
    static let headFields: [Field] = [
        // The head `msg_id` is not among them: the profile reads a head id that is no GUID as no id
        // (the existing client writes the zero GUID there), so a wrong one is no error.
        Field(path: ["msg_type"], kind: .verb),
        Field(path: ["ttl"], kind: .integer),
        Field(path: ["flood"], kind: .boolean),
        Field(path: ["sender_id"], kind: .nodeID),
        Field(path: ["target_id"], kind: .nodeID),
        Field(path: ["msg_data"], kind: .object),
        Field(path: ["msg_data", "node_id"], kind: .nodeID),
        Field(path: ["msg_data", "msg_id"], kind: .guid),
    ]

    /// One valid frame of each verb (from `id`, sent to the ghost) and the fields its verb reads.
    static func verbTable(_ node: HostileIdentity, messageID: String) -> [(verb: String, data: [String: Any], fields: [Field])] {
        let guidish = ["node_id": ghost]
        return [
            ("HELLO", ["version": "hostile 1", "attributes": ["node_type": "client"]],
             [Field(path: ["msg_data", "version"], kind: .string), Field(path: ["msg_data", "attributes"], kind: .object),
              Field(path: ["msg_data", "attributes", "node_type"], kind: .string)]),
            ("ACK", [:], []),
            ("NACK", ["reason": "unreachable"], [Field(path: ["msg_data", "reason"], kind: .string)]),
            ("JOIN", ["channel": "hostile", "channel_id": channelID],
             [Field(path: ["msg_data", "channel"], kind: .string), Field(path: ["msg_data", "channel_id"], kind: .string)]),
            ("LEAVE", ["channel": "hostile", "channel_id": channelID],
             [Field(path: ["msg_data", "channel"], kind: .string), Field(path: ["msg_data", "channel_id"], kind: .string)]),
            ("CHANNEL", ["channel": "hostile", "channel_id": channelID, "closed": false, "members": [guidish]],
             [Field(path: ["msg_data", "channel"], kind: .string), Field(path: ["msg_data", "channel_id"], kind: .string),
              Field(path: ["msg_data", "members"], kind: .array, extraWrong: ["[1]", "[{\"node_id\":1}]", "[{}]"]),
              Field(path: ["msg_data", "closed"], kind: .boolean, onlyWrong: ["1", "[]", "{}"])]),
            ("GETCERTIFICATE", ["recipient_id": ghost], [Field(path: ["msg_data", "recipient_id"], kind: .nodeID)]),
            ("CERTIFICATE", ["recipient_id": ghost, "certificate": "TUlJQg=="],
             [Field(path: ["msg_data", "recipient_id"], kind: .nodeID), Field(path: ["msg_data", "certificate"], kind: .string)]),
            ("GETKEY", ["recipient_id": ghost, "channel": "secret", "channel_id": channelID],
             [Field(path: ["msg_data", "recipient_id"], kind: .nodeID), Field(path: ["msg_data", "channel"], kind: .string),
              Field(path: ["msg_data", "channel_id"], kind: .string)]),
            ("KEY", ["recipient_id": ghost, "channel": "secret", "channel_id": channelID, "cipher": "aes", "key": "a2V5"],
             [Field(path: ["msg_data", "recipient_id"], kind: .nodeID), Field(path: ["msg_data", "channel"], kind: .string),
              Field(path: ["msg_data", "channel_id"], kind: .string), Field(path: ["msg_data", "cipher"], kind: .string),
              Field(path: ["msg_data", "key"], kind: .string)]),
            ("MESSAGE", ["recipient": [guidish], "timestamp": "2016-05-04T13:23:29.123456+01:00", "channel": "hostile",
                         "channel_id": channelID, "message": "aG9zdGlsZQ==", "attachment": [] as [Any]],
             [Field(path: ["msg_data", "recipient"], kind: .array, extraWrong: ["[]", "[1]", "[{\"node_id\":1}]", "[{\"node_id\":\"x\"}]"]),
              Field(path: ["msg_data", "timestamp"], kind: .string), Field(path: ["msg_data", "channel"], kind: .string),
              Field(path: ["msg_data", "channel_id"], kind: .string), Field(path: ["msg_data", "message"], kind: .string),
              Field(path: ["msg_data", "attachment"], kind: .array, extraWrong: ["[1]", "[{\"attachment\":1,\"attachment_type\":\"t\"}]", "[{}]"])]),
            ("ROUTING", ["nodes": [["node_id": ghost, "ttl": 1]]],
             [Field(path: ["msg_data", "nodes"], kind: .array,
                    extraWrong: ["[1]", "[{\"node_id\":1,\"ttl\":1}]", "[{\"node_id\":\"\(ghost)\"}]", "[{\"node_id\":\"\(ghost)\",\"ttl\":\"x\"}]",
                                 "[{\"node_id\":\"\(ghost)\",\"ttl\":1e400}]"])]),
            ("CONNECT", ["src_node_id": node.id, "dst_node_id": ghost, "src": ":34567"],
             [Field(path: ["msg_data", "src_node_id"], kind: .nodeID), Field(path: ["msg_data", "dst_node_id"], kind: .nodeID),
              Field(path: ["msg_data", "src"], kind: .string), Field(path: ["msg_data", "dst"], kind: .string)]),
        ]
    }

    /// A valid frame of `verb` as a JSON object with `msg_id` in the head and in `msg_data`.
    static func base(_ verb: String, _ data: [String: Any], _ node: HostileIdentity, messageID: String) -> [String: Any] {
        var data = data
        data["node_id"] = node.id
        data["msg_id"] = messageID
        let flood = ["JOIN", "LEAVE", "CHANNEL"].contains(verb)
        return ["msg_type": verb, "msg_id": messageID, "ttl": verb == "HELLO" || verb == "ACK" || verb == "NACK" ? 1 : 32, "flood": flood,
                "sender_id": node.address, "target_id": NSNull(), "msg_data": data]
    }

    /// Compact JSON text of `object` with the member at `path` replaced by the JSON text `value`
    /// (written by hand, so that values JSONSerialization cannot hold, such as 1e400, stay as they are).
    static func text(_ object: [String: Any], replacing path: [String], with value: String) -> String {
        let placeholder = "@@HOSTILE-\(UUID().uuidString)@@"
        var copy = object
        set(&copy, path[...], placeholder)
        let text = String(decoding: JSON.data(copy), as: UTF8.self)
        return text.replacingOccurrences(of: "\"\(placeholder)\"", with: value)
    }

    private static func set(_ object: inout [String: Any], _ path: ArraySlice<String>, _ value: Any) {
        guard let key = path.first else { return }
        if path.count == 1 {
            object[key] = value
        } else {
            var inner = object[key] as? [String: Any] ?? [:]
            set(&inner, path.dropFirst(), value)
            object[key] = inner
        }
    }

    /// Every field of every verb with every wrong value: each names its message id (in the head
    /// and in `msg_data`; when one of the two is the field made wrong, the other names it).
    static func wrongTypes() -> [HostileFrame] {
        let probe = HostileIdentity(id: Ids.zero)
        var frames: [HostileFrame] = []
        for (index, row) in verbTable(probe, messageID: Ids.zero).enumerated() {
            for field in headFields + row.fields {
                for value in field.wrongValues {
                    let verb = row.verb
                    // Decided once per frame so that payload and outcome agree.
                    let messageID = Ids.make()
                    frames.append(HostileFrame(
                        label: "\(verb) \(field.path.joined(separator: ".")) = \(value)",
                        verb: field.path == ["msg_type"] ? nil : verb,
                        payload: { node in
                            let row = verbTable(node, messageID: messageID)[index]
                            return Array(text(base(verb, row.data, node, messageID: messageID), replacing: field.path, with: value).utf8)
                        },
                        outcome: { _ in .invalid(id: messageID) }))
                }
            }
        }
        return frames
    }

    /// Hand-made shapes: what a parser sees from a broken or malicious client.
    static func shapes(maxFrameBytes: Int) -> [HostileFrame] {
        var frames: [HostileFrame] = []
        func raw(_ label: String, _ outcome: HostileFrame.Outcome, _ bytes: @escaping (HostileIdentity) -> [UInt8]) {
            frames.append(HostileFrame(label: label, payload: bytes, outcome: { _ in outcome }))
        }
        func message(_ node: HostileIdentity, id: String) -> [String: Any] {
            base("MESSAGE", verbTable(node, messageID: id)[10].data, node, messageID: id)
        }
        func invalid(_ label: String, _ make: @escaping (HostileIdentity, String) -> String) {
            let id = Ids.make()
            frames.append(HostileFrame(label: label, verb: "MESSAGE", payload: { Array(make($0, id).utf8) }, outcome: { _ in .invalid(id: id) }))
        }

        // Truncated JSON: every cut of a valid MESSAGE at 16 points (and the empty frame's cousin, one byte).
        let cutID = Ids.make()
        for fraction in 1..<16 {
            raw("truncated at \(fraction)/16", .malformed) { node in
                let full = JSON.data(message(node, id: cutID))
                return Array(full.prefix(full.count * fraction / 16))
            }
        }
        raw("one byte", .malformed) { _ in [UInt8(ascii: "{")] }

        // Nesting 10,000 deep, bare and inside a frame that names its id (parsing fails first:
        // no id can be read).
        raw("array nested 10000 deep", .malformed) { _ in Array(repeating: UInt8(ascii: "["), count: 10_000) + Array(repeating: UInt8(ascii: "]"), count: 10_000) }
        raw("object nested 10000 deep", .malformed) { _ in
            Array(String(repeating: "{\"a\":", count: 10_000).utf8) + [UInt8(ascii: "1")] + Array(repeating: UInt8(ascii: "}"), count: 10_000)
        }
        raw("msg_data nested 10000 deep", .malformed) { node in
            let text = Self.text(message(node, id: Ids.make()), replacing: ["msg_data", "attachment"],
                                 with: String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000))
            return Array(text.utf8)
        }
        raw("nested 65 deep (one over the parser's limit)", .malformed) { _ in
            Array(String(repeating: "[", count: 65).utf8) + Array(String(repeating: "]", count: 65).utf8)
        }

        // Not a JSON object, or not JSON.
        for (label, text) in [("array", "[1,2,3]"), ("string", "\"MESSAGE\""), ("number", "42"), ("null", "null"), ("empty object", "{}"),
                              ("text", "hello there"), ("white space", "   "), ("trailing garbage", "{\"msg_type\":\"ACK\"} x"),
                              ("lone surrogate escape", "{\"a\":\"\\ud800\"}x"), ("bad escape", "{\"a\":\"\\q\"}"),
                              ("unquoted key", "{msg_type:\"ACK\"}"), ("single quotes", "{'msg_type':'ACK'}"),
                              ("trailing comma", "{\"msg_type\":\"ACK\",}"), ("leading zero", "{\"ttl\":01}"), ("NaN", "{\"ttl\":NaN}")] {
            raw(label, .malformed) { _ in Array(text.utf8) }
        }

        // Invalid UTF-8 and NUL bytes in an otherwise valid MESSAGE: the parser refuses the frame,
        // so no id is read.
        for (label, bytes) in [("invalid UTF-8 0xFF", [UInt8(0xFF)]), ("overlong UTF-8", [0xC0, 0x80]), ("UTF-8 surrogate", [0xED, 0xA0, 0x80]),
                               ("truncated UTF-8", [0xE2, 0x82]), ("code point over U+10FFFF", [0xF4, 0x90, 0x80, 0x80]),
                               ("raw NUL in a string", [0x00]), ("raw control byte", [0x1B])] as [(String, [UInt8])] {
            raw("\(label) in msg_data.message", .malformed) { node in
                let text = Self.text(message(node, id: Ids.make()), replacing: ["msg_data", "message"], with: "\"@@BYTES@@\"")
                let parts = text.components(separatedBy: "@@BYTES@@")
                return Array(parts[0].utf8) + bytes + Array(parts[1].utf8)
            }
        }
        raw("NUL bytes outside strings", .malformed) { _ in [0x00, 0x00, 0x00] + Array("{}".utf8) }
        raw("invalid UTF-8 as a key", .malformed) { _ in [UInt8(ascii: "{"), UInt8(ascii: "\""), 0xFE, UInt8(ascii: "\""), UInt8(ascii: ":"), UInt8(ascii: "1"), UInt8(ascii: "}")] }

        // Escaped NUL and huge numbers in a frame that is invalid for another reason.
        invalid("escaped NUL in channel, recipient a number") { node, id in
            text(message(node, id: id).merging(["msg_data": message(node, id: id).data.merging(["channel": "a\u{0}b"]) { $1 }]) { $1 },
                 replacing: ["msg_data", "recipient"], with: "1")
        }
        invalid("ttl 1e999999") { node, id in text(message(node, id: id), replacing: ["ttl"], with: "1e999999") }
        invalid("ttl with 1000 digits") { node, id in text(message(node, id: id), replacing: ["ttl"], with: String(repeating: "9", count: 1000)) }
        invalid("ttl -0.0e-0") { node, id in text(message(node, id: id), replacing: ["ttl"], with: "-0.0e-0") }

        // 1 MiB strings: as a value, as a key and as the message id.
        let mebibyte = String(repeating: "x", count: 1 << 20)
        invalid("1 MiB message, channel a number") { node, id in
            text(message(node, id: id).merging(["msg_data": message(node, id: id).data.merging(["message": mebibyte]) { $1 }]) { $1 },
                 replacing: ["msg_data", "channel"], with: "1")
        }
        invalid("1 MiB key in msg_data, timestamp an array") { node, id in
            text(message(node, id: id).merging(["msg_data": message(node, id: id).data.merging([mebibyte: "v"]) { $1 }]) { $1 },
                 replacing: ["msg_data", "timestamp"], with: "[]")
        }
        invalid("1 MiB sender_id") { node, id in text(message(node, id: id), replacing: ["sender_id"], with: "\"\(mebibyte)@\(node.id)x\"") }
        raw("1 MiB msg_id and nothing else", .malformed) { _ in Array("{\"msg_id\":\"\(mebibyte)\"}".utf8) }

        // Duplicate keys: the last one counts, and it is wrong.
        invalid("duplicate msg_type, the last a number") { node, id in
            let text = String(decoding: JSON.data(message(node, id: id)), as: UTF8.self)
            return "{\"msg_type\":\"MESSAGE\"," + text.dropFirst().dropLast() + ",\"msg_type\":7}"
        }
        invalid("duplicate msg_data.channel, the last an object") { node, id in
            text(message(node, id: id), replacing: ["msg_data", "channel"], with: "\"ok\",\"channel\":{}")
        }
        invalid("duplicate msg_data, the last a string") { node, id in
            let text = String(decoding: JSON.data(message(node, id: id)), as: UTF8.self)
            return String(text.dropLast()) + ",\"msg_data\":\"gone\",\"msg_id\":\"\(id)\"}"
        }
        invalid("1000 duplicate recipient keys, the last empty") { node, id in
            text(message(node, id: id), replacing: ["msg_data", "recipient"],
                 with: String(repeating: "[{\"node_id\":\"\(ghost)\"}],\"recipient\":", count: 1000) + "[]")
        }

        // One frame over the cap (its connection is closed): only the length and part of it are sent.
        raw("length over limits.max_frame_bytes", .tooLarge) { _ in Array(repeating: UInt8(ascii: " "), count: maxFrameBytes + 1) }
        return frames
    }
}
