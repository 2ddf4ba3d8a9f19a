import NIOCore
import NIOPosix
import PTPProtocol
import PTPPunch
import RelayTLS
import Synchronization

/// Opens the TCP connection (TLS over it with `tls`) to the relay and runs a conversation over it, with a keepalive every
/// `timing.keepalive` (20 s unless `--keepalive` says otherwise) and an optional overall time limit.
enum RelayLink {
    /// Frames from the relay above this size end the connection (PROFILE.md default limit).
    static let maxFrameBytes = 1 << 20

    /// Connects to `endpoint` and runs `conversation` on the session until it returns or throws.
    /// With `timeout`, gives up with `ClientError.timedOut(what)` when it has not returned by then.
    /// Whatever the conversation, gives up with `ClientError.timedOut` when the TLS handshake, HELLO
    /// and the relay's first ROUTING (`RelaySession.handshake()`) have not ended within
    /// `timing.handshakeLimit`: a relay that accepts and never answers does not hold a `listen` forever.
    /// With `localPort`, the connection is made from that local port (0: one the kernel picks) with
    /// SO_REUSEADDR and SO_REUSEPORT, so that a punch can use the same port (docs/nat-traversal.md).
    static func run<Result: Sendable>(
        endpoint: Endpoint,
        tls: ClientTLS? = nil,
        identity: SenderTag,
        timing: LinkTiming,
        localPort: Int? = nil,
        timeout: (limit: Duration, what: String)? = nil,
        conversation: @escaping @Sendable (inout RelaySession) async throws -> Result
    ) async throws -> Result {
        let channel = try await connect(to: endpoint, tls: tls, localPort: localPort)
        let localAddress = channel.channel.localAddress
        return try await channel.executeThenClose { inbound, outbound in
            // Frames are read by their own task, so that a conversation can wait for a frame and
            // for other things at once (`RelaySession.frames`).
            let (frames, sink) = AsyncThrowingStream<InboundFrame, any Error>.makeStream()
            return try await withThrowingTaskGroup(of: Outcome<Result>.self) { group in
                group.addTask {
                    var reader = MessageReader()
                    do {
                        for try await buffer in inbound {
                            do {
                                sink.yield(try InboundFrame.read(buffer, with: &reader))
                            } catch {
                                Console.diagnostic("ptpchat: ignoring a frame from the relay that is not a valid message: \(error)")
                            }
                        }
                        sink.finish(throwing: ClientError.connectionLost("closed by the relay"))
                    } catch {
                        sink.finish(throwing: ClientError.connectionLost(String(describing: error)))
                    }
                    return .readerEnded
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: timing.keepalive)
                        try await outbound.write(ClientFrames.keepalive)
                    }
                }
                let handshake = HandshakeProgress()
                group.addTask {
                    var session = RelaySession(
                        identity: identity, frames: frames, outbound: outbound, localAddress: localAddress, handshake: handshake)
                    return .finished(try await conversation(&session))
                }
                group.addTask {
                    try await Task.sleep(for: timing.handshakeLimit)
                    return handshake.isDone ? .handshakeInTime : .handshakeTimedOut
                }
                if let timeout {
                    group.addTask {
                        try await Task.sleep(for: timeout.limit)
                        return .timedOut
                    }
                }
                // The first task to end decides (the reader's end reaches the conversation as an
                // error from `frames`); the others are cancelled.
                defer { group.cancelAll() }
                while let outcome = try await group.next() {
                    switch outcome {
                    case .finished(let result): return result
                    case .timedOut: throw ClientError.timedOut(timeout?.what ?? "")
                    case .handshakeTimedOut:
                        throw ClientError.timedOut("after \(timing.handshakeLimit) waiting for the relay's answer to HELLO (--handshake-timeout)")
                    case .readerEnded, .handshakeInTime: continue
                    }
                }
                throw ClientError.connectionLost("no task left")
            }
        }
    }

    private enum Outcome<Result: Sendable>: Sendable {
        case finished(Result)
        case timedOut
        case readerEnded
        case handshakeTimedOut
        case handshakeInTime
    }

    private static func connect(to endpoint: Endpoint, tls: ClientTLS?, localPort: Int?) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        do {
            var bootstrap = PunchSockets.clientBootstrap(local: nil, connectTimeout: .seconds(10))
            var remote: SocketAddress?
            if let localPort {
                // A bound socket needs an address of its own family: resolve first.
                let address = try SocketAddress.makeAddressResolvingHost(endpoint.host, port: endpoint.port)
                bootstrap = PunchSockets.clientBootstrap(
                    local: try PunchSockets.wildcard(like: address, port: localPort), connectTimeout: .seconds(10))
                remote = address
            }
            let initializer: @Sendable (Channel) -> EventLoopFuture<NIOAsyncChannel<ByteBuffer, ByteBuffer>> = { channel in
                channel.eventLoop.makeCompletedFuture {
                    try tls?.addHandlers(
                        to: channel, host: endpoint.host,
                        observer: TLSHandshakeObserver(failed: { Console.diagnostic("TLS handshake failed: \($0)") }))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes)))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
            if let remote {
                return try await bootstrap.connect(to: remote, channelInitializer: initializer)
            }
            return try await bootstrap.connect(host: endpoint.host, port: endpoint.port, channelInitializer: initializer)
        } catch {
            throw ClientError.connectFailed(String(describing: error), endpoint: endpoint)
        }
    }
}

/// Whether `RelaySession.handshake()` has ended: set by the conversation's task, read by the
/// handshake deadline's.
final class HandshakeProgress: Sendable {
    private let done = Atomic<Bool>(false)

    var isDone: Bool { done.load(ordering: .acquiring) }

    func markDone() { done.store(true, ordering: .releasing) }
}
