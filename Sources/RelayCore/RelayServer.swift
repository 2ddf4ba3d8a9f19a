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
    let startedAt = NIODeadline.now()
    let context: RelayContext
    let shards: [RelayShard]
    private let listeners = NIOLockedValueBoxed<[Channel]>([])
    /// Dials `mesh.peers`.
    let dialer: PeerDialer

    public struct ListenError: Error, CustomStringConvertible {
        public var address: String
        public var reason: String
        public var description: String { "cannot listen on \(address): \(reason)" }

        public init(address: String, reason: String) {
            self.address = address
            self.reason = reason
        }
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
        let context = self.context
        self.dialer = PeerDialer(shards: shards, context: context) { channel, shard, address in
            try Self.addConnectionHandlers(to: channel, shard: shard, settings: context.configuration, dialedPeer: address)
        }
    }

    /// A connection's pipeline, accepted or dialed: idle and keepalive timers, framing, the shard.
    static func addConnectionHandlers(
        to channel: Channel, shard: RelayShard, settings: RelayConfiguration, dialedPeer: String? = nil
    ) throws {
        let idle = settings.timeouts.idle
        let keepalive = settings.timeouts.keepalive
        try channel.pipeline.syncOperations.addHandlers([
            IdleStateHandler(
                readTimeout: idle > 0 ? .fromSeconds(idle) : nil,
                writeTimeout: keepalive > 0 ? .fromSeconds(keepalive) : nil),
            ByteToMessageHandler(FrameDecoder(maxFrameBytes: settings.limits.maxFrameBytes)),
            ConnectionHandler(shard: shard, dialedPeer: dialedPeer),
        ])
    }

    /// Starts dialing `mesh.peers` (after the listeners: a peer dialing back finds them).
    private func startMesh() {
        let settings = context.configuration
        dialer.update(peers: settings.mesh.peers, hasKey: settings.mesh.key != nil)
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
        startMesh()
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

    private func makeBootstrap(on shard: RelayShard?) -> ServerBootstrap {
        let context = self.context
        let shards = self.shards
        let initial = context.configuration.limits
        let lowWater = max(initial.outboundBufferBytes / 2, 1)
        let highWater = max(initial.outboundBufferBytes, lowWater + 1)
        return ServerBootstrap(group: shard?.eventLoop ?? group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: lowWater, high: highWater))
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // Each channel keeps its last receive buffer for the next read (NIO's pooled receive
            // buffers), idle or not: start small (a HELLO fits) and let busy connections grow it.
            // 16 KiB here cost 16 KiB per idle connection (Benchmarks/security.sh memory row).
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 1024, maximum: 262_144))
            .childChannelInitializer { channel in
                // The settings in force when the connection arrives (a reload changes them).
                let settings = context.configuration
                let owner = shard ?? shards.first { $0.eventLoop === channel.eventLoop } ?? shards[0]
                return channel.eventLoop.makeCompletedFuture {
                    try Self.addConnectionHandlers(to: channel, shard: owner, settings: settings)
                }
            }
    }

    /// Serves on listening sockets passed in (systemd socket activation) instead of binding.
    public func start(inheritedListeners descriptors: [Int32]) async throws {
        for shard in shards {
            try await shard.eventLoop.submit { shard.startTimers() }.get()
        }
        for descriptor in descriptors {
            let channel = try await makeBootstrap(on: nil).withBoundSocket(descriptor).get()
            listeners.withLockedValue { $0.append(channel) }
            context.logger.info(
                "listening on socket from systemd",
                metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")", "node_id": "\(identity.id)"])
        }
        startMesh()
    }

    /// Applies a reloaded configuration without dropping a connection. Returns the keys whose
    /// change needs a restart (they keep their old values).
    public func apply(_ new: RelayConfiguration) async throws -> [String] {
        let old = context.configuration
        var needsRestart: [String] = []
        if new.relay.listen != old.relay.listen { needsRestart.append("relay.listen") }
        if new.relay.name != old.relay.name { needsRestart.append("relay.name") }
        if new.relay.nodeID != old.relay.nodeID { needsRestart.append("relay.node_id") }
        if new.relay.dataDir != old.relay.dataDir { needsRestart.append("relay.data_dir") }
        if new.relay.threads != old.relay.threads { needsRestart.append("relay.threads") }
        if new.stats != old.stats { needsRestart.append("stats.listen") }
        if new.store != old.store { needsRestart.append("store") }
        if new.tls != old.tls { needsRestart.append("tls") }
        if new.limits.outboundBufferBytes != old.limits.outboundBufferBytes { needsRestart.append("limits.outbound_buffer_bytes") }
        var effective = new
        effective.relay = old.relay
        effective.stats = old.stats
        effective.store = old.store
        effective.tls = old.tls
        effective.limits.outboundBufferBytes = old.limits.outboundBufferBytes
        let applied = effective
        context.apply(applied)
        for shard in shards {
            try await shard.eventLoop.submit { shard.apply(applied) }.get()
        }
        // `mesh.peers` and `mesh.key` apply at once: new peers are dialed, removed ones closed.
        dialer.update(peers: applied.mesh.peers, hasKey: applied.mesh.key != nil)
        return needsRestart
    }

    /// Whether every event loop runs a task within `timeout` (for the systemd watchdog).
    public func loopsAnswer(within timeout: TimeAmount) async -> Bool {
        let futures = shards.map { shard in shard.eventLoop.submit { () } }
        let deadline = NIODeadline.now() + timeout
        for future in futures {
            let remaining = deadline - .now()
            guard remaining > .zero else { return false }
            let answered = await withTaskGroup(of: Bool.self) { group in
                group.addTask { (try? await future.get()) != nil }
                group.addTask {
                    try? await Task.sleep(nanoseconds: UInt64(max(remaining.nanoseconds, 0)))
                    return false
                }
                let first = await group.next() ?? false
                group.cancelAll()
                return first
            }
            if !answered { return false }
        }
        return true
    }

    /// Stops accepting, closes every connection and the event loops.
    public func shutdown() async throws {
        dialer.stop()
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

    /// Nodes bound to this relay now.
    public var nodeCount: Int { context.registry.count }
}

private typealias NIOLockedValueBoxed = NIOLockedValueBox
