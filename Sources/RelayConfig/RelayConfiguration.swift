import Logging

/// Every setting of the relay, with the defaults of PROFILE.md section 11.
///
/// Durations are seconds (`Double`), sizes are bytes. A `limits.*` value of 0 means unlimited.
public struct RelayConfiguration: Sendable, Equatable {
    public struct Relay: Sendable, Equatable {
        public var listen: [String] = ["0.0.0.0:9001"]
        public var name: String = "relay"
        /// `nil`: generated on first start and kept in `dataDir`.
        public var nodeID: String? = nil
        public var dataDir: String = "./ptpchat-data"
        /// 0: one event loop per core.
        public var threads: Int = 0
        public init() {}
    }

    public struct Stats: Sendable, Equatable {
        /// `nil` when `stats.listen` is `off`.
        public var listen: String? = "127.0.0.1:9002"
        public init() {}
    }

    public struct Timeouts: Sendable, Equatable {
        public var handshake: Double = 10
        public var idle: Double = 90
        public var keepalive: Double = 25
        public var helloRefresh: Double = 60
        public var ack: Double = 10
        public var shutdown: Double = 10
        public init() {}
    }

    public struct Limits: Sendable, Equatable {
        public var maxFrameBytes: Int = 1_048_576
        public var maxConnections: Int = 100_000
        public var perIPConnections: Int = 64
        public var perIPNewPerSecond: Double = 20
        public var perIPNewBurst: Int = 50
        /// Connections closed at accept per second, all listeners together; over it the listener
        /// stops accepting for a moment (the kernel's backlog holds the rest).
        public var acceptRefusalsPerSecond: Double = 1000
        public var acceptRefusalsBurst: Int = 2000
        /// Refusals at accept of one address (IPv6: /64) within a minute that ban it: its SYNs are
        /// dropped by the kernel, at the listening sockets, for `banSeconds` (0: never ban).
        public var banAfterRefusals: Int = 100
        public var banSeconds: Double = 600
        public var nodeMessagesPerSecond: Double = 200
        public var nodeMessagesBurst: Int = 1000
        public var nodeBytesPerSecond: Double = 1_048_576
        public var nodeBytesBurst: Int = 4_194_304
        public var floodPerSecond: Double = 5
        public var floodBurst: Int = 20
        public var connectPerMinute: Double = 10
        /// CONNECTs per minute between one pair of nodes, both steps and both directions counted.
        public var connectPairPerMinute: Double = 10
        public var outboundBufferBytes: Int = 1_048_576
        public var outboundBufferMaxBytes: Int = 4_194_304
        public init() {}
    }

    public struct Flood: Sendable, Equatable {
        public var window: Double = 600
        public init() {}
    }

    public struct Channels: Sendable, Equatable {
        public var ttl: Double = 600
        public init() {}
    }

    public enum SyncMode: String, Sendable, Equatable {
        case full
        case normal
    }

    public struct Store: Sendable, Equatable {
        public var sync: SyncMode = .full
        public var maxAttempts: Int = 5
        public var perRecipientMessages: Int = 1000
        public var perRecipientBytes: Int = 10_485_760
        public var perSenderMessages: Int = 100
        public var maxBytes: Int = 1_073_741_824
        public var maxAge: Double = 604_800
        public init() {}
    }

    public struct Routing: Sendable, Equatable {
        public var interval: Double = 0.25
        public var refresh: Double = 60
        /// What clients get in ROUTING (`routing.to_clients`).
        public var clientView: ClientRoutingView = .channels
        /// Whether clients get any routes (`false` is `ClientRoutingView.none`; `true` sets `.all`).
        public var toClients: Bool {
            get { clientView != .none }
            set { clientView = newValue ? .all : .none }
        }
        public init() {}
    }

    /// `routing.to_clients` (PROFILE.md section 9).
    public enum ClientRoutingView: String, Sendable, Equatable {
        /// `true`: the table as this relay sees it (never a client's own entry). Small networks.
        case all = "true"
        /// `false`: only the empty first ROUTING.
        case none = "false"
        /// `channels`: the nodes a client shares a channel with and the nodes it exchanged messages
        /// with; stays small however large the mesh grows.
        case channels
    }

    public struct Mesh: Sendable, Equatable {
        public var peers: [String] = []
        public var key: String? = nil
        public init() {}
    }

    public struct TLS: Sendable, Equatable {
        public var listen: [String] = []
        public var cert: String? = nil
        public var key: String? = nil
        public var clientCA: String? = nil
        /// With `clientCA`: refuse a TLS handshake that presents no client certificate.
        public var requireClientCert: Bool = false
        public init() {}
    }

    /// PROFILE.md section 4a: help for the existing public client (best-effort delivery,
    /// introductions). Reloadable: a reload applies it to connections that say HELLO afterwards.
    public struct Compat: Sendable, Equatable {
        public var legacyClients: Bool = true
        public init() {}
    }

    public var relay = Relay()
    public var stats = Stats()
    public var logLevel: Logger.Level = .info
    public var timeouts = Timeouts()
    public var limits = Limits()
    public var flood = Flood()
    public var channels = Channels()
    public var store = Store()
    public var routing = Routing()
    public var mesh = Mesh()
    public var tls = TLS()
    public var compat = Compat()

    public init() {}
}
