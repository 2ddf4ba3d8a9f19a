import NIOCore
import PTPProtocol

/// Work one shard hands to another. Commands travel in batches, one `execute` per batch.
enum ShardCommand: Sendable {
    /// Deliver the frame at `frame` of the batch's buffer to a connection and await its ACK.
    case deliver(connection: UInt64, frame: Range<Int>, Delivery)
    /// Send the frame to a connection; no ACK expected.
    case send(connection: UInt64, frame: Range<Int>)
    /// Send the frame to every bound connection of the shard except `except`; an existing client
    /// first gets `introducing` (the origin of a JOIN) introduced.
    case broadcast(frame: Range<Int>, except: UInt64?, introducing: SenderTag?)
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

/// The commands for one shard collected while handling a read, with the frames they refer to.
struct ShardBatch: Sendable {
    var frames: ByteBuffer
    var commands: [ShardCommand] = []

    /// `frameCapacity`, `commandCapacity`: what the batch is expected to hold (the last one's).
    init(frameCapacity: Int, commandCapacity: Int = 0) {
        frames = ByteBufferAllocator().buffer(capacity: frameCapacity)
        commands.reserveCapacity(commandCapacity)
    }

    var isEmpty: Bool { commands.isEmpty }

    /// Writes one frame with `body` and returns its range in `frames`.
    @inline(__always)
    mutating func appendFrame(_ body: (inout ByteBuffer) -> Void) -> Range<Int> {
        let start = frames.writerIndex
        body(&frames)
        return start..<frames.writerIndex
    }
}
