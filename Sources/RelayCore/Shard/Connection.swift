import NIOCore
import PTPProtocol
import RelayMesh
import RelayStore

/// A message delivered on a connection and not yet ACKed by it.
struct AwaitingAck {
    /// Who hears the answer.
    var upstream: Upstream
    /// The recipients behind this connection.
    var recipients: Recipients
    /// The originating node, kept with the message if it is stored.
    var sender: GUID
    var deadline: NIODeadline
    /// Where the frame as delivered is: in `chunk`, at `offset`. Kept to store the message when no
    /// ACK comes, without a copy per message.
    var chunk: OutputChunk
    var offset: Int32
    var length: Int32
    /// Upstreams of re-sent copies that were not delivered again.
    var more: [Upstream]? = nil
    /// Other narrowed copies of the same message for this peer relay (their recipients are not
    /// all behind this one), held until this one is answered: a peer's ACK names only the
    /// message, so one copy of a message is in flight per connection.
    var held: [HeldCopy]? = nil
    private var isClaimed = false
    /// Its place in the order the connection's deliveries were made (set by `AwaitingAcks` when
    /// it is added; 0 until then): deliveries whose ACK is late expire in this order.
    var order: UInt64 = 0

    init(_ delivery: Delivery, deadline: NIODeadline, chunk: OutputChunk, offset: Int, length: Int) {
        self.upstream = delivery.upstream
        self.recipients = delivery.recipients
        self.sender = delivery.sender
        self.deadline = deadline
        self.chunk = chunk
        self.offset = Int32(truncatingIfNeeded: offset)
        self.length = Int32(truncatingIfNeeded: length)
    }

    /// The delivered frame's bytes, from the flushed chunk or from the output still pending.
    func frame(pending: ByteBuffer) -> ByteBuffer? {
        let source = chunk.bytes ?? pending
        return source.getSlice(at: source.readerIndex + Int(offset), length: Int(length))
    }

    /// The first claim of a new entry makes it the delivery (`isNew`); later claims are repeats
    /// that wait on it. One dictionary access either way.
    mutating func claim(for upstream: Upstream, isNew: inout Bool) {
        if isClaimed {
            more = (more ?? []) + [upstream]
        } else {
            isClaimed = true
            isNew = true
        }
    }
}

/// A copy of a message waiting for the answer to another copy on the same peer connection.
struct HeldCopy {
    var delivery: Delivery
    var frame: ByteBuffer
}

/// The output a connection gathered during one tick; `bytes` is set when it is flushed (and
/// from then on never changes), so deliveries can point into it instead of copying their frames.
final class OutputChunk {
    var bytes: ByteBuffer?
}

/// One accepted connection; lives on its shard's event loop only.
final class Connection {
    enum Phase {
        case awaitingHello
        case bound
        case closing
    }

    let id: UInt64
    let context: ChannelHandlerContext
    /// The peer's IP as the relay observed it (CONNECT rendezvous), and its port: read from the
    /// channel (NIO keeps the address it accepted), not copied into every connection.
    var observedIP: String? { context.channel.remoteAddress?.ipAddress }
    var observedPort: Int? { context.channel.remoteAddress?.port }
    var phase: Phase = .awaitingHello
    var tag: SenderTag?
    var location: NodeLocation?
    /// Frames written since the last flush. Empty (shared, no storage of its own) while idle: an
    /// idle connection holds no output buffer; the first write after a flush reserves one.
    var out: ByteBuffer {
        get { pendingOutput }
        _modify {
            if pendingOutput.capacity == 0 { startOutput() }
            yield &pendingOutput
        }
    }
    private var pendingOutput: ByteBuffer
    /// What a flush's first write reserves: twice what the last flush wrote. A busy connection
    /// writes about as much each tick, and a buffer grown by doubling from 4 KiB was copied
    /// several times a tick (realloc's copies were 5 % of the instructions per relayed message:
    /// Benchmarks/instructions.sh). Nothing is held between flushes either way.
    private var outputReserve = Connection.outputReserveRange.lowerBound
    static let outputReserveRange = 4096...(256 * 1024)
    /// Made on the first delivery after a flush: a flush with no delivery in it allocates none.
    /// A busy connection keeps its last flushed chunk here (`bytes` set) for its next output
    /// (`flushed(_:keep:)`, `startOutput`).
    private(set) var outChunk: OutputChunk?

    /// The chunk this flush's deliveries point into.
    var currentChunk: OutputChunk {
        if let outChunk, outChunk.bytes == nil { return outChunk }
        let chunk = OutputChunk()
        outChunk = chunk
        return chunk
    }

    /// The largest flushed output a busy connection keeps for its next one.
    static let keptOutputLimit = 16 * 1024

    /// The first write after a flush. A busy connection writing a few frames a tick (a pair of
    /// clients taking turns) allocated an output buffer, and a chunk record with each delivery,
    /// at every flush: three objects a message. So it keeps its last flushed chunk, and when
    /// nothing else references it any more (the deliveries in it were answered, NIO wrote it)
    /// takes its buffer and the chunk again; otherwise a new buffer of `outputReserve`.
    private func startOutput() {
        if outChunk?.bytes != nil {
            if isKnownUniquelyReferenced(&outChunk), let chunk = outChunk, var reused = chunk.bytes {
                chunk.bytes = nil
                reused.clear()
                reused.reserveCapacity(outputReserve)
                pendingOutput = reused
                return
            }
            outChunk = nil
        }
        pendingOutput.reserveCapacity(outputReserve)
    }

    /// After a flush of `output`: the chunk of its deliveries gets its bytes. A busy connection
    /// (`keep`) keeps that chunk, or one made to hold the buffer, for its next output
    /// (`startOutput`); others keep nothing between flushes.
    func flushed(_ output: ByteBuffer, keep: Bool) {
        guard keep, output.capacity <= Self.keptOutputLimit else {
            outChunk?.bytes = output
            outChunk = nil
            return
        }
        let holder = outChunk ?? OutputChunk()
        holder.bytes = output
        outChunk = holder
    }
    var isDirty = false
    /// Whether its flushes write to the socket or through NIO.
    var directWrites: DirectSocketWrites
    var awaiting = AwaitingAcks()
    /// The last ACK it sent that was parsed in full: the next ones, the same bytes but for the
    /// acknowledged id, are read without a parse (`RepeatedAck`). Dropped when it goes quiet.
    var lastAck: RepeatedAck? {
        get { heldAck.object }
        set { heldAck.object = newValue }
    }
    private var heldAck = HeldByHand<RepeatedAck>()

    /// `body` with `lastAck`, lent without reference counting; nil when there is none. `body` must
    /// not set `lastAck`.
    @inline(__always)
    func withLastAck<Result>(_ body: (RepeatedAck) -> Result?) -> Result? {
        heldAck.with(body)
    }
    /// The last MESSAGE it sent that was parsed in full and can stand for the next ones: the same
    /// bytes but for the ids, timestamp and text are read without a parse (`RepeatedMessage`).
    /// Dropped when it goes quiet.
    var lastMessage: RepeatedMessage? {
        get { heldMessage.object }
        set { heldMessage.object = newValue }
    }
    private var heldMessage = HeldByHand<RepeatedMessage>()

    /// `body` with `lastMessage`, lent without reference counting; nil when there is none. `body`
    /// must not set `lastMessage`.
    @inline(__always)
    func withLastMessage<Result>(_ body: (RepeatedMessage) -> Result?) -> Result? {
        heldMessage.with(body)
    }
    var spoofStrikes: Int {
        get { extras?.spoofStrikes ?? 0 }
        set { if newValue != 0 || extras != nil { withExtras.spoofStrikes = newValue } }
    }
    /// The bound node's id folded to one word, for `RecentDeliveries`; set by the HELLO.
    var recipientKey: UInt64 = 0
    /// The node id a verified TLS client certificate proved (PROFILE.md section 3); set before
    /// its first frame is read, never changed.
    var provenNodeID: GUID? {
        get { extras?.provenNodeID }
        set { if newValue != nil || extras != nil { withExtras.provenNodeID = newValue } }
    }
    /// Recipients behind this connection the store may hold messages for.
    var storedBacklog: StoredBacklog {
        get { extras?.storedBacklog ?? StoredBacklog() }
        _modify { yield &withExtras.storedBacklog }
    }
    /// The frame cap its connection handler reads as it splits the frames (set by the shard: the
    /// HELLO raises it, a reload changes it); nil where the pipeline has a fixed cap of its own.
    let frameCap: FrameSizeCap?
    /// `limits.connect_per_minute` for this node: unlimited until its first CONNECT, where the
    /// shard sets the rate in force (a full bucket, as at open).
    var connectBudget: TokenBucket {
        get { extras?.connectBudget ?? Extras.unlimitedBudget }
        _modify { yield &withExtras.connectBudget }
    }
    /// Stored messages read for it and not written yet: they go as its outbound buffer allows.
    var storedQueue: StoredQueue {
        get { extras?.storedQueue ?? StoredQueue() }
        _modify { yield &withExtras.storedQueue }
    }
    /// Set while its channel holds more than `limits.outbound_buffer_bytes` unwritten, until it
    /// drains below half of that (NIO's water marks): unicast for it is stored, floods to it are
    /// dropped (PROFILE.md section 10). On the shard's loop.
    var isOverSoftLimit = false
    /// Whether bytes came in / output was flushed since the shard's last idle sweep: a flag on the
    /// hot path, no clock read. The sweep turns them into `lastReadAt` / `lastWriteAt` (the time
    /// of the sweep that saw them: late by at most one sweep, never early), against which it
    /// checks `timeouts.idle` and `timeouts.keepalive`. On the shard's loop.
    var readSinceSweep = false
    var wroteSinceSweep = false
    var lastReadAt: NIODeadline
    var lastWriteAt: NIODeadline
    /// When its HELLO is due (`timeouts.handshake` in force when it was opened: a reload does
    /// not shorten the time of a connection already waiting): the idle sweep closes it if it has
    /// not said HELLO by then. Set once.
    let helloDeadline: NIODeadline

    // Its ROUTING view with `routing.to_clients: channels`; on the shard's loop.
    /// Nodes it exchanged messages with (bounded): they are in its view.
    var contacts: Set<GUID> {
        get { extras?.contacts ?? [] }
        _modify { yield &withExtras.contacts }
    }
    /// The contact noted last (most messages repeat it).
    var lastContact: GUID {
        get { extras?.lastContact ?? .zero }
        set { if newValue != .zero || extras != nil { withExtras.lastContact = newValue } }
    }
    /// Routes to send it with the next delta.
    var routingPending: [GUID: (tag: SenderTag, ttl: Int)] {
        get { extras?.routingPending ?? [:] }
        _modify { yield &withExtras.routingPending }
    }

    // The mesh (PROFILE.md section 9); all on the shard's loop.
    /// Set at open for a connection this relay dialed to a peer relay: the `mesh.peers` entry.
    var dialedPeer: String? {
        get { extras?.dialedPeer }
        set { if newValue != nil || extras != nil { withExtras.dialedPeer = newValue } }
    }
    /// The peering proof under way (a relay with `mesh.key`), until the first HELLO settles it.
    var meshHandshake: MeshHandshake? {
        get { extras?.meshHandshake }
        set { if newValue != nil || extras != nil { withExtras.meshHandshake = newValue } }
    }
    /// Set when the peer proved it is a relay of this mesh: the connection carries many nodes'
    /// traffic, exempt from the sender checks, and speaks relay-to-relay ROUTING.
    var peerRelay: GUID?
    /// Bad frames from a peer relay (malformed ROUTING and the like); too many close it.
    var peerStrikes: Int {
        get { extras?.peerStrikes ?? 0 }
        set { withExtras.peerStrikes = newValue }
    }
    var isPeer: Bool { peerRelay != nil }

    // The existing public client (PROFILE.md section 4a); all on the shard's loop.
    /// Set by the HELLO: the peer is the existing client, which never ACKs. A delivery written to
    /// its socket counts as delivered, and nodes are introduced to it before it needs their address.
    var isLegacy = false
    /// Nodes introduced to it with a HELLO under their id on this connection (once each).
    var introduced: Set<GUID> {
        get { extras?.introduced ?? [] }
        _modify { yield &withExtras.introduced }
    }
    /// Deliveries in `out` since the last flush: delivered once that flush's write completes.
    var unconfirmedWrites: [GUID] {
        get { extras?.unconfirmedWrites ?? [] }
        _modify { yield &withExtras.unconfirmedWrites }
    }

    /// What only some connections use (peer relays, the existing client, TLS client
    /// certificates, CONNECT, the store's backlog, the `channels` ROUTING view of a client that
    /// sent messages): made on the first write, so every other connection keeps one pointer instead
    /// of about 280 bytes (552 to 272 per connection). On the shard's loop.
    private final class Extras {
        static let unlimitedBudget = TokenBucket(rate: 0, burst: 0, now: .uptimeNanoseconds(0))

        var storedBacklog = StoredBacklog()
        var storedQueue = StoredQueue()
        var connectBudget = Extras.unlimitedBudget
        var spoofStrikes = 0
        var contacts: Set<GUID> = []
        var lastContact = GUID.zero
        var routingPending: [GUID: (tag: SenderTag, ttl: Int)] = [:]
        var provenNodeID: GUID?
        var dialedPeer: String?
        var meshHandshake: MeshHandshake?
        var peerStrikes = 0
        var introduced: Set<GUID> = []
        var unconfirmedWrites: [GUID] = []
    }
    private var extras: Extras?
    private var withExtras: Extras {
        if let extras { return extras }
        let made = Extras()
        extras = made
        return made
    }

    init(
        id: UInt64, context: ChannelHandlerContext, emptyOutput: ByteBuffer, now: NIODeadline, handshakeTimeout: TimeAmount,
        frameCap: FrameSizeCap? = nil, plaintext: Bool = true
    ) {
        self.directWrites = DirectSocketWrites(plaintext: plaintext)
        self.id = id
        self.context = context
        self.frameCap = frameCap
        self.lastReadAt = now
        self.lastWriteAt = now
        self.helloDeadline = now + handshakeTimeout
        self.pendingOutput = emptyOutput
    }

    /// Hands the output to a flush and goes back to the shared empty buffer.
    func takeOutput(leaving empty: ByteBuffer) -> ByteBuffer {
        let output = pendingOutput
        let range = Self.outputReserveRange
        // Twice the last flush: ticks vary, and one that outgrows its buffer copies all of it.
        outputReserve = min(max(2 * output.readableBytes, range.lowerBound), range.upperBound)
        pendingOutput = empty
        return output
    }

    var nodeID: GUID? { tag?.address.id }

    /// Registers a delivery just written at `offset` as awaiting this connection's ACK; false when
    /// the message is awaited already (its upstream then hears from that delivery). A method, so
    /// that the entry is made and claimed on `self` as it is: from the shard, the access to
    /// `awaiting` and the closure that makes the entry each retained the connection.
    @inline(__always)
    func registerAwaiting(_ messageID: GUID, _ delivery: Delivery, deadline: NIODeadline, offset: Int, length: Int) -> Bool {
        var isNew = false
        awaiting[messageID, default: AwaitingAck(delivery, deadline: deadline, chunk: currentChunk, offset: offset, length: length)]
            .claim(for: delivery.upstream, isNew: &isNew)
        return isNew
    }

    /// Gives back the storage of its per-connection tables that are empty (sized for the busy
    /// spell that filled them); called by the idle sweep for a connection that went quiet.
    func releaseIdleStorage() {
        awaiting.releaseStorageIfEmpty()
        if outChunk?.bytes != nil { outChunk = nil }
        lastAck = nil
        lastMessage = nil
        guard let extras else { return }
        if extras.routingPending.isEmpty && extras.routingPending.capacity > 0 { extras.routingPending = [:] }
        if extras.unconfirmedWrites.isEmpty && extras.unconfirmedWrites.capacity > 0 { extras.unconfirmedWrites = [] }
    }


    var logID: String {
        if let tag { return "\(id)/\(tag.address)" }
        return "\(id)"
    }
}

/// Recipients behind a connection that the store may hold messages for (a client: itself; a peer
/// relay: the nodes routed through it), and which of them are being read now. Owned by the shard's loop.
struct StoredBacklog {
    private var waiting: Set<GUID> = []
    private var reading: Set<GUID> = []
    /// Marked while a read was under way: the read may have missed the message (its commit came
    /// after the read), so the recipient stays waiting whatever the read found.
    private var markedDuringRead: Set<GUID> = []

    mutating func mark(_ recipient: GUID) {
        waiting.insert(recipient)
        if reading.contains(recipient) { markedDuringRead.insert(recipient) }
    }

    /// Recipients with messages waiting and no read under way.
    var due: [GUID] { waiting.isEmpty ? [] : Array(waiting.subtracting(reading)) }

    /// Starts a read for `recipient`; false when one is under way.
    mutating func beginRead(_ recipient: GUID) -> Bool {
        reading.insert(recipient).inserted
    }

    /// The read finished: `more` says whether the store still holds messages for it.
    mutating func endRead(_ recipient: GUID, more: Bool) {
        reading.remove(recipient)
        let marked = markedDuringRead.remove(recipient) != nil
        if more || marked { waiting.insert(recipient) } else { waiting.remove(recipient) }
        // A set keeps its storage when its last element goes: every client's HELLO reads the
        // store once, and an idle connection should not hold three sets' worth for it.
        if reading.isEmpty { reading = [] }
        if waiting.isEmpty { waiting = [] }
        if markedDuringRead.isEmpty { markedDuringRead = [] }
    }
}

/// Stored messages read from the store for a connection and not written to it yet (each already
/// counted in the shard's `StoredInFlight`, so a second read does not send it twice). Written while
/// the connection is under its outbound soft limit, the rest after its output went out: one read
/// of a large backlog never fills its buffer past the limit (PROFILE.md section 10). Owned by the
/// shard's loop.
struct StoredQueue {
    // An array read from `head` on: empty (no storage) for every connection without a backlog,
    // which is nearly all of them; freed once written.
    private var entries: [(message: StoredMessage, recipient: GUID)] = []
    private var head = 0
    /// A task to write more after a flush is scheduled.
    var continuationScheduled = false

    var isEmpty: Bool { head == entries.count }

    mutating func append(_ message: StoredMessage, for recipient: GUID) {
        entries.append((message, recipient))
    }

    mutating func popFirst() -> (message: StoredMessage, recipient: GUID)? {
        guard head < entries.count else { return nil }
        let first = entries[head]
        head += 1
        if head == entries.count {
            entries = []
            head = 0
        }
        return first
    }

    /// Empties the queue (the connection is gone): what it held.
    mutating func removeAll() -> [StoredMessage] {
        defer {
            entries = []
            head = 0
        }
        return entries[head...].map(\.message)
    }
}
