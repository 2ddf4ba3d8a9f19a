import Logging
import NIOCore
import PTPProtocol
import NIOPosix
import RelayConfig
import RelayStore

/// What every shard shares: settings, the relay's identity, the node registry, flood state and the
/// channel directory.
final class RelayContext: Sendable {
    let configuration: RelayConfiguration
    let identity: SenderTag
    let logger: Logger
    let registry = NodeRegistry()
    let floods: FloodGuard
    let channels: ChannelDirectory
    let ackTemplate: AckTemplate
    let store: StoreAccess

    let ackTimeout: TimeAmount
    let handshakeTimeout: TimeAmount
    let maxTTL = 32

    init(configuration: RelayConfiguration, identity: NodeAddress, logger: Logger, store: StoreAccess) {
        self.store = store
        self.configuration = configuration
        self.identity = SenderTag(identity)
        self.ackTemplate = AckTemplate(relay: self.identity)
        self.logger = logger
        self.floods = FloodGuard(
            window: configuration.flood.window, ratePerSecond: configuration.limits.floodPerSecond,
            burst: configuration.limits.floodBurst)
        self.channels = ChannelDirectory(ttl: configuration.channels.ttl)
        self.ackTimeout = .fromSeconds(configuration.timeouts.ack)
        self.handshakeTimeout = .fromSeconds(configuration.timeouts.handshake)
    }
}

extension TimeAmount {
    static func fromSeconds(_ value: Double) -> TimeAmount {
        .nanoseconds(Int64(max(value, 0) * 1_000_000_000))
    }
}
