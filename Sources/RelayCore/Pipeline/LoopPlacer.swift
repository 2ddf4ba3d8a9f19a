import Atomics
import Logging
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Where `AcceptGate` puts each connection it admits: on the loop that accepted it, or, while the
/// relay may run on fewer CPUs than it has loops, on one of the first loops (`LoopPlacement`
/// says why and which). A part of the gate, not a handler of its own: a second handler on the
/// listening channel cost a handler hop and NIO's boxing of the accepted channel again
/// (`NIOAny` of a `Channel` casts it to each of its fast-path types: about 11,000 instructions a
/// handshake in all, `instructions-hs.sh`).
///
/// NIO sets an accepted channel's loop when it accepts it and cannot change it, so a connection
/// is moved as a socket: its descriptor is copied (`dup`), NIO's channel for it closed before
/// anything of it ran (closing one copy leaves the connection open), and the copy becomes a new
/// channel on the chosen loop (`ClientBootstrap.withConnectedSocket`) with the same pipeline as an
/// accepted one (`initialize`). Nothing has been read from it or written to it yet: the client
/// sees the relay's HELLO from the new channel, and what it sent is in the socket for it to read.
/// One count per move (`connections.moved_at_accept`); an info line when moving starts and stops.
///
/// The usable CPUs are read once per accept cycle (one `sched_getaffinity`).
final class LoopPlacer {
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

    /// Moves `child` to another loop if the placement says so and returns true: its place in the
    /// accept ledger (`countedAs`) is then given back when the channel that serves it closes (or
    /// at once if it cannot start there). False: it stays where it was accepted, and the caller
    /// passes it on.
    func moved(_ child: Channel, limiter: AcceptLimiter, countedAs: AddressKey?) -> Bool {
        let placement = currentPlacement()
        guard placement.isNarrowed, let accepting = shardIndex(of: child.eventLoop) else { return false }
        let target = shards[placement.loop(forAcceptedOn: accepting)]
        return target.eventLoop !== child.eventLoop && move(child, to: target, release: { limiter.release(countedAs) })
    }

    /// The listener's accept cycle ended: the next one reads the usable CPUs again.
    func cycleEnded() {
        cyclePlacement = nil
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
    private func move(_ child: Channel, to target: RelayShard, release: @escaping @Sendable () -> Void) -> Bool {
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
                    channel.closeFuture.whenComplete { _ in release() }
                case .failure(let error):
                    // NIO closed the copy (its initializer or registration failed).
                    release()
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
