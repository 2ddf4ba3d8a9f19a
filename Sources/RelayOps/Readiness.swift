import NIOConcurrencyHelpers

/// Where the relay is in its life: `/readyz` answers 200 only while `serving`.
public final class Readiness: Sendable {
    public enum State: String, Sendable {
        case starting, serving, reloading, stopping
    }

    private let state = NIOLockedValueBox(State.starting)

    public init() {}

    public var current: State { state.withLockedValue { $0 } }

    public func set(_ new: State) { state.withLockedValue { $0 = new } }

    /// Ready to take traffic: serving, or reloading (a reload drops nothing).
    public var isReady: Bool {
        switch current {
        case .serving, .reloading: true
        case .starting, .stopping: false
        }
    }
}
