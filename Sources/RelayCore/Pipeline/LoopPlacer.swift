import Atomics
import Logging
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// A connection the accept limits let in (`AcceptGate`), with its place in the limits' ledger:
/// given back when the channel that serves it closes, whichever loop that channel is on.
struct AdmittedConnection {
    let channel: Channel
    let limiter: AcceptLimiter
    let countedAs: AddressKey?

    func release(whenClosed served: Channel) {
        let limiter = self.limiter
        let key = countedAs
        served.closeFuture.whenComplete { _ in limiter.release(key) }
    }

    func release() { limiter.release(countedAs) }
}

/// The second handler of every listening channel, after `AcceptGate`: hands each admitted
/// connection on to be served on its own loop, or, while the relay may run on fewer CPUs than it
/// has loops, moves it to one of the first loops (`LoopPlacement` says why and which).
///
/// NIO sets an accepted channel's loop when it accepts it and cannot change it, so a connection
/// is moved as a socket: its descriptor is copied (`dup`), NIO's channel for it closed before
/// anything of it ran (closing one copy leaves the connection open), and the copy becomes a new
/// channel on the chosen loop (`ClientBootstrap.withConnectedSocket`) with the same pipeline as an
/// accepted one (`initialize`). Nothing has been read from it or written to it yet: the client
/// sees the relay's HELLO from the new channel, and what it sent is in the socket for it to read.
/// One count per move (`connections.moved_at_accept`); an info line when moving starts and stops.
///
/// The usable CPUs are read once per accept cycle (one `sched_getaffinity`): about 1 % of a
/// handshake's instructions when every connection comes in its own cycle.
final class LoopPlacer: ChannelInboundHandler {
    typealias InboundIn = AdmittedConnection
    typealias InboundOut = Channel

    /// Builds an accepted connection's pipeline for the shard that serves it.
    typealias Initialize = @Sendable (Channel, RelayShard) throws -> Void

    // Set once.
    private let shards: [RelayShard]
    /// The shard whose loop the listening channel runs on (counters and logs).
    private let owner: RelayShard
    private let initialize: Initialize
    /// The placement last logged, shared by every listener: one line per change, not one per
    /// listener.
    private let notice: PlacementNotice

    // Owned by the listening channel's event loop.
    /// The placement for this accept cycle, read at its first connection.
    private var cyclePlacement: LoopPlacement?

    init(shards: [RelayShard], owner: RelayShard, notice: PlacementNotice, initialize: @escaping Initialize) {
        self.shards = shards
        self.owner = owner
        self.notice = notice
        self.initialize = initialize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let admitted = unwrapInboundIn(data)
        let child = admitted.channel
        let placement = currentPlacement()
        if placement.isNarrowed, let accepting = shardIndex(of: child.eventLoop) {
            let target = shards[placement.loop(forAcceptedOn: accepting)]
            if target.eventLoop !== child.eventLoop, move(admitted, to: target) {
                return
            }
        }
        admitted.release(whenClosed: child)
        context.fireChannelRead(wrapInboundOut(child))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        cyclePlacement = nil
        context.fireChannelReadComplete()
    }

    private func currentPlacement() -> LoopPlacement {
        if let cyclePlacement { return cyclePlacement }
        let placement = LoopPlacement(loops: shards.count, usableCPUs: UsableCPUs.ofThisThread() ?? shards.count)
        cyclePlacement = placement
        if let line = notice.change(to: placement) {
            owner.logger.info(
                "\(line)", metadata: ["usable_cpus": "\(placement.usableCPUs)", "event_loops": "\(placement.loops)"])
        }
        return placement
    }

    private func shardIndex(of loop: EventLoop) -> Int? {
        if loop === owner.eventLoop { return owner.index }
        return shards.firstIndex { $0.eventLoop === loop }
    }

    /// Moves the connection to `target`'s loop; false (and it stays where it is) when its socket
    /// cannot be copied.
    private func move(_ admitted: AdmittedConnection, to target: RelayShard) -> Bool {
        let child = admitted.channel
        guard let descriptor = ChannelSocket.descriptor(of: child) else {
            if notice.noteUnreadableDescriptor() {
                owner.logger.warning("cannot move accepted connections between event loops: NIO's channel does not show its socket")
            }
            return false
        }
        let copy = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else {
            owner.logger.warning("cannot move an accepted connection: dup failed", metadata: ["error": "\(String(cString: strerror(errno)))"])
            return false
        }
        // NIO closes its descriptor; the copy keeps the connection open.
        child.close(promise: nil)
        owner.counters.connectionsMovedAtAccept += 1
        owner.logger.debug("connection moved to another event loop", metadata: ["to_loop": "\(target.index)"])
        let initialize = self.initialize
        let logger = owner.logger
        ClientBootstrap(group: target.eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try initialize(channel, target) }
            }
            .withConnectedSocket(copy)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    admitted.release(whenClosed: channel)
                case .failure(let error):
                    // NIO closed the copy (its initializer or registration failed).
                    admitted.release()
                    logger.warning("a connection moved to another event loop could not start there", metadata: ["error": "\(error)"])
                }
            }
        return true
    }
}

/// What the listeners' placers last logged (`LoopPlacer`), shared by all of them.
final class PlacementNotice: Sendable {
    /// The usable CPUs of the placement last logged; 0 while every loop takes its own.
    private let narrowedTo = ManagedAtomic<Int>(0)
    private let descriptorWarned = ManagedAtomic<Bool>(false)

    /// The line to log when `placement` differs from the one last logged, else nil.
    func change(to placement: LoopPlacement) -> String? {
        let now = placement.isNarrowed ? placement.usableCPUs : 0
        let before = narrowedTo.exchange(now, ordering: .relaxed)
        guard before != now else { return nil }
        return now > 0
            ? "fewer usable CPUs than event loops: new connections go to the first \(now == 1 ? "loop" : "\(now) loops")"
            : "a CPU for every event loop again: each loop takes its own new connections"
    }

    /// True the first time only.
    func noteUnreadableDescriptor() -> Bool {
        !descriptorWarned.exchange(true, ordering: .relaxed)
    }
}
