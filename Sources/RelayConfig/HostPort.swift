extension ConfigurationLoader {
    /// Parses `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (host `0.0.0.0`).
    ///
    /// The host is returned without brackets (`[::1]:9001` gives `::1`). The port must be 1-65535.
    /// A bare IPv6 address without brackets (`::1:9001`) is refused as ambiguous.
    /// Throws a ``ConfigurationError`` of kind `.invalidValue` naming the string and what is wrong.
    public static func parseHostPort(_ s: String) throws -> (host: String, port: Int) {
        switch HostPort.parse(s) {
        case .success(let hostPort):
            return hostPort
        case .failure(let problem):
            throw ConfigurationError(
                kind: .invalidValue,
                value: s,
                description: "invalid address '\(ConfigurationError.oneLine(s))': \(problem.reason)"
            )
        }
    }
}

extension ConfigurationLoader {
    static let tlsScheme = "tls://"

    /// The `HOST:PORT` after `tls://`, or nil when the entry has no such prefix.
    static func stripTLSScheme(_ entry: String) -> String? {
        guard entry.count > tlsScheme.count, entry.prefix(tlsScheme.count).lowercased() == tlsScheme else { return nil }
        return String(entry.dropFirst(tlsScheme.count))
    }

    /// Parses a `mesh.peers` entry: `HOST:PORT`, `[IPv6]:PORT`, or either after `tls://`
    /// (`usesTLS`: dial with TLS and verify the peer's certificate).
    public static func parsePeerAddress(_ entry: String) throws -> (host: String, port: Int, usesTLS: Bool) {
        let stripped = stripTLSScheme(entry)
        let (host, port) = try parseHostPort(stripped ?? entry)
        return (host, port, stripped != nil)
    }
}

/// Why a value was refused, without the key or where it came from (the loader adds those).
struct ValueProblem: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}

enum HostPort {
    static let defaultHost = "0.0.0.0"

    static func parse(_ s: String) -> Result<(host: String, port: Int), ValueProblem> {
        let host: String
        let portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else {
                return .failure(ValueProblem("missing ']' after the IPv6 address"))
            }
            let inside = s[s.index(after: s.startIndex)..<close]
            guard isIPv6Literal(inside) else {
                return .failure(ValueProblem("'\(inside)' between brackets is not an IPv6 address"))
            }
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else {
                return .failure(ValueProblem("expected ':PORT' after ']'"))
            }
            host = String(inside)
            portText = rest.dropFirst()
        } else {
            guard let colon = s.lastIndex(of: ":") else {
                return .failure(ValueProblem("expected HOST:PORT, [IPv6]:PORT or :PORT"))
            }
            let hostPart = s[..<colon]
            if hostPart.contains(":") {
                return .failure(ValueProblem("write an IPv6 address in brackets, as [::1]:9001"))
            }
            if hostPart.isEmpty {
                host = defaultHost
            } else {
                guard isHostName(hostPart) else {
                    return .failure(ValueProblem("'\(hostPart)' is not a host name or IP address"))
                }
                host = String(hostPart)
            }
            portText = s[s.index(after: colon)...]
        }
        guard !portText.isEmpty else {
            return .failure(ValueProblem("the port is missing"))
        }
        guard portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(portText) else {
            return .failure(ValueProblem("port '\(portText)' is not a number from 1 to 65535"))
        }
        guard (1...65535).contains(port) else {
            return .failure(ValueProblem("port \(port) is outside 1-65535"))
        }
        return .success((host, port))
    }

    /// Letters, digits, `-`, `_` and `.`: a DNS name or an IPv4 address.
    private static func isHostName(_ s: Substring) -> Bool {
        !s.isEmpty && s.allSatisfy { c in
            c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "." || c == "_")
        }
    }

    /// Hex digits, `:` and `.` (an embedded IPv4), at least two colons, optionally `%zone`.
    private static func isIPv6Literal(_ s: Substring) -> Bool {
        let address = s.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)
        guard let first = address.first, !first.isEmpty else { return false }
        if address.count == 2 {
            let zone = address[1]
            guard !zone.isEmpty, zone.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") }) else {
                return false
            }
        }
        return first.filter { $0 == ":" }.count >= 2
            && first.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
    }
}
