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
import RelayTLS

/// The relay: one shard per event loop, listeners on the configured addresses.
public final class RelayServer: Sendable {
    public let group: MultiThreadedEventLoopGroup
    public let identity: NodeAddress
    let startedAt = NIODeadline.now()
    let context: RelayContext
    let shards: [RelayShard]
    private let listeners = NIOLockedValueBoxed<[Channel]>([])
    /// The placement of new connections last logged by the listeners (`LoopPlacer`).
    private let placementNotice = PlacementNotice()
    /// Dials `mesh.peers`.
    let dialer: PeerDialer
    /// The TLS contexts of `tls.*`, made at init; reloaded in place.
    let tls: RelayTLSContexts

    public struct ListenError: Error, CustomStringConvertible {
        public var address: String
        public var reason: String
        public var description: String { "cannot listen on \(address): \(reason)" }

        public init(address: String, reason: String) {
            self.address = address
            self.reason = reason
        }
    }

    /// Throws `TLSSetupError` when a `tls.*` file cannot be used.
    public init(configuration: RelayConfiguration, identity: NodeAddress, logger: Logger, store: StoreAccess) throws {
        let tls = try RelayTLSContexts(configuration.tls)
        self.tls = tls
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
            let peer = try ConfigurationLoader.parsePeerAddress(address)
            if peer.usesTLS {
                try Self.putTLS(in: channel) { try tls.client.addHandlers(to: channel, host: peer.host, observer: Self.handshakeObserver(shard)) }
            }
            try Self.addConnectionHandlers(
                to: channel, shard: shard, settings: context.configuration, dialedPeer: address, plaintext: !peer.usesTLS)
        }
    }

    /// A connection's pipeline, accepted or dialed: the connection handler, which splits the frames
    /// (its cap set by the shard: `FrameCaps.beforeHello` until the HELLO) and hands them to the
    /// shard; the per-node read budget goes in front of it when the connection opens, if one is set
    /// (`RelayShard.applyNodeBudget`). (Idle and keepalive timeouts are the shard's idle
    /// sweep; the outbound water marks are set by the shard at open: both follow a reload.)
    static func addConnectionHandlers(
        to channel: Channel, shard: RelayShard, settings: RelayConfiguration, dialedPeer: String? = nil, plaintext: Bool
    ) throws {
        try channel.pipeline.syncOperations.addHandler(
            ConnectionHandler(
                shard: shard, dialedPeer: dialedPeer, maxFrameBytes: FrameCaps.beforeHello(maxFrameBytes: settings.limits.maxFrameBytes),
                plaintext: plaintext))
    }

    /// Counts and logs a connection's failed TLS handshake (called on the shard's loop).
    static func handshakeObserver(_ shard: RelayShard) -> TLSHandshakeObserver {
        TLSHandshakeObserver(
            failed: { error in
                shard.counters.drop(.tlsHandshakeFailed)
                shard.logger.debug("TLS handshake failed", metadata: ["error": "\(error)"])
            },
            unprovenClaim: { why in
                shard.logger.info("client certificate proves no node id", metadata: ["reason": "\(why)"])
            })
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
            try await bindListeners(address, tls: nil)
        }
        for address in context.configuration.tls.listen {
            try await bindListeners(address, tls: tls.server)
        }
        startMesh()
    }

    /// Binds one listener per event loop to `address`; `tls` puts TLS in front of its connections.
    private func bindListeners(_ address: String, tls: ServerTLS?) async throws {
        let (host, port) = try ConfigurationLoader.parseHostPort(address)
        do {
            var socketAddress = try ListenAddress.socketAddress(host: host, port: port)
            // One listening socket per event loop (SO_REUSEPORT): every loop accepts, and the
            // kernel spreads connections over them, so about half of all conversations stay
            // on one loop instead of all crossing between loops (round-robin).
            // SO_REUSEPORT would let a second relay share the port silently: a plain bind
            // first tells "address already in use" as it should.
            if port != 0 {
                try Self.checkPortIsFree(socketAddress)
            }
            for shard in shards {
                let channel = try await makeBootstrap(on: shard, tls: tls).bind(to: socketAddress).get()
                listeners.withLockedValue { $0.append(channel) }
                socketAddress.port = channel.localAddress?.port ?? socketAddress.port
                if shard.index == 0 {
                    context.logger.info(
                        "listening",
                        metadata: [
                            "address": "\(channel.localAddress?.hostPort ?? address)", "node_id": "\(identity.id)",
                            "tls": "\(tls != nil)",
                        ])
                }
            }
        } catch let error as IOError {
            throw ListenError(address: address, reason: String(cString: strerror(error.errnoCode)).lowercased())
        } catch {
            throw ListenError(address: address, reason: "\(error)")
        }
    }

    /// Binds (without listening, so nothing can connect to it) a plain socket to the address, as
    /// the listener will be bound: an IPv6 one dual-stack (IPV6_V6ONLY off, as NIO makes it), so
    /// a port taken by an IPv4 socket is found taken for `[::]` too.
    static func checkPortIsFree(_ address: SocketAddress) throws {
        let descriptor = socket(address.protocol.rawValue, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        defer { close(descriptor) }
        var one: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if address.protocol == .inet6 {
            var zero: Int32 = 0
            _ = setsockopt(descriptor, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size))
        }
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

    /// Accepts connections with the one pipeline definition (`addConnectionHandlers`); a TLS
    /// listener wraps it, putting TLS in front. A listening channel's handler: the accept limits
    /// (`AcceptGate`), which also places each admitted connection on a loop (`LoopPlacer`).
    private func makeBootstrap(on shard: RelayShard?, tls: ServerTLS?) -> ServerBootstrap {
        let context = self.context
        let shards = self.shards
        let notice = self.placementNotice
        let initialize: LoopPlacer.Initialize = { channel, owner in
            try Self.initializeAccepted(channel, owner: owner, tls: tls, settings: context.configuration)
        }
        return ServerBootstrap(group: shard?.eventLoop ?? group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
            // Nagle off on the listening socket: Linux gives every accepted socket its listener's
            // TCP_NODELAY, so no setsockopt per connection (AcceptedConnectionOptionsTests checks
            // the accepted socket). NIO's default too, said here because the relay depends on it.
            .serverChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .serverChannelInitializer { server in
                // The accept limits, before anything of a connection exists but its socket. The
                // listening channel's loop is a shard's (its counters take the refusals).
                let owner = shards.first { $0.eventLoop === server.eventLoop } ?? shards[0]
                return server.eventLoop.makeCompletedFuture {
                    let placer = LoopPlacer(shards: shards, owner: owner, notice: notice, initialize: initialize)
                    try server.pipeline.syncOperations.addHandler(
                        AcceptGate(limiter: context.acceptLimiter, bans: context.listenerBans, shard: owner, placer: placer))
                }
            }
            .childChannelInitializer { channel in
                let owner = shard ?? shards.first { $0.eventLoop === channel.eventLoop } ?? shards[0]
                return channel.eventLoop.makeCompletedFuture { try initialize(channel, owner) }
            }
    }

    /// An accepted connection's pipeline, on the loop of `owner`, with the settings in force when
    /// it arrives (a reload changes them).
    static func initializeAccepted(_ channel: Channel, owner: RelayShard, tls: ServerTLS?, settings: RelayConfiguration) throws {
        try setConnectionOptions(of: channel)
        if let tls {
            try putTLS(in: channel) { try tls.addHandlers(to: channel, observer: handshakeObserver(owner)) }
        }
        try addConnectionHandlers(to: channel, shard: owner, settings: settings, plaintext: tls == nil)
    }

    /// An accepted connection's channel options, set synchronously in its initializer. (Given to
    /// `childChannelOption`, NIO applies each through a chain of futures: about 35,000 of the
    /// relay's 230,000 instructions per handshake went there, callgrind, 3 options.) TCP_NODELAY
    /// comes from the listening socket.
    /// Reads per cycle stay at NIO's default until the connection is busy (`ConnectionHandler`
    /// counts them; behind TLS, `putTLS`).
    static func setConnectionOptions(of channel: Channel) throws {
        guard let options = channel.syncOptions else { return }
        try options.setOption(.recvAllocator, value: NodeRateLimiter.Reads.normalAllocator)
    }

    /// Puts TLS in front of a connection, accepted or dialed (`addHandlers` adds NIOSSL's). Behind
    /// it the reads per cycle get the busy figure at once: NIOSSL hands a read cycle's plaintext on
    /// as one read, so `ConnectionHandler`'s count never sees a busy connection there.
    static func putTLS(in channel: Channel, _ addHandlers: () throws -> Void) throws {
        try addHandlers()
        try channel.syncOptions?.setOption(.maxMessagesPerRead, value: NodeRateLimiter.Reads.normalMaxMessagesPerRead)
    }

    /// Serves on listening sockets passed in (systemd socket activation) instead of binding;
    /// `tlsListeners` (sockets named `tls`) get TLS in front.
    public func start(inheritedListeners descriptors: [Int32], tlsListeners: [Int32] = []) async throws {
        for shard in shards {
            try await shard.eventLoop.submit { shard.startTimers() }.get()
        }
        if !tlsListeners.isEmpty && tls.server == nil {
            throw ListenError(address: "socket named tls", reason: "tls.cert and tls.key are not set")
        }
        let all = descriptors.map { ($0, nil as ServerTLS?) } + tlsListeners.map { ($0, tls.server) }
        for (descriptor, tls) in all {
            let channel = try await makeBootstrap(on: nil, tls: tls).withBoundSocket(descriptor).get()
            listeners.withLockedValue { $0.append(channel) }
            context.logger.info(
                "listening on socket from systemd",
                metadata: [
                    "address": "\(channel.localAddress?.hostPort ?? "?")", "node_id": "\(identity.id)", "tls": "\(tls != nil)",
                ])
        }
        startMesh()
    }

    /// Applies a reloaded configuration without dropping a connection. Returns the keys whose
    /// change needs a restart (they keep their old values): each configuration key says whether a
    /// reload applies it (`ConfigurationLoader.appliesOnReload`).
    public func apply(_ new: RelayConfiguration) async throws -> [String] {
        let old = context.configuration
        var needsRestart = new.keysNeedingRestart(comparedTo: old)
        let applied = new.keepingRestartKeys(of: old)
        // Certificates, keys and the client CA are read again (a renewed certificate keeps its
        // path) for connections from now on; open ones keep theirs. A TLS server that did not run
        // at start cannot begin without a restart.
        for key in tls.reload(applied.tls, logger: context.logger) where !needsRestart.contains(key) {
            needsRestart.append(key)
        }
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
