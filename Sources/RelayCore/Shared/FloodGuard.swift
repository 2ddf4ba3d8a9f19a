import NIOConcurrencyHelpers
import NIOCore
import PTPProtocol

/// Flood de-duplication (`flood.window`) and the per-origin flood budget (token bucket).
///
/// Floods are rare next to unicast traffic, so one lock serves every loop.
final class FloodGuard: Sendable {
    enum Verdict: Equatable {
        case accept
        case duplicate
        case overBudget
    }

    private struct State {
        /// Two generations: ids seen in the current and the previous window.
        var current: Set<GUID> = []
        var previous: Set<GUID> = []
        var rotated: NIODeadline
        var buckets: [GUID: TokenBucket] = [:]
    }

    private struct Limits {
        var window: TimeAmount
        var ratePerSecond: Double
        var burst: Double
    }

    private let limits: NIOLockedValueBox<Limits>
    private let state: NIOLockedValueBox<State>

    init(window: Double, ratePerSecond: Double, burst: Int, now: NIODeadline = .now()) {
        self.limits = NIOLockedValueBox(Limits(window: .nanoseconds(Int64(max(window, 0.001) * 1e9)), ratePerSecond: ratePerSecond, burst: Double(burst)))
        self.state = NIOLockedValueBox(State(rotated: now))
    }

    func update(window: Double, ratePerSecond: Double, burst: Int) {
        limits.withLockedValue {
            $0 = Limits(window: .nanoseconds(Int64(max(window, 0.001) * 1e9)), ratePerSecond: ratePerSecond, burst: Double(burst))
        }
    }

    func admit(floodID: GUID, origin: GUID?, now: NIODeadline = .now()) -> Verdict {
        let limits = self.limits.withLockedValue { $0 }
        let window = limits.window
        let ratePerSecond = limits.ratePerSecond
        let burst = limits.burst
        return state.withLockedValue { state in
            if now - state.rotated >= window {
                state.previous = now - state.rotated >= window + window ? [] : state.current
                state.current = []
                state.rotated = now
                state.buckets = state.buckets.filter { now - $0.value.updated < .seconds(60) }
            }
            if state.current.contains(floodID) || state.previous.contains(floodID) { return .duplicate }
            // A rate or a burst of 0 means unlimited, as every `limits.*` key.
            if ratePerSecond > 0, burst > 0, let origin {
                var bucket = state.buckets[origin] ?? TokenBucket(rate: ratePerSecond, burst: burst, now: now)
                bucket.reconfigure(rate: ratePerSecond, burst: burst, now: now)
                let admitted = bucket.take(now: now)
                state.buckets[origin] = bucket
                if !admitted { return .overBudget }
            }
            state.current.insert(floodID)
            return .accept
        }
    }
}
