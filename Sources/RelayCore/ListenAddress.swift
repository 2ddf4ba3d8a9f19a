import NIOCore

/// Where a listener binds (`relay.listen`, `tls.listen`, `stats.listen`).
public enum ListenAddress {
    /// The socket address of `host` and `port`. An IP literal (`0.0.0.0`, `::`, `::1`, IPv6
    /// without brackets) is used as it is, with no resolver lookup: `getaddrinfo` refuses `::` on
    /// a host whose only IPv6 address is `::1` ("Address family for hostname not supported"),
    /// and a literal needs no lookup anyway. Only a host name (or a literal with a zone,
    /// `fe80::1%eth0`) goes through the resolver.
    ///
    /// An IPv6 listener is dual-stack: NIO clears IPV6_V6ONLY on every IPv6 socket it makes, so
    /// `[::]` serves IPv4 clients too (seen as `::ffff:a.b.c.d`).
    public static func socketAddress(host: String, port: Int) throws -> SocketAddress {
        if let literal = try? SocketAddress(ipAddress: host, port: port) { return literal }
        return try SocketAddress.makeAddressResolvingHost(host, port: port)
    }
}

extension SocketAddress {
    /// The address as operators write it: `0.0.0.0:9001`, `[::]:9001`, a Unix socket's path.
    /// NIO's own description (`[IPv4]0.0.0.0/0.0.0.0:9001`) is for debugging NIO, not for logs.
    public var hostPort: String {
        switch self {
        case .v4:
            return "\(ipAddress ?? "?"):\(port ?? 0)"
        case .v6:
            return "[\(ipAddress ?? "?")]:\(port ?? 0)"
        case .unixDomainSocket:
            return pathname ?? "unix socket"
        }
    }
}
