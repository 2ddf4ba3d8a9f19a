import NIOCore

/// A token bucket: `rate` tokens a second, at most `burst` held. A rate or a burst of 0 means
/// unlimited, as every `limits.*` key (PROFILE.md section 10).
///
/// A pure value: the caller passes the time in, so tests need no clock and no channel. It holds
/// no lock; its owner decides who may touch it.
struct TokenBucket: Sendable, Equatable {
    private(set) var rate: Double
    private(set) var burst: Double
    /// Below 0 after `charge` took more than there was: a debt the refill pays back first.
    private(set) var tokens: Double
    /// When `tokens` was last brought up to date.
    private(set) var updated: NIODeadline

    /// A full bucket.
    init(rate: Double, burst: Double, now: NIODeadline) {
        self.rate = max(rate, 0)
        self.burst = max(burst, 0)
        self.tokens = self.burst
        self.updated = now
    }

    var isUnlimited: Bool { rate <= 0 || burst <= 0 }

    /// New rate and burst; the tokens held stay (at most the new burst). Cheap when nothing changed.
    mutating func reconfigure(rate newRate: Double, burst newBurst: Double, now: NIODeadline) {
        let newRate = max(newRate, 0), newBurst = max(newBurst, 0)
        guard newRate != rate || newBurst != burst else { return }
        refill(now: now)
        let wasUnlimited = isUnlimited
        rate = newRate
        burst = newBurst
        tokens = wasUnlimited ? burst : min(tokens, burst)
    }

    /// Adds what accrued since the last update.
    mutating func refill(now: NIODeadline) {
        if now > updated && !isUnlimited {
            let elapsed = Double((now - updated).nanoseconds) / 1e9
            tokens = min(burst, tokens + elapsed * rate)
        }
        updated = max(updated, now)
    }

    /// Takes `cost` tokens when that many are there; false (and nothing taken) otherwise.
    mutating func take(_ cost: Double = 1, now: NIODeadline) -> Bool {
        guard !isUnlimited else { return true }
        refill(now: now)
        guard tokens >= cost else { return false }
        tokens -= cost
        return true
    }

    /// Takes `cost` tokens whether or not they are there (for work already done: a frame read).
    mutating func charge(_ cost: Double, now: NIODeadline) {
        guard !isUnlimited else { return }
        refill(now: now)
        tokens -= cost
    }

    /// Whether at least `amount` tokens are there now (`refill` first for an up-to-date answer).
    func holds(_ amount: Double) -> Bool { isUnlimited || tokens >= amount }

    /// How long until `amount` tokens (at most `burst`) are there, from the last update; zero when
    /// they are there already.
    func timeUntil(holding amount: Double) -> TimeAmount {
        guard !isUnlimited else { return .zero }
        let missing = min(amount, burst) - tokens
        guard missing > 0 else { return .zero }
        return .nanoseconds(Int64((missing / rate * 1e9).rounded(.up)))
    }

    /// Full at `now`: a bucket in this state holds nothing worth remembering.
    func isFull(now: NIODeadline) -> Bool {
        var copy = self
        copy.refill(now: now)
        return copy.isUnlimited || copy.tokens >= copy.burst
    }
}
