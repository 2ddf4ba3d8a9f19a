import NIOConcurrencyHelpers
import NIOCore
import RelayConfig

/// Where a connection comes from, for the per-IP limits: an IPv4 address, or an IPv6 address's
/// /64 (one host usually holds a whole /64). IPv4-mapped IPv6 addresses count as IPv4.
enum AddressKey: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6(prefix: UInt64)

    /// nil for an address with no IP (a Unix socket): counted in all, not per IP.
    init?(_ address: SocketAddress?) {
        switch address {
        case .v4(let v4):
            self = .v4(UInt32(bigEndian: v4.address.sin_addr.s_addr))
        case .v6(let v6):
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
                self = .v4(bytes[12..<16].reduce(0) { $0 << 8 | UInt32($1) })
            } else {
                self = .v6(prefix: bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) })
            }
        default:
            return nil
        }
    }

    var description: String {
        switch self {
        case .v4(let value):
            return "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
        case .v6(let prefix):
            let groups = (0..<4).map { String(prefix >> (48 - 16 * UInt64($0)) & 0xFFFF, radix: 16) }
            return groups.joined(separator: ":") + "::/64"
        }
    }
}

/// The accept limits of PROFILE.md section 10 (`limits.max_connections`,
/// `limits.per_ip_connections`, `limits.per_ip_new_per_second` / `_burst`), and the relay's own
/// budget of refusals (`limits.accept_refusals_per_second` / `_burst`); 0 is unlimited.
struct AcceptLimits: Sendable, Equatable {
    var maxConnections: Int
    var perIPConnections: Int
    var perIPNewPerSecond: Double
    var perIPNewBurst: Int
    var refusalsPerSecond: Double = 0
    var refusalsBurst: Int = 0
    /// Refusals of one address within a minute that ban it (`limits.ban_after_refusals`; 0: never).
    var banAfterRefusals: Int = 0

    /// Whether connections are counted per address: a per-IP limit is on. Only a per-IP refusal
    /// strikes toward a ban, so with both off an address's entry would serve nothing.
    var countsPerIP: Bool { perIPConnections > 0 || perIPNewPerSecond > 0 }
}

extension AcceptLimits {
    init(_ limits: RelayConfiguration.Limits) {
        self.init(
            maxConnections: limits.maxConnections, perIPConnections: limits.perIPConnections,
            perIPNewPerSecond: limits.perIPNewPerSecond, perIPNewBurst: limits.perIPNewBurst,
            refusalsPerSecond: limits.acceptRefusalsPerSecond, refusalsBurst: limits.acceptRefusalsBurst,
            banAfterRefusals: limits.banAfterRefusals)
    }
}

/// The counts behind the accept limits: connections in all and per address, and each address's
/// new-connection bucket. A pure value (the time is passed in); `AcceptLimiter` shares it.
///
/// An address with no connection, a full bucket and no warning in the last minute is forgotten,
/// so the table holds only addresses that are connected or were active lately.
struct AcceptLedger: Sendable {
    enum Verdict: Equatable, Sendable {
        case admit
        /// `warn` is set when this refusal should be logged as a warning: the refusals of this
        /// address since its last warning (at most one a minute per address). `ban`: this refusal
        /// is the address's `banAfterRefusals`-th within a minute (`ListenerBans` bans it).
        case refuse(DropReason, warn: Int?, ban: Bool = false)
    }

    private struct Entry {
        var connections = 0
        var newConnections: TokenBucket
        var lastWarning: NIODeadline?
        var refusedSinceWarning = 0
        /// Refusals counted toward a ban, in the window of a minute that began at the first.
        var strikeWindowStart: NIODeadline?
        var strikes = 0

        /// One more refusal toward a ban: true when it reaches `banAfter` within the window (the
        /// count then starts again).
        mutating func strike(now: NIODeadline, banAfter: Int) -> Bool {
            guard banAfter > 0 else { return false }
            if let start = strikeWindowStart, now - start < AcceptLedger.banWindow {
                strikes += 1
            } else {
                strikeWindowStart = now
                strikes = 1
            }
            guard strikes >= banAfter else { return false }
            strikeWindowStart = nil
            strikes = 0
            return true
        }
    }

    static let warningInterval = TimeAmount.seconds(60)
    static let banWindow = TimeAmount.seconds(60)
    static let sweepInterval = TimeAmount.seconds(10)

    private(set) var limits: AcceptLimits
    private(set) var total = 0
    private var entries: [AddressKey: Entry] = [:]
    private var lastSweep: NIODeadline
    /// Refusals of every listener together: what a flood may make the relay spend on connections
    /// it closes at once (an accept, a close and their kernel work, about 18 µs each).
    private var refusals: TokenBucket
    private var pausesSinceWarning = 0
    private var lastPauseWarning: NIODeadline?

    init(limits: AcceptLimits, now: NIODeadline) {
        self.limits = limits
        self.lastSweep = now
        self.refusals = TokenBucket(rate: limits.refusalsPerSecond, burst: Double(limits.refusalsBurst), now: now)
    }

    /// Addresses remembered now.
    var trackedAddresses: Int { entries.count }

    /// Connections open from `key`.
    func connections(from key: AddressKey) -> Int { entries[key]?.connections ?? 0 }

    mutating func update(_ limits: AcceptLimits) { self.limits = limits }

    /// A new connection from `key` (nil: no IP): admitted and counted, or refused. With the
    /// per-IP limits off it is counted in all only (a handshake's dictionary work less, about
    /// 2,000 instructions): release it with no key. A reload that turns a per-IP limit on counts
    /// per address the connections that come after it.
    mutating func admit(_ key: AddressKey?, now: NIODeadline) -> Verdict {
        if now - lastSweep >= Self.sweepInterval { sweep(now: now) }
        if limits.maxConnections > 0 && total >= limits.maxConnections {
            // Not this address's doing alone: counted and logged, but no warning for it.
            return .refuse(.connectionLimit, warn: nil)
        }
        guard let key, limits.countsPerIP else {
            total += 1
            return .admit
        }
        var entry =
            entries[key]
            ?? Entry(newConnections: TokenBucket(rate: limits.perIPNewPerSecond, burst: Double(limits.perIPNewBurst), now: now))
        entry.newConnections.reconfigure(rate: limits.perIPNewPerSecond, burst: Double(limits.perIPNewBurst), now: now)
        defer { entries[key] = entry }
        let refusal: DropReason
        if !entry.newConnections.take(now: now) {
            refusal = .perIPRate
        } else if limits.perIPConnections > 0 && entry.connections >= limits.perIPConnections {
            refusal = .perIPLimit
        } else {
            entry.connections += 1
            total += 1
            return .admit
        }
        let ban = entry.strike(now: now, banAfter: limits.banAfterRefusals)
        entry.refusedSinceWarning += 1
        if let last = entry.lastWarning, now - last < Self.warningInterval {
            return .refuse(refusal, warn: nil, ban: ban)
        }
        let refused = entry.refusedSinceWarning
        entry.lastWarning = now
        entry.refusedSinceWarning = 0
        return .refuse(refusal, warn: refused, ban: ban)
    }

    /// A connection closed at accept (refused, or gone before it): charged to the refusal budget.
    /// Over it, the time the listener should stop accepting for (until a tenth of a second's
    /// worth of refusals is back: one timer per pause, not one per refusal); nil within it.
    mutating func chargeRefusal(now: NIODeadline) -> TimeAmount? {
        refusals.reconfigure(rate: limits.refusalsPerSecond, burst: Double(limits.refusalsBurst), now: now)
        if refusals.take(now: now) { return nil }
        let resumeLevel = min(refusals.burst, max(1, refusals.rate / 10))
        return max(refusals.timeUntil(holding: resumeLevel), .milliseconds(1))
    }

    /// A listener paused: the pauses to report when a warning line is due (at most one a minute
    /// for the whole relay, whose listeners pause each on its own), nil otherwise.
    mutating func notePause(now: NIODeadline) -> Int? {
        pausesSinceWarning += 1
        if let last = lastPauseWarning, now - last < Self.warningInterval { return nil }
        lastPauseWarning = now
        defer { pausesSinceWarning = 0 }
        return pausesSinceWarning
    }

    /// A connection `admit` counted closed.
    mutating func release(_ key: AddressKey?, now: NIODeadline) {
        total = max(total - 1, 0)
        guard let key, var entry = entries[key] else { return }
        entry.connections = max(entry.connections - 1, 0)
        if Self.isForgettable(entry, now: now) {
            entries[key] = nil
        } else {
            entries[key] = entry
        }
    }

    /// Forgets every address with nothing worth remembering.
    mutating func sweep(now: NIODeadline) {
        lastSweep = now
        entries = entries.filter { !Self.isForgettable($0.value, now: now) }
    }

    private static func isForgettable(_ entry: Entry, now: NIODeadline) -> Bool {
        guard entry.connections == 0, entry.newConnections.isFull(now: now) else { return false }
        if let start = entry.strikeWindowStart, now - start < banWindow { return false }
        guard let last = entry.lastWarning else { return true }
        return now - last >= warningInterval
    }
}

/// The accept ledger shared by every listener and event loop: one small lock, taken once at
/// accept and once at close.
final class AcceptLimiter: Sendable {
    private let ledger: NIOLockedValueBox<AcceptLedger>

    init(limits: AcceptLimits, now: NIODeadline = .now()) {
        self.ledger = NIOLockedValueBox(AcceptLedger(limits: limits, now: now))
    }

    /// The verdict on a new connection; for a refusal over the refusal budget, how long the
    /// listener should pause accepting; for an admitted one, the key to `release` it with (nil
    /// when it was counted in all only: no IP, or the per-IP limits off).
    func admit(_ key: AddressKey?, now: NIODeadline = .now()) -> (
        verdict: AcceptLedger.Verdict, pause: TimeAmount?, countedAs: AddressKey?
    ) {
        ledger.withLockedValue { ledger in
            let verdict = ledger.admit(key, now: now)
            guard case .refuse = verdict else { return (verdict, nil, ledger.limits.countsPerIP ? key : nil) }
            return (verdict, ledger.chargeRefusal(now: now), nil)
        }
    }

    /// A connection closed at accept for another reason (gone before it): charged to the refusal
    /// budget; the pause, as `admit`'s.
    func chargeRefusal(now: NIODeadline = .now()) -> TimeAmount? {
        ledger.withLockedValue { $0.chargeRefusal(now: now) }
    }

    /// A listener paused accepting: the number of pauses to log when a warning is due.
    func notePause(now: NIODeadline = .now()) -> Int? {
        ledger.withLockedValue { $0.notePause(now: now) }
    }

    func release(_ key: AddressKey?, now: NIODeadline = .now()) {
        ledger.withLockedValue { $0.release(key, now: now) }
    }

    /// A reload: new connections meet the new limits (open ones stay open).
    func update(_ limits: AcceptLimits) {
        ledger.withLockedValue { $0.update(limits) }
    }

    var total: Int { ledger.withLockedValue { $0.total } }
    var trackedAddresses: Int { ledger.withLockedValue { $0.trackedAddresses } }
}
