import Logging
import NIOCore
import PTPProtocol
import RelayConfig
import RelayMesh

/// The relay's state for one event loop: its connections, its replica of the node directory, the
/// messages it forwarded and awaits ACKs for, and its counters.
///
/// Everything here runs on `eventLoop` only, so none of it takes a lock. Shards talk to each other
/// through batched `ShardCommand`s, one `execute` per target shard per read burst.
final class RelayShard: @unchecked Sendable {
    // MARK: Set once, before serving

    let index: Int
    let eventLoop: EventLoop
    let context: RelayContext
    let ackTemplate: FrameTemplate
    let helloTemplate: FrameTemplate
    let emptyRoutingTemplate: FrameTemplate
    /// Recently ACKed deliveries of every shard (de-duplication; shared, locked inside).
    let recentDeliveries: RecentDeliveries
    /// The output buffer of every connection between flushes: one storage for all of them.
    let emptyOutput = ByteBufferAllocator().buffer(capacity: 0)
    /// Every shard of the relay, this one included, by index. Set once before serving.
    var shards: [RelayShard] = []
    /// Bytes a connection's channel holds unwritten (the hard outbound limit). A seam for unit
    /// tests, whose `EmbeddedChannel` never holds any. Set once, before serving.
    var bufferedBytes: (Connection) -> Int = { connection in
        (try? connection.context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }
    /// The smoothed round-trip time of a connection's TCP socket in whole milliseconds, from the
    /// kernel's TCP_INFO (the CONNECT round-trip hints), nil where the channel has no TCP socket.
    /// Read on the connection's loop, where the future is complete when returned. A seam for unit
    /// tests, whose `EmbeddedChannel` has no socket. Set once, before serving.
    var roundTripMillis: (Connection) -> EventLoopFuture<Int?> = RelayShard.kernelRoundTripMillis

    // MARK: Settings in force (replaced by `apply` on a reload; this loop only)

    private(set) var configuration: RelayConfiguration
    private(set) var ackTimeout: TimeAmount
    /// `mesh.key`: with it the relay proves itself to peers and accepts their proofs.
    private(set) var meshKey: MeshKey?
    /// The per-node read budget each connection's `NodeRateLimiter` asks for at its next `read()`.
    private(set) var nodeRates: NodeRates
    var logger: Logger

    // MARK: This loop only

    let connections = ConnectionTable()
    /// Replica of the node registry: where each node's connection is, and how it is announced.
    var directory = NodeDirectory()
    /// Messages sent to several next hops, awaiting all their answers.
    var pending = SplitForwards()
    /// Messages from the store out for delivery.
    var storedInFlight = StoredInFlight()
    /// Channel memberships seen in relayed floods (`routing.to_clients: channels`).
    var interest = InterestIndex()
    /// Node id to the connections here whose client exchanged messages with it.
    var contactWatchers: [GUID: Set<UInt64>] = [:]
    /// Connections with routes queued for their next ROUTING delta (`queueRoute`), by id: the
    /// delta visits these, not every connection of the shard at every interval.
    var routingPendingConnections: [UInt64] = []
    /// Commands for other shards, sent at the flush.
    var outbox = ShardOutbox()
    /// Connections written to since the last flush.
    var dirty: [Connection] = []
    /// A flush of everything written during this event loop tick is scheduled.
    var flushScheduled = false
    /// Whether a read cycle's output waits for the end of the tick.
    var flushTiming = FlushTiming()
    /// The time, read at most once per tick (ACK deadlines need no better).
    var clock = TickClock()
    var counters = RelayCounters()
    /// Reads inbound frames; its tape holds the frame being handled until the next read.
    var reader = MessageReader()
    var random = FastRandom()
    private var nextConnectionID: UInt64 = 0
    var timers: [RepeatedTask] = []

    init(index: Int, eventLoop: EventLoop, context: RelayContext) {
        self.index = index
        self.eventLoop = eventLoop
        self.context = context
        self.ackTemplate = context.ackTemplate
        self.helloTemplate = context.helloTemplate
        self.emptyRoutingTemplate = context.emptyRoutingTemplate
        self.recentDeliveries = context.recentDeliveries
        let configuration = context.configuration
        self.configuration = configuration
        self.ackTimeout = .fromSeconds(configuration.timeouts.ack)
        self.meshKey = configuration.mesh.key.flatMap { try? MeshKey($0) }
        self.nodeRates = NodeRates(configuration.limits)
        self.directory.recordsChanges = configuration.routing.clientView != .none
        var logger = context.logger
        logger[metadataKey: "loop"] = "\(index)"
        self.logger = logger
    }

    var relay: SenderTag { context.identity }
    /// Takes new settings (a reload); connections keep going, and the limits of PROFILE.md
    /// section 10 and the idle and keepalive timeouts apply to what open connections do next.
    func apply(_ new: RelayConfiguration) {
        let limitsChanged = new.limits != configuration.limits
        configuration = new
        ackTimeout = .fromSeconds(new.timeouts.ack)
        meshKey = new.mesh.key.flatMap { try? MeshKey($0) }
        nodeRates = NodeRates(new.limits)
        directory.recordsChanges = new.routing.clientView != .none
        if limitsChanged { applyLimitsToOpenConnections() }
        stopTimers()
        startTimers()
    }

    @inline(__always)
    func newMessageID() -> GUID { GUID.random(using: &random) }

    // MARK: Connections

    /// A new connection: accepted (the relay speaks first with its HELLO), or dialed to the peer
    /// relay `dialedPeer` (the accepting relay speaks first, PROFILE.md section 9).
    func open(_ channelContext: ChannelHandlerContext, dialedPeer: String? = nil, frameCap: FrameSizeCap? = nil, plaintext: Bool = true) -> Connection {
        nextConnectionID += 1
        let connection = Connection(
            id: UInt64(index) << NodeLocation.shardShift | nextConnectionID, context: channelContext, emptyOutput: emptyOutput, now: .now(),
            handshakeTimeout: .fromSeconds(configuration.timeouts.handshake), frameCap: frameCap, plaintext: plaintext)
        updateFrameCap(of: connection)
        connections[connection.id] = connection
        applyOutboundLimits(to: connection)
        counters.connectionsAccepted += 1
        logger.debug("connection opened", metadata: ["conn": "\(connection.id)", "peer": "\(connection.observedIP ?? "?")"])
        openMeshHandshake(connection, dialedPeer: dialedPeer)
        return connection
    }

    /// Closes the connection after what is buffered for it went out.
    func close(_ connection: Connection, reason: String) {
        guard connection.phase != .closing else { return }
        logger.debug("closing connection", metadata: ["conn": "\(connection.logID)", "reason": "\(reason)"])
        connection.phase = .closing
        flush(connection)
        connection.context.close(promise: nil)
    }

    /// The channel went inactive: forget the connection and fail what it had not ACKed.
    func closed(_ connection: Connection) {
        guard connections.removeValue(forKey: connection.id) != nil else { return }
        connection.phase = .closing
        counters.connectionsClosed += 1
        if let relay = connection.peerRelay, let location = connection.location {
            peerClosed(relay, at: location)
        } else if let tag = connection.tag, let location = connection.location {
            if connection.isLegacy { context.legacyClients.leave(tag.address.id, from: location) }
            if context.registry.unbind(tag.address.id, from: location) {
                context.mesh.localUnbound(tag.address.id)
                broadcastToShards(.nodeUnbound(tag.address.id, location, tag))
            }
        }
        forgetContacts(of: connection)
        releaseQueuedStored(of: connection)
        let awaiting = connection.awaiting
        connection.awaiting.removeAll()
        for (messageID, entry) in awaiting {
            failHop(entry, messageID: messageID, reason: .unreachable, on: connection, storable: true)
            releaseHeld(entry, on: connection)
        }
        logger.debug("connection closed", metadata: ["conn": "\(connection.logID)"])
        // What the close produced (the other shards' `nodeUnbound`, NACKs for what it had not
        // answered) goes with the rest of the tick: a burst of closes is one `execute` per other
        // shard, where a flush per close woke the other loop once per connection.
        scheduleFlush()
    }

    // MARK: Output

    /// Appends a frame to the connection's output; it goes out at the next flush.
    @inline(__always)
    func write(to connection: Connection, _ body: (inout ByteBuffer) -> Void) {
        guard connection.phase != .closing else { return }
        let before = connection.out.writerIndex
        body(&connection.out)
        counters.framesOut += 1
        counters.bytesOut += connection.out.writerIndex - before
        markDirty(connection)
    }

    @inline(__always)
    func writeBytes(to connection: Connection, _ bytes: ByteBuffer) {
        guard connection.phase != .closing else { return }
        var bytes = bytes
        counters.framesOut += 1
        counters.bytesOut += bytes.readableBytes
        connection.out.writeBuffer(&bytes)
        markDirty(connection)
    }

    @inline(__always)
    func markDirty(_ connection: Connection) {
        if !connection.isDirty {
            connection.isDirty = true
            dirty.append(connection)
        }
    }

    func flush(_ connection: Connection) {
        guard connection.out.readableBytes > 0 else { return }
        let chunk = connection.takeOutput(leaving: emptyOutput)
        connection.flushed(chunk, keep: connection.directWrites.isBusy)
        // The existing client never ACKs: what it was sent is delivered once it is written.
        let legacyWritten = connection.unconfirmedWrites
        if !legacyWritten.isEmpty { connection.unconfirmedWrites.removeAll() }
        switch connection.directWrites.send(chunk, on: connection.context.channel, onlyThroughNIO: !legacyWritten.isEmpty) {
        case .written:
            break
        case .throughNIO(let output, let tracked):
            guard tracked || !legacyWritten.isEmpty else {
                connection.context.writeAndFlush(NIOAny(output), promise: nil)
                break
            }
            let promise = eventLoop.makePromise(of: Void.self)
            promise.futureResult.assumeIsolated().whenComplete { [self] result in
                let failed = (try? result.get()) == nil
                if tracked { connection.directWrites.nioWriteCompleted(failed: failed) }
                if !failed && !legacyWritten.isEmpty { legacyWriteCompleted(connection, delivering: legacyWritten) }
            }
            connection.context.writeAndFlush(NIOAny(output), promise: promise)
        }
        connection.wroteSinceSweep = true
        if connection.isOverSoftLimit {
            checkHardLimit(connection)
        } else if !connection.storedQueue.isEmpty {
            continueStoredAfterFlush(connection)
        }
    }

    func flushDirty() {
        // Every piece of work ends with a flush: the next one reads the time anew.
        clock.invalidate()
        guard !dirty.isEmpty else { return }
        // By index over the list itself: a copy to iterate made `removeAll(keepingCapacity:)`
        // allocate a new buffer at every flush. A flush that closes a connection (`closed`) may
        // add connections to the list: this loop flushes them too.
        var index = 0
        while index < dirty.count {
            let connection = dirty[index]
            index += 1
            connection.isDirty = false
            flush(connection)
        }
        dirty.removeAll(keepingCapacity: true)
    }

    /// Everything a read burst produced: batches to other shards, then this shard's connections.
    func flushAll() {
        flushOutbox()
        flushDirty()
    }

    /// Flushes once per event loop tick, after every channel with data has been read: one
    /// `execute` per other shard and one write per connection for all of it.
    @inline(__always)
    func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            clock.invalidate()
            flushAll()
            flushTiming.tickEnded()
        }
    }

    /// A connection's read cycle ended: its output goes now or at the end of the tick
    /// (`FlushTiming`).
    @inline(__always)
    func readCycleEnded() {
        if flushTiming.readCycleEnded() {
            flushAll()
        } else {
            scheduleFlush()
        }
    }

    // MARK: Between shards

    /// Runs `command` on `shard`: at once when it is this one, else with the next batch.
    func enqueue(_ command: ShardCommand, to shard: Int) {
        if shard == index {
            run(command, from: nil)
            return
        }
        outbox.append(command, for: shard, shardCount: shards.count)
    }

    func broadcastToShards(_ command: ShardCommand) {
        for shard in shards.indices {
            enqueue(command, to: shard)
        }
    }

    @inline(__always)
    func flushOutbox() {
        // Most flushes have nothing for other shards.
        guard !outbox.isEmpty else { return }
        handOverBatches()
    }

    private func handOverBatches() {
        let shards = shards
        let source = index
        outbox.take { target, batch in
            let shard = shards[target]
            shard.eventLoop.execute {
                shard.receive(batch, from: source)
            }
        }
    }

    func receive(_ batch: ShardBatch, from source: Int) {
        clock.invalidate()
        counters.commandsFromOtherLoops &+= batch.compact.count &+ batch.others.count
        outbox.received(batch, from: source, shardCount: shards.count)
        batch.forEachInOrder(
            ahead: { command in
                // The de-duplication lookup of the delivery misses the cache, and the prefetch
                // `route` made for it was on the other shard's CPU.
                guard command.kind == .deliver else { return }
                recentDeliveries.prefetch(recipient: RecentDeliveries.key(command.recipient), command.messageID)
            },
            compact: { command in run(command, from: batch) },
            other: { command in run(command, from: batch) })
        // Before the flush, so that it goes back with this tick's batch for `source`.
        outbox.giveBack(batch, to: source, shardCount: shards.count)
        flushAll()
    }

    /// A command in the common form (`CompactCommand`).
    @inline(__always)
    func run(_ command: CompactCommand, from batch: ShardBatch) {
        switch command.kind {
        case .deliver:
            deliver(command.frame, of: batch, to: command.connection, command.delivery)
        case .ack:
            answer(.connection(shard: index, id: command.connection), messageID: command.messageID, .acked)
        }
    }

    /// Delivers a frame another shard wrote into its batch to a connection of this shard.
    @inline(__always)
    private func deliver(_ frame: BatchFrame, of batch: ShardBatch, to connectionID: UInt64, _ delivery: Delivery) {
        batch.withFrame(frame) { bytes in
            // The bytes themselves: not a slice (a buffer retained and released per frame), and
            // not the batch (captured, it was retained per frame).
            func body(_ out: inout ByteBuffer) { out.writeRawBytes(bytes) }
            // Lent by the table (no retain): a delivery writes, stores or defers; it closes nothing.
            guard connections.withConnection(connectionID, { deliverFrame(to: $0, delivery, body: body) }) != nil else {
                targetGone(delivery, frame: body)
                return
            }
        }
    }

    /// A command from another shard's batch, or for this shard itself (no batch: it has no frame).
    func run(_ command: ShardCommand, from batch: ShardBatch?) {
        switch command {
        case .deliver(let connectionID, let frame, let delivery):
            deliver(frame, of: batch!, to: connectionID, delivery)
        case .send(let connectionID, let frame):
            guard let connection = connections[connectionID] else { return }
            writeBytes(to: connection, batch!.slice(frame))
        case .broadcast(let frame, let except, let introducing):
            sendToLocal(batch!.slice(frame), except: except, introducing: introducing)
        case .introduce(let connectionID, let node):
            guard let connection = connections[connectionID], connection.phase == .bound else { return }
            introduceAsChannelMember(node, to: connection)
        case .answer(let upstream, let messageID, let outcome):
            answer(upstream, messageID: messageID, outcome)
        case .nodeBound(let id, let location, let tag):
            directory.bound(id, at: location, tag: tag)
        case .nodeUnbound(let id, let location, let tag):
            directory.unbound(id, from: location, tag: tag)
        case .storedBacklog(let connectionID, let recipient):
            connections[connectionID]?.storedBacklog.mark(recipient)
        case .remoteRoutes(let ids):
            remoteRoutesChanged(ids)
        case .membership(let changes):
            membershipChanged(changes)
        case .deliverConnect(let connectionID, let inFlight):
            deliverConnect(inFlight, to: connectionID)
        case .close(let connectionID, let reason):
            if let connection = connections[connectionID] {
                close(connection, reason: reason)
            }
        }
    }

    /// The next hop toward `id`, or nil when the relay has no route to it (then it is stored):
    /// its own connection here, else the peer relay the mesh routes it through.
    /// This shard's replicas first (no lock); the registry and the mesh router, under their
    /// locks, only for a node bound or routed an instant ago.
    @inline(__always)
    func nextHop(for id: GUID) -> NextHop? {
        if let location = directory[id] { return .client(location) }
        if let remote = directory.remote(id) { return .peer(remote.location, relay: remote.relay) }
        if let location = context.registry.lookup(id) { return .client(location) }
        if let (relay, location) = context.mesh.nextHop(for: id) { return .peer(location, relay: relay) }
        return nil
    }
}

/// `NIODeadline.now()` cached until the end of the current event loop tick.
struct TickClock {
    private var cached: NIODeadline?

    var now: NIODeadline {
        mutating get {
            if let cached { return cached }
            let now = NIODeadline.now()
            cached = now
            return now
        }
    }

    mutating func invalidate() { cached = nil }
}
