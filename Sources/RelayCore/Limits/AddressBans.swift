import NIOCore
import RelayConfig

/// When an address that keeps being refused at accept is banned, and for how long
/// (`limits.ban_after_refusals`, `limits.ban_seconds`).
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

/// The addresses banned at the listening sockets, and the refusals that lead there. A pure value
/// (the time is passed in); `ListenerBans` shares it and puts the list into the kernel.
///
/// Every connection refused at accept still costs the relay an accept and a close, and while a
/// flood keeps the kernel's accept queue full a legitimate new client's handshake is dropped with
/// the flood's. A banned address's SYNs are dropped by the kernel before they take a place in that
/// queue. Refusals are counted per address in windows of a minute; at `afterRefusals` in one
/// window the address is banned until `duration` has passed. The list holds at most `capacity`
/// addresses (the socket filter's size): a new ban over it replaces the one that ends first.
struct AddressBans: Sendable {
    /// The most addresses banned at once: the socket filter checks an IPv6 /64 in 5 instructions,
    /// and a classic BPF program holds at most 4,096.
    static let capacity = 512
    static let window = TimeAmount.seconds(60)

    private struct Strikes {
        var windowStart: NIODeadline
        var refusals: Int
    }

    private(set) var settings: BanSettings
    /// Refusals in the current window, per address refused lately (forgotten a window later).
    private var strikes: [AddressKey: Strikes] = [:]
    /// Banned addresses and when each ban ends.
    private(set) var banned: [AddressKey: NIODeadline] = [:]

    init(settings: BanSettings) {
        self.settings = settings
    }

    /// The ban that ends first, if any.
    var nextExpiry: NIODeadline? { banned.values.min() }

    func isBanned(_ key: AddressKey) -> Bool { banned[key] != nil }

    /// `key` was refused at accept: true when this refusal bans it (once per ban; a connection
    /// already in the kernel's queue when the ban began is still refused, and counts for nothing).
    mutating func refused(_ key: AddressKey, now: NIODeadline) -> Bool {
        guard settings.isEnabled, banned[key] == nil else { return false }
        var entry = strikes[key] ?? Strikes(windowStart: now, refusals: 0)
        if now - entry.windowStart >= Self.window {
            entry = Strikes(windowStart: now, refusals: 0)
        }
        entry.refusals += 1
        guard entry.refusals >= settings.afterRefusals else {
            strikes[key] = entry
            return false
        }
        strikes[key] = nil
        if banned.count >= Self.capacity, let first = banned.min(by: { $0.value < $1.value }) {
            banned[first.key] = nil
        }
        banned[key] = now + settings.duration
        return true
    }

    /// Lifts the bans that have ended and forgets windows that are over; true when the list of
    /// banned addresses changed.
    mutating func expire(now: NIODeadline) -> Bool {
        strikes = strikes.filter { now - $0.value.windowStart < Self.window }
        let before = banned.count
        banned = banned.filter { $0.value > now }
        return banned.count != before
    }

    /// A reload. Bans already made keep their end; disabling bans lifts them all. True when the
    /// list of banned addresses changed.
    mutating func update(_ settings: BanSettings) -> Bool {
        self.settings = settings
        guard !settings.isEnabled else { return false }
        strikes = [:]
        let changed = !banned.isEmpty
        banned = [:]
        return changed
    }
}
