import NIOCore
import PTPProtocol
import PTPPunch

/// One connection to the relay as the client sees it: frames in, frames out, the handshake.
struct RelaySession {
    let identity: SenderTag
    /// Every valid frame from the relay, in order; ends with `ClientError.connectionLost`. Read
    /// either through `next()` or, by one task at a time, directly.
    let frames: AsyncThrowingStream<InboundFrame, any Error>
    private var iterator: AsyncThrowingStream<InboundFrame, any Error>.AsyncIterator
    /// Writes frames to the relay from any task.
    let writer: RelayWriter
    /// This end of the connection (the punching port when the link was made from one).
    let localAddress: SocketAddress?
    /// The relay's own id: `sender_id` of its first ROUTING, known once `handshake()` returned.
    private(set) var relayID: GUID?
    /// Told when `handshake()` returned (the link's handshake deadline stops counting).
    private let handshakeProgress: HandshakeProgress

    init(
        identity: SenderTag, frames: AsyncThrowingStream<InboundFrame, any Error>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        localAddress: SocketAddress?, handshake: HandshakeProgress = HandshakeProgress()
    ) {
        self.handshakeProgress = handshake
        self.identity = identity
        self.frames = frames
        self.iterator = frames.makeAsyncIterator()
        self.writer = RelayWriter(outbound: outbound)
        self.localAddress = localAddress
    }

    func send(_ frame: ByteBuffer) async throws {
        try await writer.send(frame)
    }

    /// The next valid frame from the relay (keepalives are consumed by the decoder; frames that
    /// are not valid messages are reported on stderr and skipped).
    mutating func next() async throws -> InboundFrame {
        do {
            guard let frame = try await iterator.next() else { throw ClientError.connectionLost("closed by the relay") }
            return frame
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError.connectionLost(String(describing: error))
        }
    }

    /// Sends HELLO and returns the relay's first ROUTING once it arrived: the connection is bound to
    /// this node's id. A NACK before that is the relay refusing the HELLO.
    @discardableResult
    mutating func handshake() async throws -> InboundFrame {
        try await send(ClientFrames.hello(from: identity))
        while true {
            let frame = try await next()
            switch frame.verb {
            case .routing:
                relayID = frame.sender
                handshakeProgress.markDone()
                return frame
            case .nack: throw ClientError.refused(verb: "HELLO", reason: frame.reason, stored: frame.stored)
            default: continue
            }
        }
    }
}

/// The writing half of the relay connection; it can be used from any task.
struct RelayWriter: Sendable {
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>

    func send(_ frame: ByteBuffer) async throws {
        do {
            try await outbound.write(frame)
        } catch {
            throw ClientError.connectionLost("cannot write: \(error)")
        }
    }
}

extension AsyncThrowingStream where Element == InboundFrame {
    /// Hands every frame from the relay to `frame`, then why the connection ended to `lost`: the
    /// relay-reading task of the punching commands.
    func forward(frame: (InboundFrame) -> Void, lost: (String) -> Void) async {
        do {
            for try await item in self { frame(item) }
            lost("closed by the relay")
        } catch {
            lost(String(describing: error))
        }
    }
}
