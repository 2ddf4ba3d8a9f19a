/// An address inside a CONNECT message (PROFILE.md section 8), shared by the relay that fills
/// addresses in and the client that dials them.
///
/// Written forms: `1.2.3.4:40000`, `[2001:db8::1]:40000`, and a port alone (`:40000`, or `40000`
/// as a node may send it). An IPv4 client seen on a dual-stack listener (`::ffff:1.2.3.4`) is
/// written in the plain IPv4 form, since clients parse `a.b.c.d:port`.
public struct ConnectAddress: Hashable, Sendable, CustomStringConvertible {
    /// The IP literal without brackets, or `nil` for a port alone.
    public let host: String?
    /// 1-65535.
    public let port: Int

    /// `host` is an IP literal (IPv6 without brackets); an IPv4-mapped IPv6 address is stored as
    /// plain IPv4. Returns `nil` for a port outside 1-65535 or an empty host.
    public init?(host: String?, port: Int) {
        guard (1...65535).contains(port) else { return nil }
        if let host {
            guard !host.isEmpty else { return nil }
            self.host = Self.plainIP(host)
        } else {
            self.host = nil
        }
        self.port = port
    }

    /// Reads any written form. A host, when present, must be an IPv6 literal in brackets or a
    /// host without `:`; the port must be 1-65535. Anything else is `nil`.
    public init?(parsing text: String) {
        let host: String?
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let afterClose = text.index(after: close)
            guard afterClose < text.endIndex, text[afterClose] == ":" else { return nil }
            host = String(text[text.index(after: text.startIndex)..<close])
            guard host!.contains(":") else { return nil }
            portText = text[text.index(after: afterClose)...]
        } else if let colon = text.firstIndex(of: ":") {
            guard text.lastIndex(of: ":") == colon else { return nil }  // bare IPv6 without brackets
            host = colon == text.startIndex ? nil : String(text[..<colon])
            portText = text[text.index(after: colon)...]
        } else {
            host = nil
            portText = Substring(text)
        }
        guard portText.utf8.count <= 5, portText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let port = Int(portText)
        else { return nil }
        self.init(host: host, port: port)
    }

    /// The written form: `HOST:PORT`, `[IPv6]:PORT`, or `:PORT` without a host.
    public var description: String {
        guard let host else { return ":\(port)" }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// `::ffff:1.2.3.4` (any case) becomes `1.2.3.4`; every other address is returned as it is.
    public static func plainIP(_ ip: String) -> String {
        let prefix = "::ffff:"
        guard ip.utf8.count > prefix.utf8.count, ip.lowercased().hasPrefix(prefix) else { return ip }
        let rest = ip.dropFirst(prefix.count)
        guard rest.contains("."), !rest.contains(":") else { return ip }
        return String(rest)
    }
}
