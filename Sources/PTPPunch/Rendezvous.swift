import Synchronization

/// Values published under a key, and tasks waiting, each until its own deadline, for the first
/// value of a key. The direct links use it for "a link to this peer is proven" and "this message
/// was ACKed"; every wait ends by its deadline, by cancellation, or with the value.
public final class Rendezvous<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct State {
        /// The first value published per key (owned by `publish` and `remove`).
        var values: [Key: Value] = [:]
        /// Suspended waiters per key, by waiter number.
        var waiters: [Key: [Int: CheckedContinuation<Value?, Never>]] = [:]
        /// Waiters whose deadline or cancellation came before they suspended.
        var expired: Set<Int> = []
        var lastWaiter = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Stores `value` under `key` unless a value is there already, and wakes every waiter of the
    /// key. Returns whether this was the first value.
    @discardableResult
    public func publish(_ value: Value, for key: Key) -> Bool {
        let woken: [CheckedContinuation<Value?, Never>]? = state.withLock { state in
            guard state.values[key] == nil else { return nil }
            state.values[key] = value
            return state.waiters.removeValue(forKey: key).map { Array($0.values) } ?? []
        }
        for waiter in woken ?? [] { waiter.resume(returning: value) }
        return woken != nil
    }

    public func value(for key: Key) -> Value? {
        state.withLock { $0.values[key] }
    }

    /// Forgets the value under `key` when `matches` says it is the one to forget.
    public func remove(_ key: Key, where matches: (Value) -> Bool = { _ in true }) {
        state.withLock { state in
            if let value = state.values[key], matches(value) { state.values[key] = nil }
        }
    }

    /// The value under `key`, waiting for one until `deadline`; nil when none came by then or the
    /// task was cancelled.
    public func wait(for key: Key, until deadline: ContinuousClock.Instant) async -> Value? {
        if let value = value(for: key) { return value }
        let waiter = state.withLock { state in
            state.lastWaiter += 1
            return state.lastWaiter
        }
        let timer = Task {
            do {
                try await Task.sleep(until: deadline, clock: .continuous)
                self.expire(waiter, of: key)
            } catch {
                // Cancelled: the wait ended another way.
            }
        }
        defer { timer.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready: Value?? = state.withLock { state in
                    if let value = state.values[key] { return .some(value) }
                    if state.expired.remove(waiter) != nil { return .some(nil) }
                    state.waiters[key, default: [:]][waiter] = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            self.expire(waiter, of: key)
        }
    }

    private func expire(_ waiter: Int, of key: Key) {
        let continuation: CheckedContinuation<Value?, Never>? = state.withLock { state in
            if let continuation = state.waiters[key]?.removeValue(forKey: waiter) {
                if state.waiters[key]?.isEmpty == true { state.waiters[key] = nil }
                return continuation
            }
            state.expired.insert(waiter)
            return nil
        }
        continuation?.resume(returning: nil)
    }
}
