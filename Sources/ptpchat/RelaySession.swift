import NIOCore
import PTPProtocol

/// One connection to the relay as the client sees it: frames in, frames out, the handshake.
struct RelaySession {
    let identity: SenderTag
    private var frames: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var reader = MessageReader()

    init(identity: SenderTag, inbound: NIOAsyncChannelInboundStream<ByteBuffer>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        self.identity = identity
        self.frames = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    func send(_ frame: ByteBuffer) async throws {
        do {
            try await outbound.write(frame)
        } catch {
            throw ClientError.connectionLost("cannot write: \(error)")
        }
    }

    /// The next valid frame from the relay (keepalives are consumed by the decoder; frames that
    /// are not valid messages are reported on stderr and skipped).
    mutating func next() async throws -> InboundFrame {
        while true {
            let frame: ByteBuffer?
            do {
                frame = try await frames.next()
            } catch {
                throw ClientError.connectionLost(String(describing: error))
            }
            guard let frame else { throw ClientError.connectionLost("closed by the relay") }
            do {
                return try InboundFrame.read(frame, with: &reader)
            } catch {
                Console.diagnostic("ptpchat: ignoring a frame from the relay that is not a valid message: \(error)")
            }
        }
    }

    /// Sends HELLO and returns once the relay's first ROUTING arrived: the connection is bound to
    /// this node's id. A NACK before that is the relay refusing the HELLO.
    mutating func handshake() async throws {
        try await send(ClientFrames.hello(from: identity))
        while true {
            let frame = try await next()
            switch frame.verb {
            case .routing: return
            case .nack: throw ClientError.refused(verb: "HELLO", reason: frame.reason, stored: frame.stored)
            default: continue
            }
        }
    }
}
