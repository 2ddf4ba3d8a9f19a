import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif
import PTPProtocol
import RelayConfig
import RelayStore

/// The relay: one shard per event loop, listeners on the configured addresses.
public final class RelayServer: Sendable {
    public let group: MultiThreadedEventLoopGroup
    public let identity: NodeAddress
    let context: RelayContext
    let shards: [RelayShard]
    private let listeners = NIOLockedValueBoxed<[Channel]>([])

    public struct ListenError: Error, CustomStringConvertible {
        public var address: String
        public var reason: String
        public var description: String { "cannot listen on \(address): \(reason)" }
    }

    public init(configuration: RelayConfiguration, identity: NodeAddress, logger: Logger, store: StoreAccess) {
        let threads = configuration.relay.threads > 0 ? configuration.relay.threads : System.coreCount
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        self.identity = identity
        self.context = RelayContext(configuration: configuration, identity: identity, logger: logger, store: store)
        var shards: [RelayShard] = []
        for (index, loop) in group.makeIterator().enumerated() {
            shards.append(RelayShard(index: index, eventLoop: loop, context: context))
        }
        for shard in shards { shard.shards = shards }
        self.shards = shards
    }

    /// Binds every listener and starts the shards' timers. Throws `ListenError` naming the address.
    public func start() async throws {
        for shard in shards {
            try await shard.eventLoop.submit { shard.startTimers() }.get()
        }
        for address in context.configuration.relay.listen {
            let (host, port) = try ConfigurationLoader.parseHostPort(address)
            do {
                // One listening socket per event loop (SO_REUSEPORT): every loop accepts, and the
                // kernel spreads connections over them, so about half of all conversations stay
                // on one loop instead of all crossing between loops (round-robin).
                // SO_REUSEPORT would let a second relay share the port silently: a plain bind
                // first tells "address already in use" as it should.
                if port != 0 {
                    try Self.checkPortIsFree(host: host, port: port)
                }
                var boundPort = port
                for shard in shards {
                    let channel = try await makeBootstrap(on: shard).bind(host: host, port: boundPort).get()
                    listeners.withLockedValue { $0.append(channel) }
                    boundPort = channel.localAddress?.port ?? boundPort
                    if shard.index == 0 {
                        context.logger.info(
                            "listening",
                            metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? address)", "node_id": "\(identity.id)"])
                    }
                }
            } catch let error as IOError {
                throw ListenError(address: address, reason: String(cString: strerror(error.errnoCode)).lowercased())
            } catch {
                throw ListenError(address: address, reason: "\(error)")
            }
        }
    }

    /// Binds (without listening, so nothing can connect to it) a plain socket to the address.
    static func checkPortIsFree(host: String, port: Int) throws {
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        let descriptor = socket(address.protocol.rawValue, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        defer { close(descriptor) }
        var one: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = address.withSockAddr { pointer, size in bind(descriptor, pointer, socklen_t(size)) }
        guard result == 0 else { throw IOError(errnoCode: errno, reason: "bind") }
    }

    /// The addresses actually bound (port 0 resolves to the chosen port).
    public var boundAddresses: [SocketAddress] {
        listeners.withLockedValue { channels in
            var seen = Set<String>()
            return channels.compactMap(\.localAddress).filter { seen.insert("\($0)").inserted }
        }
    }

    private func makeBootstrap(on shard: RelayShard) -> ServerBootstrap {
        let maxFrame = context.configuration.limits.maxFrameBytes
        let idle = context.configuration.timeouts.idle
        let keepalive = context.configuration.timeouts.keepalive
        let lowWater = max(context.configuration.limits.outboundBufferBytes / 2, 1)
        let highWater = max(context.configuration.limits.outboundBufferBytes, lowWater + 1)
        return ServerBootstrap(group: shard.eventLoop)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: lowWater, high: highWater))
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16384, maximum: 262_144))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(
                            readTimeout: idle > 0 ? .fromSeconds(idle) : nil,
                            writeTimeout: keepalive > 0 ? .fromSeconds(keepalive) : nil),
                        ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrame)),
                        ConnectionHandler(shard: shard),
                    ])
                }
            }
    }

    /// Stops accepting, closes every connection and the event loops.
    public func shutdown() async throws {
        let channels = listeners.withLockedValue { $0 }
        for channel in channels {
            try? await channel.close()
        }
        for shard in shards {
            try? await shard.eventLoop.submit {
                shard.stopTimers()
                for connection in shard.connections.values {
                    shard.close(connection, reason: "relay shutting down")
                }
            }.get()
        }
        // Commit what the store still holds while the loops can take the completions.
        let store = context.store
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread {
                store.close()
                done.resume()
            }.start()
        }
        try await group.shutdownGracefully()
    }

    /// The sum of every shard's counters.
    public func counters() async throws -> RelayCounters {
        var total = RelayCounters()
        for shard in shards {
            total = total + (try await shard.eventLoop.submit { shard.counters }.get())
        }
        return total
    }

    /// Nodes bound to this relay now.
    public var nodeCount: Int { context.registry.count }
}

private typealias NIOLockedValueBoxed = NIOLockedValueBox
