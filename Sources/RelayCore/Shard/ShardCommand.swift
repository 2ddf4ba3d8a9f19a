import NIOCore
import PTPProtocol

/// Work one shard hands to another. Commands travel in batches, one `execute` per batch.
enum ShardCommand: Sendable {
    /// Deliver the frame at `frame` of the batch to a connection and await its ACK.
    case deliver(connection: UInt64, frame: BatchFrame, Delivery)
    /// Send the frame to a connection; no ACK expected.
    case send(connection: UInt64, frame: BatchFrame)
    /// Send the frame to every bound connection of the shard except `except`; an existing client
    /// first gets `introducing` (the origin of a JOIN) introduced.
    case broadcast(frame: BatchFrame, except: UInt64?, introducing: SenderTag?)
    /// Introduce `node` (an existing client that just bound) to the existing client on `connection`
    /// as a member of its built-in channel.
    case introduce(connection: UInt64, node: SenderTag)
    /// A next hop answered for a message that came in on this shard.
    case answer(Upstream, messageID: GUID, HopOutcome)
    case nodeBound(GUID, NodeLocation, SenderTag)
    case nodeUnbound(GUID, NodeLocation, SenderTag)
    /// The store holds new messages for `recipient`, reached through this connection.
    case storedBacklog(connection: UInt64, recipient: GUID)
    /// The routes of these nodes through peer relays changed: the shard reads them from the router.
    case remoteRoutes([GUID])
    /// Channel memberships seen in a relayed JOIN, LEAVE or CHANNEL.
    case membership([MembershipChange])
    /// Write a CONNECT to a client of the shard, with that client's round-trip hint. Boxed
    /// (`indirect`): a CONNECT is rare, and unboxed it would make every command of every
    /// cross-shard delivery larger (161 bytes instead of 113).
    indirect case deliverConnect(connection: UInt64, ConnectInFlight)
    /// Close a connection (an id taken over by a newer one).
    case close(connection: UInt64, reason: String)
}

/// A unicast delivery or an ACK for another shard in the form nearly every one takes: one
/// recipient and a connection upstream, or an ACK for a connection. Plain values only, so that
/// appending one to a batch and reading it back copies bytes: a `ShardCommand` is copied, switched
/// over and destroyed through its value witnesses, and with its recipients list it is reference
/// counted too (about 190 instructions a message on `thr` with two loops and 46 % of the
/// messages crossing, callgrind).
struct CompactCommand {
    enum Kind: UInt8 {
        /// Deliver the frame to `connection` and await its ACK, as `ShardCommand.deliver` does.
        case deliver
        /// The next hop ACKed `messageID`, which came in on `connection`: ACK it there.
        case ack
    }

    var kind: Kind
    var connection: UInt64
    var messageID: GUID
    // The rest is a delivery's only.
    var frame = BatchFrame(chunk: 0, start: 0, count: 0)
    var upstreamShard: UInt32 = 0
    var upstreamConnection: UInt64 = 0
    var recipient: GUID = .zero
    var sender: GUID = .zero

    /// `delivery` as a compact command, when it has the common form.
    @inline(__always)
    static func deliver(to connection: UInt64, frame: BatchFrame, _ delivery: Delivery) -> CompactCommand? {
        guard let recipient = delivery.recipients.onlyOne, case .connection(let shard, let upstream) = delivery.upstream else {
            return nil
        }
        return CompactCommand(
            kind: .deliver, connection: connection, messageID: delivery.messageID, frame: frame, upstreamShard: UInt32(shard), upstreamConnection: upstream, recipient: recipient,
            sender: delivery.sender)
    }

    @inline(__always)
    static func ack(on connection: UInt64, _ messageID: GUID) -> CompactCommand {
        CompactCommand(kind: .ack, connection: connection, messageID: messageID)
    }

    /// The delivery a `.deliver` carries.
    var delivery: Delivery {
        Delivery(
            messageID: messageID, upstream: .connection(shard: Int(upstreamShard), id: upstreamConnection),
            recipients: Recipients(recipient), sender: sender)
    }
}

/// Where a frame lies in a batch: which of its buffers, and where in it.
struct BatchFrame: Equatable {
    var chunk: UInt32
    var start: UInt32
    var count: UInt32
}

/// The commands for one shard collected during one tick, with the frames they refer to.
///
/// Made by the sending shard, handed over whole with one `execute`, run by the receiving shard,
/// then emptied and sent back with that shard's next batch to be filled again (`ShardOutbox`): a
/// few objects per pair of shards live on, and their buffers keep the capacity the traffic needs.
/// The frames go into buffers of at most `chunkCapacity`, a new one when the last is nearly full,
/// so that no frame is copied again as the batch grows. (A new batch every tick grew one frame
/// buffer by doubling, a copy each time, and was freed by the other loop's thread: realloc's
/// copies alone were about 230 instructions a message on `thr` with two loops and 46 % of the
/// messages crossing, callgrind.)
///
/// Owned by one loop at a time: the sender's until its `execute`, then the receiver's until it
/// hands the batch back with an `execute` of its own.
final class ShardBatch: @unchecked Sendable {
    /// The size of a frame buffer: below malloc's mmap threshold, so that a new one is no system
    /// call.
    static let chunkCapacity = 64 * 1024
    /// A new frame goes into the next buffer when this one has less than this left. A frame
    /// larger than what is left grows the buffer (a copy): rare, frames are mostly far smaller.
    static let chunkReserve = 16 * 1024
    /// The frame buffers a batch keeps when it is emptied, of those it used: a steady load
    /// fills the same ones every tick instead of allocating them. (Not measurable alone: with
    /// only the first buffer kept, `thr` made 0.07-0.09 page faults a message, with four
    /// 0.07-0.08; the faults were glibc's trimming, which `ProcessHeap` ended.)
    static let keptChunks = 4
    /// A batch whose command lists grew beyond this is not kept for reuse: a burst's lists are
    /// not held for good.
    static let keptCommandCapacity = 1024

    /// The frames, in buffers of up to `chunkCapacity` (one larger frame aside); never empty.
    private(set) var chunks: [ByteBuffer]
    /// The buffer frames are written to.
    private var current = 0
    private(set) var compact: [CompactCommand] = []
    /// The other commands, each with the number of compact ones appended before it, so that
    /// `forEachInOrder` runs both kinds in the order they were appended.
    private(set) var others: [(compactBefore: Int, command: ShardCommand)] = []
    /// A batch of the receiving shard's that the sender ran and emptied, going back to be reused.
    var returning: ShardBatch?

    /// `frameCapacity`, `commandCapacity`: what the batch is expected to hold.
    init(frameCapacity: Int, commandCapacity: Int = 0) {
        chunks = [ByteBufferAllocator().buffer(capacity: min(frameCapacity, Self.chunkCapacity))]
        compact.reserveCapacity(commandCapacity)
    }

    var isEmpty: Bool { compact.isEmpty && others.isEmpty }

    /// The frame bytes the batch holds.
    var frameBytes: Int { chunks.reduce(0) { $0 + $1.readableBytes } }

    /// Writes one frame with `body` and returns where it is.
    @inline(__always)
    func appendFrame(_ body: (inout ByteBuffer) -> Void) -> BatchFrame {
        if chunks[current].writerIndex > Self.chunkCapacity - Self.chunkReserve {
            nextChunk()
        }
        let start = chunks[current].writerIndex
        body(&chunks[current])
        return BatchFrame(chunk: UInt32(current), start: UInt32(start), count: UInt32(chunks[current].writerIndex - start))
    }

    private func nextChunk() {
        current += 1
        if current == chunks.count {
            chunks.append(ByteBufferAllocator().buffer(capacity: Self.chunkCapacity))
        }
    }

    /// `body` with the bytes of a frame the batch holds.
    @inline(__always)
    func withFrame<Result>(_ frame: BatchFrame, _ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        chunks[Int(frame.chunk)].withUnsafeReadableBytes { bytes in
            body(UnsafeRawBufferPointer(rebasing: bytes[Int(frame.start)..<Int(frame.start + frame.count)]))
        }
    }

    /// A frame the batch holds, as a slice of its buffer.
    func slice(_ frame: BatchFrame) -> ByteBuffer {
        chunks[Int(frame.chunk)].getSlice(at: Int(frame.start), length: Int(frame.count))!
    }

    @inline(__always)
    func append(_ command: CompactCommand) {
        compact.append(command)
    }

    func append(_ command: ShardCommand) {
        others.append((compact.count, command))
    }

    /// How many compact commands ahead of the one running `forEachInOrder` shows to its `ahead`.
    static let lookahead = 8

    /// Every command in the order it was appended. Each compact command is first shown to `ahead`,
    /// `lookahead` compact commands before it runs (the first ones before any runs), so that the
    /// memory it will need can be asked for while the ones before it run.
    @inline(__always)
    func forEachInOrder(
        ahead: (CompactCommand) -> Void = { _ in }, compact runCompact: (CompactCommand) -> Void,
        other runOther: (ShardCommand) -> Void
    ) {
        compact.withUnsafeBufferPointer { compact in
            var shown = 0
            var next = 0
            func runNextCompact() {
                while shown < compact.count && shown <= next + Self.lookahead {
                    ahead(compact[shown])
                    shown += 1
                }
                runCompact(compact[next])
                next += 1
            }
            for index in others.indices {
                let before = others[index].compactBefore
                while next < before { runNextCompact() }
                runOther(others[index].command)
            }
            while next < compact.count { runNextCompact() }
        }
    }

    /// Empties the batch to be filled again, with the frame buffers it used (up to `keptChunks`).
    /// False when a burst grew its command lists beyond what is kept, or one frame a buffer.
    func reset() -> Bool {
        returning = nil
        guard chunks.allSatisfy({ $0.capacity <= Self.chunkCapacity }),
            compact.capacity <= Self.keptCommandCapacity, others.capacity <= Self.keptCommandCapacity
        else { return false }
        let used = current + 1
        let firstUsed = chunks[0].writerIndex
        chunks.removeSubrange(min(used, Self.keptChunks)...)
        for index in chunks.indices {
            // Unique unless a command kept a slice of the frames: then `clear` gives it new storage.
            chunks[index].clear()
        }
        if used == 1 && firstUsed < chunks[0].capacity / 8 {
            // Quiet since it grew: the buffer shrinks back to what it held.
            chunks[0] = ByteBufferAllocator().buffer(capacity: firstUsed)
        }
        current = 0
        compact.removeAll(keepingCapacity: true)
        others.removeAll(keepingCapacity: true)
        return true
    }
}
