#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import RelayTLS

/// A `TestClient` over TLS: a real TLS connection (RelayTLS's client side, NIOSSL) to the relay,
/// bridged to one end of a socket pair whose other end the blocking `TestClient` reads and writes.
/// Closing either side closes the other.
final class TLSTestConnection: Sendable {
    /// What the handshake did: nil while under way.
    enum Outcome: Sendable, Equatable {
        case completed(TLSProtocolVersion?)
        case failed(String)
    }

    private let outcomeBox = NIOLockedValueBox<Outcome?>(nil)
    var outcome: Outcome? { outcomeBox.withLockedValue { $0 } }

    /// Connects to `127.0.0.1:port` (the certificate must name IP 127.0.0.1, or `host` when given)
    /// with `files`, and returns the client side of the bridge.
    static func connect(port: UInt16, files: ClientTLSFiles, host: String = "127.0.0.1", label: String) throws -> (TestClient, TLSTestConnection) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw Sockets.failure("socketpair")
        }
        let connection = TLSTestConnection()
        let tls = try ClientTLS(files: files)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let observer = TLSHandshakeObserver(
            failed: { error in connection.outcomeBox.withLockedValue { $0 = .failed("\(error)") } },
            completed: { version in connection.outcomeBox.withLockedValue { $0 = .completed(version) } })
        // The local end first: the network side forwards from its first byte on.
        let local: Channel
        do {
            local = try NIOPipeBootstrap(group: loop).takingOwnershipOfDescriptor(inputOutput: pair[1]).wait()
        } catch {
            close(pair[0])
            close(pair[1])
            throw error
        }
        let network: Channel
        do {
            network = try ClientBootstrap(group: loop)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try tls.addHandlers(to: channel, host: host, observer: observer)
                        try channel.pipeline.syncOperations.addHandler(Forwarder(to: local))
                    }
                }
                .connect(host: "127.0.0.1", port: Int(port)).wait()
            try local.pipeline.addHandler(Forwarder(to: network)).wait()
        } catch {
            try? local.close().wait()
            close(pair[0])
            throw error
        }
        network.closeFuture.whenComplete { _ in local.close(promise: nil) }
        local.closeFuture.whenComplete { _ in network.close(promise: nil) }
        return (TestClient(descriptor: pair[0], label: label), connection)
    }

    /// Waits for the handshake's end (or the timeout).
    func waitForOutcome(timeout: Double) -> Outcome? {
        _ = Deadline.poll(timeout: timeout) { outcome != nil }
        return outcome
    }
}

/// Copies what one channel reads to the other.
private final class Forwarder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let partner: Channel

    init(to partner: Channel) { self.partner = partner }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
