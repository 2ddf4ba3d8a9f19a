import NIOCore
import RelayConfig

/// How long a ban lasts, and whether bans are on at all (`limits.ban_after_refusals`,
/// `limits.ban_seconds`). When an address is banned is `AcceptLedger`'s count of its refusals.
struct BanSettings: Sendable, Equatable {
    /// Refusals of one address within a minute that ban it; 0: never ban.
    var afterRefusals: Int
    var duration: TimeAmount

    var isEnabled: Bool { afterRefusals > 0 }
}

extension BanSettings {
    init(_ limits: RelayConfiguration.Limits) {
        self.init(afterRefusals: limits.banAfterRefusals, duration: .nanoseconds(Int64(limits.banSeconds * 1e9)))
    }
}

/// The addresses banned at the listening sockets and when each ban ends. A pure value (the time is
/// passed in); `ListenerBans` shares it and puts the list into the kernel.
///
/// Every connection refused at accept still costs the relay an accept and a close, and while a
/// flood keeps the kernel's accept queue full a legitimate new client's handshake is dropped with
/// the flood's. A banned address's SYNs are dropped by the kernel before they take a place in that
/// queue. The list holds at most `capacity` addresses (the socket filter's size): a new ban over it
/// replaces the one that ends first.
struct AddressBans: Sendable {
    /// The most addresses banned at once: the socket filter checks an IPv6 /64 in 5 instructions,
    /// and a classic BPF program holds at most 4,096.
    static let capacity = 512

    private(set) var settings: BanSettings
    /// Banned addresses and when each ban ends.
    private(set) var banned: [AddressKey: NIODeadline] = [:]

    init(settings: BanSettings) {
        self.settings = settings
    }

    /// The ban that ends first, if any.
    var nextExpiry: NIODeadline? { banned.values.min() }

    func isBanned(_ key: AddressKey) -> Bool { banned[key] != nil }

    /// Bans `key` for `settings.duration`: true when that is a new ban (false while bans are off,
    /// or when it is banned already: a ban is not extended by refusals of connections that were in
    /// the kernel's queue before it began).
    mutating func ban(_ key: AddressKey, now: NIODeadline) -> Bool {
        guard settings.isEnabled, banned[key] == nil else { return false }
        if banned.count >= Self.capacity, let first = banned.min(by: { $0.value < $1.value }) {
            banned[first.key] = nil
        }
        banned[key] = now + settings.duration
        return true
    }

    /// Lifts the bans that have ended; true when the list changed.
    mutating func expire(now: NIODeadline) -> Bool {
        let before = banned.count
        banned = banned.filter { $0.value > now }
        return banned.count != before
    }

    /// A reload. Bans already made keep their end; disabling bans lifts them all. True when the
    /// list changed.
    mutating func update(_ settings: BanSettings) -> Bool {
        self.settings = settings
        guard !settings.isEnabled, !banned.isEmpty else { return false }
        banned = [:]
        return true
    }
}
