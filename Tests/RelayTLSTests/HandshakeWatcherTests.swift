import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOTLS
import XCTest

@testable import RelayTLS

/// The watcher behind the NIOSSL handler, driven with an `EmbeddedChannel` (the handshakes with
/// real certificates are in IntegrationTests/TLSTests).
final class HandshakeWatcherTests: XCTestCase {
    private struct Failure: Error {}

    /// Records what reaches the end of the pipeline.
    private final class Tail: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var events: [Any] = []
        var errors: [any Error] = []
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) { events.append(event) }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { errors.append(error) }
    }

    private let failures = NIOLockedValueBox<[String]>([])
    private let completions = NIOLockedValueBox(0)

    private func makeChannel() throws -> (EmbeddedChannel, Tail) {
        let failures = self.failures
        let completions = self.completions
        let observer = TLSHandshakeObserver(
            failed: { error in failures.withLockedValue { $0.append("\(error)") } },
            completed: { _ in completions.withLockedValue { $0 += 1 } })
        let tail = Tail()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([HandshakeWatcher(observer: observer, provesIdentity: true), tail])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9443)).wait()
        return (channel, tail)
    }

    func testErrorBeforeTheHandshakeEndsIsAFailedHandshakeAndClosesTheConnection() throws {
        let (channel, tail) = try makeChannel()
        channel.pipeline.fireErrorCaught(Failure())
        XCTAssertEqual(failures.withLockedValue { $0.count }, 1)
        XCTAssertFalse(channel.isActive, "the connection is closed")
        XCTAssertTrue(tail.errors.isEmpty, "the error stops at the watcher")
    }

    func testTheRelaysOwnCloseIsNoFailedHandshake() throws {
        let (channel, _) = try makeChannel()
        // The handshake timeout closes from the end of the pipeline; NIOSSL then reports an error.
        channel.close(promise: nil)
        channel.pipeline.fireErrorCaught(Failure())
        XCTAssertEqual(failures.withLockedValue { $0.count }, 0)
    }

    func testCompletedHandshakeIsReportedAndTheWatcherLeaves() throws {
        let (channel, tail) = try makeChannel()
        channel.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
        XCTAssertEqual(completions.withLockedValue { $0 }, 1)
        XCTAssertEqual(tail.events.count, 1, "the event goes on; no ProvenNodeIdentity without a peer certificate")
        XCTAssertThrowsError(try channel.pipeline.syncOperations.handler(type: HandshakeWatcher.self), "the watcher left the pipeline")
        channel.pipeline.fireErrorCaught(Failure())
        XCTAssertEqual(failures.withLockedValue { $0.count }, 0, "an error after the handshake is not a failed handshake")
        XCTAssertEqual(tail.errors.count, 1)
        XCTAssertTrue(channel.isActive)
    }
}
