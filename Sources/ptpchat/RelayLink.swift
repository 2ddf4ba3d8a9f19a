import NIOCore
import NIOPosix
import PTPProtocol
import RelayTLS

/// Opens the TCP connection (TLS over it with `tls`) to the relay and runs a conversation over it, with a keepalive every
/// `keepalive` (20 s unless `--keepalive` says otherwise) and an optional overall time limit.
enum RelayLink {
    /// Frames from the relay above this size end the connection (PROFILE.md default limit).
    static let maxFrameBytes = 1 << 20

    /// Connects to `endpoint` and runs `conversation` on the session until it returns or throws.
    /// With `timeout`, gives up with `ClientError.timedOut(what)` when it has not returned by then.
    static func run<Result: Sendable>(
        endpoint: Endpoint,
        tls: ClientTLS? = nil,
        identity: SenderTag,
        keepalive: Duration,
        timeout: (limit: Duration, what: String)? = nil,
        conversation: @escaping @Sendable (inout RelaySession) async throws -> Result
    ) async throws -> Result {
        let channel = try await connect(to: endpoint, tls: tls)
        return try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Outcome<Result>.self) { group in
                group.addTask {
                    while true {
                        try await Task.sleep(for: keepalive)
                        try await outbound.write(ClientFrames.keepalive)
                    }
                }
                group.addTask {
                    var session = RelaySession(identity: identity, inbound: inbound, outbound: outbound)
                    return .finished(try await conversation(&session))
                }
                if let timeout {
                    group.addTask {
                        try await Task.sleep(for: timeout.limit)
                        return .timedOut
                    }
                }
                // The first task to end decides; the others are cancelled.
                defer { group.cancelAll() }
                switch try await group.next() {
                case .finished(let result)?: return result
                case .timedOut?: throw ClientError.timedOut(timeout?.what ?? "")
                case nil: throw ClientError.connectionLost("no task left")
                }
            }
        }
    }

    private enum Outcome<Result: Sendable>: Sendable {
        case finished(Result)
        case timedOut
    }

    private static func connect(to endpoint: Endpoint, tls: ClientTLS?) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        do {
            return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(10))
                .connect(host: endpoint.host, port: endpoint.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try tls?.addHandlers(
                            to: channel, host: endpoint.host,
                            observer: TLSHandshakeObserver(failed: { Console.diagnostic("TLS handshake failed: \($0)") }))
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes)))
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ClientError.connectFailed(String(describing: error), endpoint: endpoint)
        }
    }
}
