import Foundation
import Logging
import NIOCore
import NIOPosix
import PTPProtocol
import RelayConfig
import XCTest

@testable import RelayCore

/// The options every accepted connection gets (set in the child initializer, not through NIO's
/// `childChannelOption`): Nagle off, NIO's default reads per cycle and the small first receive
/// buffer; and the reads per cycle raised once the connection is busy. Checked on a real listening
/// socket and a real accepted channel.
final class AcceptedConnectionOptionsTests: XCTestCase {
    func testAcceptedConnectionHasNoDelayAndItsReadsGrowWhenItIsBusy() async throws {
        let (server, port) = try await startInProcessRelay(threads: 1, label: "options-test")
        let client = try await ClientBootstrap(group: server.group).connect(host: "127.0.0.1", port: port).get()

        let shard = server.shards[0]
        var options: (noDelay: SocketOptionValue, reads: UInt, allocator: RecvByteBufferAllocator)?
        let deadline = Date().addingTimeInterval(10)
        while options == nil && Date() < deadline {
            options = try await shard.eventLoop.submit { () -> (SocketOptionValue, UInt, RecvByteBufferAllocator)? in
                guard let channel = shard.connections.values.first?.context.channel, let sync = channel.syncOptions else { return nil }
                return (
                    try sync.getOption(.tcpOption(.tcp_nodelay)), try sync.getOption(.maxMessagesPerRead),
                    try sync.getOption(.recvAllocator)
                )
            }.get()
            if options == nil { try await Task.sleep(nanoseconds: 10_000_000) }
        }
        let accepted = try XCTUnwrap(options, "the relay opened the connection")
        XCTAssertNotEqual(accepted.noDelay, 0, "TCP_NODELAY on the accepted socket")
        XCTAssertEqual(accepted.reads, NodeRateLimiter.Reads.initialMaxMessagesPerRead, "NIO's default: not set at accept")
        let allocator = try XCTUnwrap(accepted.allocator as? CompactReceiveAllocator)
        XCTAssertEqual(allocator, NodeRateLimiter.Reads.normalAllocator)

        // 256 KiB of keepalives (empty frames) at once: every read of a cycle fills its buffer.
        var burst = client.allocator.buffer(capacity: 256 * 1024)
        burst.writeRepeatingByte(0, count: 256 * 1024)
        try await client.writeAndFlush(burst)
        var reads: UInt?
        while reads != NodeRateLimiter.Reads.normalMaxMessagesPerRead && Date() < deadline {
            reads = try await shard.eventLoop.submit { () -> UInt? in
                guard let channel = shard.connections.values.first?.context.channel, let sync = channel.syncOptions else { return nil }
                return try sync.getOption(.maxMessagesPerRead)
            }.get()
            if reads != NodeRateLimiter.Reads.normalMaxMessagesPerRead { try await Task.sleep(nanoseconds: 10_000_000) }
        }
        XCTAssertEqual(reads, NodeRateLimiter.Reads.normalMaxMessagesPerRead, "raised once a read cycle used all its reads")
        let closed = try await shard.eventLoop.submit { shard.counters.connectionsClosed }.get()
        XCTAssertEqual(closed, 0, "keepalives before the HELLO are allowed")

        try await client.close()
        try await server.shutdown()
    }

    /// Behind TLS the reads are not counted (NIOSSL hands a cycle's plaintext on as one read): a
    /// connection TLS is put in front of gets the busy figure at once, a plaintext one NIO's default.
    func testAConnectionBehindTLSGetsTheBusyReadsAtOnce() async throws {
        for tls in [false, true] {
            let group = MultiThreadedEventLoopGroup.singleton
            let accepted = group.any().makePromise(of: UInt.self)
            let server = try await ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try RelayServer.setConnectionOptions(of: channel)
                        if tls { try RelayServer.putTLS(in: channel) {} }
                        accepted.succeed(try channel.syncOptions!.getOption(.maxMessagesPerRead))
                    }
                }
                .bind(host: "127.0.0.1", port: 0).get()
            let client = try await ClientBootstrap(group: group).connect(to: server.localAddress!).get()
            let reads = try await accepted.futureResult.get()
            XCTAssertEqual(
                reads, tls ? NodeRateLimiter.Reads.normalMaxMessagesPerRead : NodeRateLimiter.Reads.initialMaxMessagesPerRead,
                "tls: \(tls)")
            try await client.close()
            try await server.close()
        }
    }
}
