import NIOConcurrencyHelpers
import NIOCore
import PTPProtocol

/// `limits.connect_pair_per_minute` (PROFILE.md section 8: per-pair CONNECT limits): a token
/// bucket per unordered pair of nodes, a bucket of `perMinute` refilled over a minute.
///
/// A pure value: the caller passes the time and the limit in, so tests need no clock and no
/// channel. Memory stays bounded: a bucket that is full again holds nothing worth remembering and
/// is dropped by the next sweep (at most `sweepInterval` later, or as soon as more than
/// `sweepThreshold` pairs are held), so what it keeps is the pairs active in the last minute or two.
struct ConnectPairBudgets: Sendable {
    /// The unordered pair {a, b}: the smaller id first.
    struct Pair: Hashable, Sendable {
        let first: GUID
        let second: GUID

        init(_ a: GUID, _ b: GUID) {
            (first, second) = a < b ? (a, b) : (b, a)
        }
    }

    static let sweepInterval = TimeAmount.seconds(60)
    /// Above this many pairs the next admission sweeps at once, whatever the interval.
    static let sweepThreshold = 16_384

    private var buckets: [Pair: TokenBucket] = [:]
    private var lastSweep: NIODeadline?
    /// The number held after the last sweep: the threshold sweep waits until that many more came
    /// (a table of live pairs above the threshold is not swept at every admission).
    private var heldAfterSweep = 0

    /// Pairs held now (for tests and the memory bound).
    var count: Int { buckets.count }

    /// Takes one CONNECT of the pair {a, b} from its budget; false (nothing taken) when the pair
    /// is over `perMinute`. A limit of 0 is unlimited and keeps nothing.
    mutating func admit(_ a: GUID, _ b: GUID, perMinute: Double, now: NIODeadline) -> Bool {
        guard perMinute > 0 else {
            if !buckets.isEmpty { buckets = [:] }
            return true
        }
        sweepIfDue(now: now)
        let pair = Pair(a, b)
        let rate = perMinute / 60
        if var bucket = buckets[pair] {
            bucket.reconfigure(rate: rate, burst: perMinute, now: now)
            let admitted = bucket.take(now: now)
            buckets[pair] = bucket
            return admitted
        }
        var bucket = TokenBucket(rate: rate, burst: perMinute, now: now)
        let admitted = bucket.take(now: now)
        buckets[pair] = bucket
        return admitted
    }

    /// Forgets every pair whose bucket is full again.
    mutating func sweep(now: NIODeadline) {
        buckets = buckets.filter { !$0.value.isFull(now: now) }
        lastSweep = now
        heldAfterSweep = buckets.count
    }

    private mutating func sweepIfDue(now: NIODeadline) {
        guard let lastSweep else {
            self.lastSweep = now
            return
        }
        if now - lastSweep >= Self.sweepInterval || buckets.count >= heldAfterSweep + Self.sweepThreshold {
            sweep(now: now)
        }
    }
}

/// The relay's one `ConnectPairBudgets`, shared by every shard: the two steps of a rendezvous
/// arrive on the connections of two different nodes, often on two different loops. CONNECT is
/// rare next to other traffic, so one lock serves every loop (as `FloodGuard`).
final class ConnectPairLimiter: Sendable {
    private let budgets = NIOLockedValueBox(ConnectPairBudgets())

    func admit(_ a: GUID, _ b: GUID, perMinute: Double, now: NIODeadline) -> Bool {
        budgets.withLockedValue { $0.admit(a, b, perMinute: perMinute, now: now) }
    }

    var count: Int { budgets.withLockedValue { $0.count } }
}
