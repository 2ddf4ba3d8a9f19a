import Foundation
import Logging

/// Parsing of one configuration value from its text, the same for the file, the environment and the
/// command line. Each function throws a ``ValueProblem`` saying what was expected.
enum ValueParsing {
    /// A whole number, `_` allowed as a digit separator (`1_048_576`), at least `minimum`.
    static func integer(_ text: String, minimum: Int) throws -> Int {
        let digits = text.replacingOccurrences(of: "_", with: "")
        guard let value = Int(digits) else {
            throw ValueProblem("expected a whole number")
        }
        guard value >= minimum else {
            throw ValueProblem(minimum == 0 ? "must not be negative" : "must be at least \(minimum)")
        }
        return value
    }

    /// A finite number, integer or fraction (`10`, `0.25`, `1e3`), not negative; zero only when allowed.
    static func number(_ text: String, allowZero: Bool) throws -> Double {
        let digits = text.replacingOccurrences(of: "_", with: "")
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || "+-.eE".contains($0)) }),
            let value = Double(digits), value.isFinite
        else {
            throw ValueProblem("expected a number (integer or fraction)")
        }
        if value < 0 {
            throw ValueProblem("must not be negative")
        }
        if value == 0 && !allowZero {
            throw ValueProblem("must be greater than 0")
        }
        return value
    }

    /// `true`/`false`, also `yes`/`no`, `on`/`off`, `1`/`0`, any letter case.
    static func boolean(_ text: String) throws -> Bool {
        switch text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw ValueProblem("expected true or false")
        }
    }

    /// One or more ASCII letters and digits (the existing client refuses other names).
    static func relayName(_ text: String) throws -> String {
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
            throw ValueProblem("a relay name is letters and digits only (A-Z, a-z, 0-9)")
        }
        return text
    }

    /// A bare GUID, any letter case; returned in lower case. The all-zero GUID is refused.
    static func guid(_ text: String) throws -> String {
        guard text.count == 36, let uuid = UUID(uuidString: text) else {
            throw ValueProblem("expected a GUID such as 0b370041-cd1e-40ac-ac59-0136bba850fe")
        }
        guard uuid != UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)) else {
            throw ValueProblem("the all-zero GUID is not a node id")
        }
        return uuid.uuidString.lowercased()
    }

    /// A swift-log level name, any letter case.
    static func logLevel(_ text: String) throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            let names = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValueProblem("expected one of \(names)")
        }
        return level
    }

    static func syncMode(_ text: String) throws -> RelayConfiguration.SyncMode {
        guard let mode = RelayConfiguration.SyncMode(rawValue: text.lowercased()) else {
            throw ValueProblem("expected full or normal")
        }
        return mode
    }

    /// An address to listen on: `HOST:PORT`, `[IPv6]:PORT` or `:PORT`.
    static func listenAddress(_ text: String) throws -> String {
        if case .failure(let problem) = HostPort.parse(text) {
            throw problem
        }
        return text
    }

    /// An address to dial: `HOST:PORT` or `[IPv6]:PORT`, the host is required; `tls://` before
    /// it dials with TLS. The entry is kept as written (it names the peer in logs and the dialer).
    static func dialAddress(_ text: String) throws -> String {
        let hostPort = ConfigurationLoader.stripTLSScheme(text) ?? text
        guard !hostPort.hasPrefix(":") else {
            throw ValueProblem("a peer address needs a host: HOST:PORT, [IPv6]:PORT or tls://HOST:PORT")
        }
        _ = try listenAddress(hostPort)
        return text
    }

    /// Any non-empty text (a path, a key).
    static func nonEmpty(_ text: String) throws -> String {
        guard !text.isEmpty else {
            throw ValueProblem("must not be empty")
        }
        return text
    }
}
