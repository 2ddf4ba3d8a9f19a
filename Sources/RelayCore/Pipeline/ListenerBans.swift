import Logging
import NIOConcurrencyHelpers
import NIOCore

#if os(Linux)
import CSocketFilter
#endif

/// The relay's ban list in the kernel (`limits.ban_after_refusals`, `limits.ban_seconds`): an
/// address refused at accept that many times within a minute (`AcceptLedger` counts) has its SYNs
/// dropped at every listening socket, by a socket filter (`BanFilterProgram`), until its ban ends. What fail2ban
/// does with a firewall rule, without fail2ban: during a connection flood the flooding addresses
/// no longer fill the kernel's accept queue, so a legitimate new client's handshake gets a place.
///
/// Shared by every listener (each `AcceptGate` registers its listening channel). A change of the
/// list is installed on each listener on its own event loop; a listener installs the newest list
/// whatever order the changes reach it in. Bans end by a timer, on the loop of the listener that
/// made the last ban. Connections open before a ban are not touched, nor are connections from
/// addresses not banned: the filter looks at SYNs only.
final class ListenerBans: Sendable {
    private struct Listener {
        let channel: Channel
        /// The list version installed on it; 0: no filter.
        var installed: UInt64 = 0
    }

    private struct State {
        var bans: AddressBans
        /// The list to install and its version (bumped at every change).
        var program: BanFilterProgram
        var version: UInt64 = 0
        var listeners: [ObjectIdentifier: Listener] = [:]
        /// The timer that lifts the ban ending first.
        var expiry: (deadline: NIODeadline, task: Scheduled<Void>)?
    }

    private let state: NIOLockedValueBox<State>
    private let logger: Logger

    init(settings: BanSettings, logger: Logger) {
        self.state = NIOLockedValueBox(State(bans: AddressBans(settings: settings), program: BanFilterProgram(banning: [])))
        self.logger = logger
    }

    /// Addresses banned now.
    var bannedCount: Int { state.withLockedValue { $0.bans.banned.count } }

    /// Whether `key` is banned now (for tests and logs).
    func isBanned(_ key: AddressKey) -> Bool { state.withLockedValue { $0.bans.isBanned(key) } }

    var settings: BanSettings { state.withLockedValue { $0.bans.settings } }

    /// A listening socket that accepts TCP connections; on its loop, once it is active.
    func register(_ listener: Channel) {
        let hasBans = state.withLockedValue { state in
            state.listeners[ObjectIdentifier(listener)] = Listener(channel: listener)
            return !state.bans.banned.isEmpty
        }
        if hasBans { installNewest(on: listener) }
    }

    func unregister(_ listener: Channel) {
        state.withLockedValue { _ = $0.listeners.removeValue(forKey: ObjectIdentifier(listener)) }
    }

    /// Bans `key` (its refusals on a listener of `loop` reached the count): true when that is a
    /// new ban.
    func ban(_ key: AddressKey, on loop: EventLoop, now: NIODeadline = .now()) -> Bool {
        let (isNewBan, listeners) = state.withLockedValue { state -> (Bool, [Channel]) in
            guard state.bans.ban(key, now: now) else { return (false, []) }
            scheduleExpiry(&state, on: loop)
            return (true, Self.listChanged(&state))
        }
        publish(to: listeners)
        return isNewBan
    }

    /// A reload: new settings apply to the next refusal; `limits.ban_after_refusals: 0` lifts
    /// every ban.
    func update(_ settings: BanSettings) {
        let listeners = state.withLockedValue { state -> [Channel] in
            guard state.bans.update(settings) else { return [] }
            state.expiry?.task.cancel()
            state.expiry = nil
            return Self.listChanged(&state)
        }
        publish(to: listeners)
    }

    /// The list changed: a new program and version; returns the listeners to install it on.
    private static func listChanged(_ state: inout State) -> [Channel] {
        state.version += 1
        state.program = BanFilterProgram(banning: state.bans.banned.keys)
        return state.listeners.values.map(\.channel)
    }

    private func publish(to listeners: [Channel]) {
        for listener in listeners {
            listener.eventLoop.execute { [self] in installNewest(on: listener) }
        }
    }

    /// Keeps one timer, for the ban that ends first; when it fires the ended bans are lifted and
    /// the next one is timed.
    private func scheduleExpiry(_ state: inout State, on loop: EventLoop) {
        guard let next = state.bans.nextExpiry else { return }
        if let expiry = state.expiry, expiry.deadline <= next { return }
        state.expiry?.task.cancel()
        let task = loop.scheduleTask(deadline: next) { [self] in
            expireBans(on: loop)
        }
        state.expiry = (next, task)
    }

    private func expireBans(on loop: EventLoop, now: NIODeadline = .now()) {
        let listeners = state.withLockedValue { state -> [Channel] in
            state.expiry = nil
            let changed = state.bans.expire(now: now)
            scheduleExpiry(&state, on: loop)
            return changed ? Self.listChanged(&state) : []
        }
        publish(to: listeners)
    }

    /// Installs the newest list on `listener` unless it has it (on the listener's loop): the
    /// filter while any address is banned, none once the list is empty.
    private func installNewest(on listener: Channel) {
        listener.eventLoop.assertInEventLoop()
        let work = state.withLockedValue { state -> (program: BanFilterProgram, hadFilter: Bool, bannedCount: Int)? in
            let id = ObjectIdentifier(listener)
            guard let entry = state.listeners[id], entry.installed != state.version else { return nil }
            state.listeners[id]?.installed = state.version
            return (state.program, entry.installed != 0, state.bans.banned.count)
        }
        guard let work else { return }
        do {
            if work.bannedCount > 0 {
                try Self.attach(work.program, to: listener)
            } else if work.hadFilter {
                try Self.detach(from: listener)
            }
        } catch {
            logger.warning(
                "could not install the ban list on a listening socket",
                metadata: ["error": "\(error)", "listener": "\(listener.localAddress.map { "\($0)" } ?? "?")"])
        }
    }

    struct NotSupported: Error, CustomStringConvertible {
        var description: String { "socket filters are not supported here" }
    }

    #if os(Linux)
    /// `struct sock_fprog` for `unsafeSetSocketOption`, which sets it at once on the listener's
    /// loop (the instructions it points to are alive for that call).
    private struct FilterOption: @unchecked Sendable {
        var program: sock_fprog
    }

    private static func attach(_ program: BanFilterProgram, to listener: Channel) throws {
        guard let provider = listener as? SocketOptionProvider else { throw NotSupported() }
        var filters = program.instructions.map { sock_filter(code: $0.code, jt: $0.jumpIfTrue, jf: $0.jumpIfFalse, k: $0.k) }
        try filters.withUnsafeMutableBufferPointer { buffer in
            let option = FilterOption(program: sock_fprog(len: UInt16(buffer.count), filter: buffer.baseAddress))
            try outcome(of: provider.unsafeSetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_ATTACH_FILTER), value: option))
        }
    }

    private static func detach(from listener: Channel) throws {
        guard let provider = listener as? SocketOptionProvider else { throw NotSupported() }
        try outcome(of: provider.unsafeSetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_DETACH_FILTER), value: CInt(0)))
    }

    /// On the channel's loop NIO sets the option at once and the future is complete: its error,
    /// read without waiting (waiting on an event loop is not allowed).
    private static func outcome(of future: EventLoopFuture<Void>) throws {
        var failure: (any Error)?
        future.assumeIsolated().whenFailure { failure = $0 }
        if let failure { throw failure }
    }
    #else
    private static func attach(_ program: BanFilterProgram, to listener: Channel) throws { throw NotSupported() }
    private static func detach(from listener: Channel) throws { throw NotSupported() }
    #endif
}
