import Foundation

/// JSON decoding that keeps the exact JSON types: `true` becomes a Swift `Bool` (never an `Int`),
/// an integer an `Int` (never a `Bool`), `null` an `NSNull`. Foundation's `JSONSerialization`
/// returns `NSNumber`s that cast to both, which would hide a `"ttl": true` or a `"flood": 1`.
enum JSON {
    /// The frame's object, or nil when `bytes` is not a JSON object.
    static func object(_ bytes: [UInt8]) -> [String: Any]? {
        guard let value = try? JSONDecoder().decode(Value.self, from: Data(bytes)) else { return nil }
        return value.any as? [String: Any]
    }

    /// Compact JSON of `object` (UTF-8, as `JSONSerialization` writes it).
    static func data(_ object: [String: Any]) -> [UInt8] {
        do {
            return Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
        } catch {
            preconditionFailure("test frame is not serializable: \(error)")
        }
    }

    private enum Value: Decodable {
        case null, bool(Bool), int(Int), double(Double), string(String), array([Value]), object([String: Value])

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self = .null
            } else if let value = try? container.decode(Bool.self) {
                self = .bool(value)
            } else if let value = try? container.decode(Int.self) {
                self = .int(value)
            } else if let value = try? container.decode(Double.self) {
                self = .double(value)
            } else if let value = try? container.decode(String.self) {
                self = .string(value)
            } else if let value = try? container.decode([Value].self) {
                self = .array(value)
            } else {
                self = .object(try container.decode([String: Value].self))
            }
        }

        var any: Any {
            switch self {
            case .null: NSNull()
            case .bool(let value): value
            case .int(let value): value
            case .double(let value): value
            case .string(let value): value
            case .array(let values): values.map(\.any)
            case .object(let members): members.mapValues(\.any)
            }
        }
    }
}

/// Reading values out of decoded frames.
extension Dictionary where Key == String, Value == Any {
    var verb: String? { self["msg_type"] as? String }
    var data: [String: Any] { self["msg_data"] as? [String: Any] ?? [:] }
    /// `msg_data.msg_id`.
    var dataMessageID: String? { data["msg_id"] as? String }
    /// `msg_data.recipient[].node_id`, lower-cased.
    var recipientIDs: [String] {
        (data["recipient"] as? [Any] ?? []).compactMap { ($0 as? [String: Any])?["node_id"] as? String }.map { $0.lowercased() }
    }
}

/// Node ids and names as the profile writes them.
enum Ids {
    /// A fresh lower-case GUID.
    static func make() -> String { UUID().uuidString.lowercased() }

    static let zero = "00000000-0000-0000-0000-000000000000"

    /// The 36-character canonical form, any case.
    static func isGUID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (index, byte) in bytes.enumerated() {
            if index == 8 || index == 13 || index == 18 || index == 23 {
                if byte != UInt8(ascii: "-") { return false }
            } else if !(byte >= 48 && byte <= 57) && !(byte >= 97 && byte <= 102) && !(byte >= 65 && byte <= 70) {
                return false
            }
        }
        return true
    }

    static func isNonZeroGUID(_ text: String?) -> Bool {
        guard let text, isGUID(text) else { return false }
        return text != zero
    }

    /// `name@GUID` with a name of letters and digits (what the existing client accepts).
    static func isAddress(_ text: String?) -> Bool {
        guard let text, let at = text.lastIndex(of: "@") else { return false }
        let name = text[..<at]
        let id = String(text[text.index(after: at)...])
        return !name.isEmpty && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)) }
            && isGUID(id)
    }
}

extension JSON {
    /// True when the JSON text has no white space outside strings (PROFILE.md: compact).
    static func isCompact(_ bytes: [UInt8]) -> Bool {
        var inString = false
        var escaped = false
        for byte in bytes {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else if byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
                return false
            }
        }
        return true
    }
}
