import NIOCore
import NIOPosix
import PTPProtocol
import Synchronization

/// TCP simultaneous open from the punching port: dials the peer's announced address again and
/// again, each dial a new socket bound to the same local port, while the listener of `links` also
/// accepts on that port, until a link to the peer is proven (either way) or the deadline passes.
///
/// Against a NAT that drops unsolicited SYNs the first crossing SYNs succeed; against one that
/// answers with RST (which deletes the sender's fresh mapping) only SYNs that cross in flight do,
/// so each refused dial is followed by another after `retryInterval`.
public struct SimultaneousOpen: Sendable {
    /// The local address every dial binds to: the wildcard address with the punching port.
    public var local: SocketAddress
    /// The peer's public address as the relay filled it in.
    public var peerAddress: SocketAddress
    public var peer: GUID
    /// How long to wait before the first dial (the responder's RTT hint), zero for at once.
    public var firstDialDelay: Duration = .zero
    /// Longest pause after a dial that failed (refused, reset, unreachable); each pause is drawn
    /// between a tenth of it and all of it. Behind RST routers both sides' dials fail after one
    /// round trip: with a fixed pause both would repeat with the same period, their phase locked,
    /// and SYNs that missed each other once would miss every time (measured in the NAT lab: 0 of
    /// 10 punches with a fixed 100 ms, each dial failing).
    public var retryInterval: Duration = .milliseconds(100)
    /// Longest a single dial may wait for the peer's answer (a SYN a NAT dropped is not resent
    /// before about 1 s).
    public var attemptTimeout: Duration = .seconds(1)

    public struct Outcome: Sendable {
        public var link: DirectLinks.Link?
        /// Dials started.
        public var attempts: Int
        /// Why the last dial failed, when one did.
        public var lastError: String?
    }

    public init(local: SocketAddress, peerAddress: SocketAddress, peer: GUID) {
        self.local = local
        self.peerAddress = peerAddress
        self.peer = peer
    }

    /// Dials until a link to `peer` is proven on `links` or `deadline` passes.
    public func run(links: DirectLinks, until deadline: ContinuousClock.Instant) async -> Outcome {
        let tally = DialTally()
        let dialer = Task {
            do {
                try await Task.sleep(for: firstDialDelay)
            } catch {
                return
            }
            while !Task.isCancelled {
                let remaining = deadline - ContinuousClock.now
                guard remaining > .zero else { return }
                tally.state.withLock { $0.attempts += 1 }
                do {
                    let timeout = min(attemptTimeout, remaining)
                    let channel = try await PunchSockets.clientBootstrap(
                        local: local, connectTimeout: TimeAmount(timeout)
                    ).connect(to: peerAddress) { channel in
                        channel.eventLoop.makeCompletedFuture { try PunchSockets.framed(channel) }
                    }
                    // The link outlives this dialer: it carries the messages that follow.
                    Task { await links.serve(channel, via: .dialed) }
                    let helloBy = min(deadline, ContinuousClock.now + Duration(DirectLinks.helloTimeout))
                    if await links.link(to: peer, until: helloBy) != nil { return }
                } catch {
                    tally.state.withLock { $0.lastError = String(describing: error) }
                    let pause = retryInterval * Double.random(in: 0.1...1)
                    try? await Task.sleep(for: min(pause, max(.zero, deadline - ContinuousClock.now)))
                }
            }
        }
        let link = await links.link(to: peer, until: deadline)
        dialer.cancel()
        let (attempts, lastError) = tally.state.withLock { ($0.attempts, $0.lastError) }
        return Outcome(link: link, attempts: attempts, lastError: lastError)
    }
}

/// Dials started and the last dial's error; written by the dialer task, read once it is cancelled.
private final class DialTally: Sendable {
    let state = Mutex((attempts: 0, lastError: String?.none))
}

extension Duration {
    /// Whole milliseconds, rounded down.
    public var wholeMilliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}
