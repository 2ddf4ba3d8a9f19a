/// An error in the relay's configuration: unreadable file, unknown key, bad value.
///
/// `description` is one line, meant to be printed at start as `ptpchat-relay: <description>`.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The configuration file is missing, is not a regular file or cannot be read.
        case unreadableFile
        /// The configuration file is not valid YAML or its top level is not a map.
        case malformedFile
        /// The file has a key the relay does not know.
        case unknownKey
        /// A value has the wrong type or is out of range.
        case invalidValue
        /// Values that are fine one by one but do not fit together (e.g. `tls.listen` without `tls.cert`).
        case inconsistent
    }

    public var kind: Kind
    /// The dotted configuration key concerned (`limits.max_frame_bytes`), when there is one.
    public var key: String?
    /// The offending value as written (never the value of a secret key), when there is one.
    public var value: String?
    /// One line, without the `ptpchat-relay: ` prefix.
    public var description: String

    public init(kind: Kind, key: String? = nil, value: String? = nil, description: String) {
        self.kind = kind
        self.key = key
        self.value = value
        self.description = ConfigurationError.oneLine(description, limit: 400)
    }

    /// `s` made printable on one line: control characters escaped, shortened to `limit` characters.
    static func oneLine(_ s: String, limit: Int = 80) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        if out.count > limit {
            out = String(out.prefix(limit)) + "..."
        }
        return out
    }
}
