import NIOCore
import NIOEmbedded
import XCTest

@testable import RelayCore

/// The accept gate on a listening channel: what it lets through to the child initializer.
final class AcceptGateTests: XCTestCase {
    private func listener(_ relay: TestRelay, limits: AcceptLimits) throws -> (EmbeddedChannel, AcceptLimiter) {
        let limiter = AcceptLimiter(limits: limits)
        let server = EmbeddedChannel(handler: AcceptGate(limiter: limiter, shard: relay.shard), loop: relay.loop)
        server.localAddress = try SocketAddress(ipAddress: "127.0.0.1", port: 9001)
        return (server, limiter)
    }

    private func accepted(from ip: String?, on loop: EmbeddedEventLoop) throws -> EmbeddedChannel {
        let child = EmbeddedChannel(loop: loop)
        child.remoteAddress = try ip.map { try SocketAddress(ipAddress: $0, port: 40000) }
        return child
    }

    func testAConnectionResetBeforeTheAcceptIsClosedAndCountedNotAdmittedUncounted() throws {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let (server, limiter) = try listener(relay, limits: AcceptLimits(maxConnections: 0, perIPConnections: 0, perIPNewPerSecond: 1, perIPNewBurst: 1))
        let gone = try accepted(from: nil, on: relay.loop)
        try server.writeInbound(gone)
        XCTAssertNil(try server.readInbound(as: Channel.self), "a connection without an address was passed on")
        XCTAssertFalse(gone.isActive)
        XCTAssertEqual(relay.counters.count(.goneAtAccept), 1)
        XCTAssertEqual(limiter.total, 0)

        let live = try accepted(from: "127.0.0.9", on: relay.loop)
        try server.writeInbound(live)
        XCTAssertNotNil(try server.readInbound(as: Channel.self), "a connection with its address is admitted")
        XCTAssertEqual(limiter.total, 1)
        // The burst of one is spent: the next from that address is refused by the rate.
        try server.writeInbound(try accepted(from: "127.0.0.9", on: relay.loop))
        XCTAssertNil(try server.readInbound(as: Channel.self))
        XCTAssertEqual(relay.counters.count(.perIPRate), 1)
    }

    /// A Unix-domain listener (a socket systemd passes may be one): its connections have no IP
    /// address and are admitted, counted in all. The gate learns the listener's kind once, when
    /// the listener becomes active, not per connection.
    func testAConnectionWithoutAnAddressOnAUnixListenerIsAdmittedAndCounted() throws {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let limiter = AcceptLimiter(limits: AcceptLimits(maxConnections: 0, perIPConnections: 1, perIPNewPerSecond: 1, perIPNewBurst: 1))
        let server = EmbeddedChannel(handler: AcceptGate(limiter: limiter, shard: relay.shard), loop: relay.loop)
        server.localAddress = try SocketAddress(unixDomainSocketPath: "/tmp/ptpchat-accept-gate-test.sock")
        server.pipeline.fireChannelActive()
        for _ in 0..<3 {
            try server.writeInbound(try accepted(from: nil, on: relay.loop))
            XCTAssertNotNil(try server.readInbound(as: Channel.self), "a Unix-socket connection was refused")
        }
        XCTAssertEqual(limiter.total, 3)
        XCTAssertEqual(relay.counters.count(.goneAtAccept), 0)
    }
}
