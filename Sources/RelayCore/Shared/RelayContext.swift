import Logging
import NIOConcurrencyHelpers
import NIOCore
import PTPProtocol
import NIOPosix
import RelayConfig
import RelayStore

/// What every shard shares: settings, the relay's identity, the node registry, flood state and the
/// channel directory.
final class RelayContext: Sendable {
    /// The settings in force; replaced by a reload (SIGHUP). Shards keep their own copy.
    private let settings: NIOLockedValueBox<RelayConfiguration>
    var configuration: RelayConfiguration { settings.withLockedValue { $0 } }
    let identity: SenderTag
    let logger: Logger
    let registry = NodeRegistry()
    let legacyClients = LegacyRoster()
    let floods: FloodGuard
    let channels: ChannelDirectory
    let ackTemplate: FrameTemplate
    /// The HELLO sent at accept when there is no mesh key (with one, each carries its own nonce).
    let helloTemplate: FrameTemplate
    /// The ROUTING with no entries: most clients' first one.
    let emptyRoutingTemplate: FrameTemplate
    let recentDeliveries = RecentDeliveries(capacity: 1 << 20)
    let store: StoreAccess
    /// The route table and the peer relays (PROFILE.md section 9).
    let mesh: MeshRouter
    /// Connections in all and per address, for the accept limits of every listener.
    let acceptLimiter: AcceptLimiter
    /// Addresses banned at the listening sockets (`limits.ban_*`), for every listener.
    let listenerBans: ListenerBans
    /// `limits.connect_pair_per_minute`: the CONNECT budget of each pair of nodes, for every shard.
    let connectPairs = ConnectPairLimiter()

    init(configuration: RelayConfiguration, identity: NodeAddress, logger: Logger, store: StoreAccess) {
        self.store = store
        self.settings = NIOLockedValueBox(configuration)
        self.identity = SenderTag(identity)
        self.ackTemplate = FrameTemplate.ack(relay: self.identity)
        self.helloTemplate = FrameTemplate.hello(relay: self.identity)
        self.emptyRoutingTemplate = FrameTemplate.emptyRouting(relay: self.identity)
        self.logger = logger
        self.floods = FloodGuard(
            window: configuration.flood.window, ratePerSecond: configuration.limits.floodPerSecond,
            burst: configuration.limits.floodBurst)
        self.channels = ChannelDirectory(ttl: configuration.channels.ttl)
        self.mesh = MeshRouter(identity: identity, registry: registry)
        self.acceptLimiter = AcceptLimiter(limits: AcceptLimits(configuration.limits))
        self.listenerBans = ListenerBans(settings: BanSettings(configuration.limits), logger: logger)
    }

    /// Applies new settings to what is shared; each shard takes them in `RelayShard.apply`.
    func apply(_ configuration: RelayConfiguration) {
        settings.withLockedValue { $0 = configuration }
        floods.update(window: configuration.flood.window, ratePerSecond: configuration.limits.floodPerSecond, burst: configuration.limits.floodBurst)
        channels.update(ttl: configuration.channels.ttl)
        acceptLimiter.update(AcceptLimits(configuration.limits))
        listenerBans.update(BanSettings(configuration.limits))
    }
}

extension TimeAmount {
    /// At most 10^9 s (about 31 years): a configured `timeouts.idle: 1e12` means "never", not
    /// a trap converting it, nor an overflow adding it to a deadline.
    static func fromSeconds(_ value: Double) -> TimeAmount {
        .nanoseconds(Int64(min(max(value, 0), 1e9) * 1_000_000_000))
    }
}
