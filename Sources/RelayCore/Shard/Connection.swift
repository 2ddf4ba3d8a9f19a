import NIOCore
import PTPProtocol

/// Who is waiting for a next hop's ACK: a pending message on some shard.
struct Waiter: Sendable {
    var shard: Int
    var token: UInt64
}

/// A message delivered on a connection and not yet ACKed by it.
struct AwaitingAck {
    var waiter: Waiter
    var recipients: [GUID]
    var deadline: NIODeadline
    /// Waiters of re-sent copies that were not delivered again.
    var more: [Waiter] = []
}

/// Message ids recently ACKed on a connection, for de-duplication: two generations of bounded size.
struct RecentIDs {
    private var current: Set<GUID> = []
    private var previous: Set<GUID> = []
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func contains(_ id: GUID) -> Bool { current.contains(id) || previous.contains(id) }

    mutating func insert(_ id: GUID) {
        if current.count >= capacity {
            swap(&current, &previous)
            current.removeAll(keepingCapacity: true)
        }
        current.insert(id)
    }
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
    /// The peer's IP as the relay observed it (CONNECT rendezvous), and its port.
    let observedIP: String?
    let observedPort: Int?
    var phase: Phase = .awaitingHello
    var tag: SenderTag?
    var location: NodeLocation?
    var out: ByteBuffer
    var isDirty = false
    var awaiting: [GUID: AwaitingAck] = [:]
    var recentlyAcked = RecentIDs(capacity: 4096)
    var spoofStrikes = 0
    var handshakeTimeout: Scheduled<Void>?

    init(id: UInt64, context: ChannelHandlerContext) {
        self.id = id
        self.context = context
        let remote = context.channel.remoteAddress
        self.observedIP = remote?.ipAddress
        self.observedPort = remote?.port
        self.out = context.channel.allocator.buffer(capacity: 4096)
    }

    var nodeID: GUID? { tag?.address.id }

    var logID: String {
        if let tag { return "\(id)/\(tag.address)" }
        return "\(id)"
    }
}
