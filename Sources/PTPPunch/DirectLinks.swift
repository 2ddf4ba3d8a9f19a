import NIOCore
import NIOPosix
import PTPProtocol
import Synchronization

/// The direct TCP connections of one node on its punching port, dialed or accepted.
///
/// A connection becomes a link once both sides have said HELLO on it (each sends its own at once)
/// and the peer's HELLO names a node this side is punching with (`admit`); anything else is closed
/// after `helloTimeout`. On a link, a MESSAGE is handed to `onMessage` and ACKed over the link, an
/// ACK wakes whoever waits for it. Both sides of a simultaneous open may end up with two links (one
/// dialed, one accepted); the first proven per peer is the one `link(to:until:)` returns, and
/// messages are taken on every link.
public final class DirectLinks: Sendable {
    /// How a link came about.
    public enum Via: String, Sendable {
        case dialed
        case accepted
    }

    /// One proven link: the peer it speaks to and how to write to it.
    public struct Link: Sendable {
        public let id: Int
        public let peer: GUID
        public let via: Via
        let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>

        /// Writes `frame` to the peer.
        public func send(_ frame: ByteBuffer) async throws {
            try await outbound.write(frame)
        }
    }

    /// A connection that has not said HELLO by then is closed.
    public static let helloTimeout: TimeAmount = .seconds(2)

    public let identity: SenderTag
    /// Called for each MESSAGE received on a link (before its ACK goes out).
    private let onMessage: @Sendable (InboundFrame, Link) -> Void
    /// Called for a connection closed before it became a link, with why.
    private let onRefused: @Sendable (String) -> Void
    /// The first proven link per peer.
    private let proven = Rendezvous<GUID, Link>()
    /// ACKs received, by the id they answer.
    private let acks = Rendezvous<GUID, Bool>()
    /// Owned here: the peers a link is accepted from, the link counter, the listener.
    private struct State {
        var admitted: Set<GUID> = []
        var lastLinkID = 0
        var listener: Channel?
    }
    private let state = Mutex(State())

    public init(
        identity: SenderTag, onMessage: @escaping @Sendable (InboundFrame, Link) -> Void = { _, _ in },
        onRefused: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.identity = identity
        self.onMessage = onMessage
        self.onRefused = onRefused
    }

    /// Accept links from `peer` from now on.
    public func admit(_ peer: GUID) {
        state.withLock { _ = $0.admitted.insert(peer) }
    }

    public func isAdmitted(_ peer: GUID) -> Bool {
        state.withLock { $0.admitted.contains(peer) }
    }

    /// The first proven link to `peer`, waiting for one until `deadline`.
    public func link(to peer: GUID, until deadline: ContinuousClock.Instant) async -> Link? {
        await proven.wait(for: peer, until: deadline)
    }

    /// Whether an ACK of `messageID` arrived on a link by `deadline`.
    public func waitForAck(of messageID: GUID, until deadline: ContinuousClock.Instant) async -> Bool {
        await acks.wait(for: messageID, until: deadline) ?? false
    }

    /// Starts accepting on `local` (the punching port, with the reuse options) and returns once the
    /// listener is bound; it runs until `close()`.
    public func listen(on local: SocketAddress) async throws {
        let server = try await PunchSockets.serverBootstrap().bind(to: local) { child in
            child.eventLoop.makeCompletedFuture { try PunchSockets.framed(child) }
        }
        state.withLock { $0.listener = server.channel }
        Task {
            try? await server.executeThenClose { inbound in
                for try await child in inbound {
                    Task { await self.serve(child, via: .accepted) }
                }
            }
        }
    }

    /// Stops accepting; links already made stay open until their peer closes or the process ends.
    public func close() {
        let listener = state.withLock { state in
            defer { state.listener = nil }
            return state.listener
        }
        listener?.close(promise: nil)
    }

    /// Runs one direct connection until it closes: HELLO each way, then messages and ACKs.
    public func serve(_ channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, via: Via) async {
        let linkID = state.withLock { state in
            state.lastLinkID += 1
            return state.lastLinkID
        }
        let raw = channel.channel
        let remote = PunchSockets.connectAddress(raw.remoteAddress)
        // Closed unless the peer's HELLO arrives in time; cancelled once it has.
        let helloTimer = raw.eventLoop.scheduleTask(in: Self.helloTimeout) { raw.close(promise: nil) }
        var provenLink: Link?
        do {
            try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ClientFrames.hello(from: identity))
                var reader = MessageReader()
                for try await buffer in inbound {
                    let frame: InboundFrame
                    do {
                        frame = try InboundFrame.read(buffer, with: &reader)
                    } catch {
                        onRefused("a frame on a direct link from \(remote?.description ?? "?") is not a valid message: \(error)")
                        continue
                    }
                    guard let link = provenLink else {
                        guard frame.verb == .hello, let peer = frame.origin, isAdmitted(peer) else {
                            onRefused(
                                "closed a direct connection from \(remote?.description ?? "?"): its first frame is \(frame.verb) "
                                    + "from \(frame.origin.map { "\($0)" } ?? "no node"), not a HELLO from a node punching with this one")
                            return
                        }
                        helloTimer.cancel()
                        let link = Link(id: linkID, peer: peer, via: via, outbound: outbound)
                        provenLink = link
                        proven.publish(link, for: peer)
                        continue
                    }
                    switch frame.verb {
                    case .message:
                        onMessage(frame, link)
                        if let id = frame.messageID { try await outbound.write(ClientFrames.ack(id, from: identity)) }
                    case .ack:
                        if let id = frame.messageID { acks.publish(true, for: id) }
                    default:
                        continue
                    }
                }
            }
        } catch {
            // The peer closed or reset the link: nothing to answer.
        }
        helloTimer.cancel()
        if let provenLink {
            // A dead link must not be handed out again; a later one for the same peer may be.
            proven.remove(provenLink.peer) { $0.id == provenLink.id }
        }
    }
}
