import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOPosix
import PTPProtocol
import RelayConfig

/// Keeps one connection to every relay in `mesh.peers` (PROFILE.md section 9): dials each, and
/// redials a lost one with exponential backoff (0.5 s doubling to 30 s, with jitter). A peer that
/// is connected the other way (it dialed this relay) is not dialed; the dialer looks again later.
final class PeerDialer: Sendable {
    static let firstDelay = 0.5
    static let maxDelay = 30.0
    /// A connection that lasted this long starts the backoff over when it is lost.
    static let stableAfter = 10.0

    private struct Target {
        var attempts = 0
        var channel: Channel?
        var connectedAt: NIODeadline?
        var retry: Scheduled<Void>?
        var stopped = false
    }

    private let targets = NIOLockedValueBox<[String: Target]>([:])
    private let shards: [RelayShard]
    private let context: RelayContext
    private let makeHandlers: @Sendable (Channel, RelayShard, String) throws -> Void

    /// `makeHandlers` builds a dialed connection's pipeline, the same as an accepted one's (TLS in
    /// front for a `tls://` entry).
    init(shards: [RelayShard], context: RelayContext, makeHandlers: @escaping @Sendable (Channel, RelayShard, String) throws -> Void) {
        self.shards = shards
        self.context = context
        self.makeHandlers = makeHandlers
    }

    private var logger: Logger { context.logger }

    /// Dials the peers in `peers` that are not dialed yet and stops dialing (and closes) those
    /// that are gone from the list. Without `mesh.key` the relay dials none.
    func update(peers: [String], hasKey: Bool) {
        let wanted = Set(hasKey ? peers : [])
        let (added, removed) = targets.withLockedValue { targets -> ([String], [Target]) in
            var removed: [Target] = []
            for (address, target) in targets where !wanted.contains(address) {
                var stopped = target
                stopped.stopped = true
                removed.append(stopped)
                targets[address] = nil
            }
            let added = wanted.filter { targets[$0] == nil }.sorted()
            for address in added { targets[address] = Target() }
            return (added, removed)
        }
        for target in removed {
            target.retry?.cancel()
            target.channel?.close(promise: nil)
        }
        if !removed.isEmpty { logger.info("mesh peers removed", metadata: ["count": "\(removed.count)"]) }
        for address in added { dial(address) }
    }

    /// The `mesh.peers` entries being dialed.
    var addresses: [String] {
        targets.withLockedValue { $0.keys.sorted() }
    }

    /// Stops every dial and closes nothing (the server closes connections at shutdown).
    func stop() {
        let all = targets.withLockedValue { targets in
            let all = Array(targets.values)
            targets.removeAll()
            return all
        }
        for target in all { target.retry?.cancel() }
    }

    private func shard(for address: String) -> RelayShard {
        var hash = 5381
        for byte in address.utf8 { hash = (hash &* 33) &+ Int(byte) }
        return shards[abs(hash % shards.count)]
    }

    private func dial(_ address: String) {
        guard targets.withLockedValue({ $0[address].map { !$0.stopped } ?? false }) else { return }
        if let relay = context.mesh.relay(dialedAt: address), context.mesh.isConnected(relay) {
            // Connected the other way: PROFILE.md section 9 keeps one connection per pair.
            scheduleRetry(address, delay: Self.maxDelay / 10, counting: false)
            return
        }
        let shard = shard(for: address)
        let host: String
        let port: Int
        do {
            (host, port, _) = try ConfigurationLoader.parsePeerAddress(address)
        } catch {
            logger.error("mesh peer address cannot be dialed", metadata: ["peer": "\(address)", "error": "\(error)"])
            return
        }
        let makeHandlers = self.makeHandlers
        let timeout = TimeAmount.fromSeconds(max(shard.configuration.timeouts.handshake, 1))
        logger.debug("dialing mesh peer", metadata: ["peer": "\(address)"])
        let bootstrap = ClientBootstrap(group: shard.eventLoop)
            .connectTimeout(timeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try makeHandlers(channel, shard, address) }
            }
        // An IP literal is dialed as it is: no resolver round (getaddrinfo and happy eyeballs) for
        // an address that needs none. A name goes through NIO's resolver.
        let connected =
            if let literal = try? SocketAddress(ipAddress: host, port: port) {
                bootstrap.connect(to: literal)
            } else {
                bootstrap.connect(host: host, port: port)
            }
        connected.whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    let keep = targets.withLockedValue { targets -> Bool in
                        guard targets[address] != nil, targets[address]!.stopped == false else { return false }
                        targets[address]!.channel = channel
                        targets[address]!.connectedAt = .now()
                        return true
                    }
                    guard keep else {
                        channel.close(promise: nil)
                        return
                    }
                    channel.closeFuture.whenComplete { [self] _ in lost(address) }
                case .failure(let error):
                    logger.debug("mesh peer not reached", metadata: ["peer": "\(address)", "error": "\(error)"])
                    scheduleRetry(address, delay: nil, counting: true)
                }
            }
    }

    /// The connection to `address` closed: dial again after the backoff (from the start when it
    /// had lasted).
    private func lost(_ address: String) {
        targets.withLockedValue { targets in
            guard var target = targets[address] else { return }
            if let since = target.connectedAt, NIODeadline.now() - since >= .fromSeconds(Self.stableAfter) {
                target.attempts = 0
            }
            target.channel = nil
            target.connectedAt = nil
            targets[address] = target
        }
        scheduleRetry(address, delay: nil, counting: true)
    }

    private func scheduleRetry(_ address: String, delay fixed: Double?, counting: Bool) {
        let loop = shard(for: address).eventLoop
        targets.withLockedValue { targets in
            guard var target = targets[address], !target.stopped else { return }
            let delay: Double
            if let fixed {
                delay = fixed
            } else {
                // 0.5 s doubling to 30 s, each with up to a quarter more at random (jitter).
                let base = min(Self.firstDelay * Double(1 << min(target.attempts, 16)), Self.maxDelay)
                delay = base * Double.random(in: 1...1.25)
            }
            if counting { target.attempts += 1 }
            target.retry?.cancel()
            target.retry = loop.scheduleTask(in: .fromSeconds(delay)) { [self] in dial(address) }
            targets[address] = target
        }
    }
}
