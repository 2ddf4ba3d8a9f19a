import NIOCore
import NIOPosix
import PTPProtocol

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The sockets of a punch: every socket on the punching port (the relay connection the NAT
/// mapping is learnt over, the listener, each dial) sets SO_REUSEADDR and SO_REUSEPORT, so that
/// they can share one local port while their 4-tuples differ.
public enum PunchSockets {
    /// Frames above this size end a direct link, as on the relay link (PROFILE.md default limit).
    public static let maxFrameBytes = 1 << 20

    /// NIO has no name for SO_REUSEPORT.
    static let reusePort = ChannelOptions.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT))

    /// A client bootstrap with TCP_NODELAY; bound to `local` with both reuse options when given.
    public static func clientBootstrap(local: SocketAddress?, connectTimeout: TimeAmount) -> ClientBootstrap {
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(connectTimeout)
        guard let local else { return bootstrap }
        return bootstrap
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(reusePort, value: 1)
            .bind(to: local)
    }

    /// A server bootstrap for the listener on the punching port.
    public static func serverBootstrap() -> ServerBootstrap {
        ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(reusePort, value: 1)
            .serverChannelOption(.backlog, value: 16)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
    }

    /// Adds the frame decoder and wraps `channel` for async use; call on its event loop.
    public static func framed(_ channel: Channel) throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes)))
        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
    }

    /// The wildcard address (`0.0.0.0` or `::`) of `address`'s family, with `port`.
    public static func wildcard(like address: SocketAddress, port: Int) throws -> SocketAddress {
        switch address {
        case .v6: try SocketAddress(ipAddress: "::", port: port)
        default: try SocketAddress(ipAddress: "0.0.0.0", port: port)
        }
    }

    /// `address` as a CONNECT address (IPv4-mapped IPv6 written as IPv4); nil for a Unix socket.
    public static func connectAddress(_ address: SocketAddress?) -> ConnectAddress? {
        guard let address, let ip = address.ipAddress, let port = address.port else { return nil }
        return ConnectAddress(host: ip, port: port)
    }

    /// The socket address to dial for a CONNECT address with a host (an IP literal).
    public static func socketAddress(_ address: ConnectAddress) throws -> SocketAddress {
        guard let host = address.host else { throw SocketAddressError.unsupported }
        return try SocketAddress(ipAddress: host, port: address.port)
    }
}
