import Logging
import NIOCore
import NIOEmbedded
import XCTest

@testable import RelayCore

/// The accept gate on a listening channel: what it lets through to the child initializer.
final class AcceptGateTests: XCTestCase {
    /// Bans off unless a test turns them on.
    private static func bans(afterRefusals: Int = 0) -> ListenerBans {
        ListenerBans(settings: BanSettings(afterRefusals: afterRefusals, duration: .seconds(60)), logger: Logger(label: "test"))
    }

    private func listener(_ relay: TestRelay, limits: AcceptLimits, bans: ListenerBans = bans()) throws -> (EmbeddedChannel, AcceptLimiter) {
        let limiter = AcceptLimiter(limits: limits)
        let server = EmbeddedChannel(handler: AcceptGate(limiter: limiter, bans: bans, shard: relay.shard), loop: relay.loop)
        server.localAddress = try SocketAddress(ipAddress: "127.0.0.1", port: 9001)
        return (server, limiter)
    }

    /// An active TCP listener whose `read()` calls that pass the gate are counted.
    private func countingListener(_ relay: TestRelay, limits: AcceptLimits) throws -> (EmbeddedChannel, ReadCounter) {
        let counter = ReadCounter()
        let server = EmbeddedChannel(loop: relay.loop)
        try server.pipeline.syncOperations.addHandlers([counter, AcceptGate(limiter: AcceptLimiter(limits: limits), bans: Self.bans(), shard: relay.shard)])
        server.localAddress = try SocketAddress(ipAddress: "127.0.0.1", port: 9001)
        server.pipeline.fireChannelActive()
        return (server, counter)
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

    /// An address refused `limits.ban_after_refusals` times within a minute is banned once: one
    /// `address_banned`, the other addresses untouched. (Putting the list into the kernel needs a
    /// real listening socket: `LimitsTests.testAnAddressThatKeepsHammeringIsBannedInTheKernel`.)
    func testAnAddressRefusedTooOftenIsBannedOnce() throws {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let bans = Self.bans(afterRefusals: 3)
        let (server, _) = try listener(
            relay,
            limits: AcceptLimits(maxConnections: 0, perIPConnections: 0, perIPNewPerSecond: 0.001, perIPNewBurst: 1, banAfterRefusals: 3),
            bans: bans)
        for ip in ["127.0.0.7", "127.0.0.8"] {
            try server.writeInbound(try accepted(from: ip, on: relay.loop))
            XCTAssertNotNil(try server.readInbound(as: Channel.self), "the burst of one admits the first")
        }
        for attempt in 1...5 {
            try server.writeInbound(try accepted(from: "127.0.0.7", on: relay.loop))
            XCTAssertNil(try server.readInbound(as: Channel.self))
            XCTAssertEqual(relay.counters.count(.addressBanned), attempt >= 3 ? 1 : 0, "after refusal \(attempt)")
        }
        try server.writeInbound(try accepted(from: "127.0.0.8", on: relay.loop))
        XCTAssertNil(try server.readInbound(as: Channel.self))
        XCTAssertEqual(relay.counters.count(.perIPRate), 6)
        XCTAssertTrue(bans.isBanned(AddressKey(try SocketAddress(ipAddress: "127.0.0.7", port: 1))!))
        XCTAssertFalse(bans.isBanned(AddressKey(try SocketAddress(ipAddress: "127.0.0.8", port: 1))!))
        XCTAssertEqual(bans.bannedCount, 1)
    }

    /// Refusals because the relay is full (`limits.max_connections`) never ban the address.
    func testRefusalsOfAFullRelayNeverBan() throws {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let bans = Self.bans(afterRefusals: 2)
        let (server, _) = try listener(
            relay, limits: AcceptLimits(maxConnections: 1, perIPConnections: 0, perIPNewPerSecond: 0, perIPNewBurst: 0, banAfterRefusals: 2),
            bans: bans)
        try server.writeInbound(try accepted(from: "127.0.0.7", on: relay.loop))
        XCTAssertNotNil(try server.readInbound(as: Channel.self))
        for _ in 0..<5 { try server.writeInbound(try accepted(from: "127.0.0.7", on: relay.loop)) }
        XCTAssertNil(try server.readInbound(as: Channel.self))
        XCTAssertEqual(relay.counters.count(.connectionLimit), 5)
        XCTAssertEqual(relay.counters.count(.addressBanned), 0)
        XCTAssertEqual(bans.bannedCount, 0)
    }

    /// A Unix-domain listener (a socket systemd passes may be one): its connections have no IP
    /// address and are admitted, counted in all. The gate learns the listener's kind once, when
    /// the listener becomes active, not per connection.
    func testAConnectionWithoutAnAddressOnAUnixListenerIsAdmittedAndCounted() throws {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let limiter = AcceptLimiter(limits: AcceptLimits(maxConnections: 0, perIPConnections: 1, perIPNewPerSecond: 1, perIPNewBurst: 1))
        let server = EmbeddedChannel(handler: AcceptGate(limiter: limiter, bans: Self.bans(), shard: relay.shard), loop: relay.loop)
        server.localAddress = try SocketAddress(unixDomainSocketPath: "/tmp/ptpchat-accept-gate-test.sock")
        server.pipeline.fireChannelActive()
        for _ in 0..<3 {
            try server.writeInbound(try accepted(from: nil, on: relay.loop))
            XCTAssertNotNil(try server.readInbound(as: Channel.self), "a Unix-socket connection was refused")
        }
        XCTAssertEqual(limiter.total, 3)
        XCTAssertEqual(relay.counters.count(.goneAtAccept), 0)
    }

    /// Refusals over `limits.accept_refusals_*` stop the listener's reads (the kernel's backlog
    /// holds what comes meanwhile) until the pause is over; one count and one warning per pause.
    func testRefusalsOverTheirBudgetHoldTheListenersReadsUntilThePauseEnds() throws {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let (server, counter) = try countingListener(
            relay,
            limits: AcceptLimits(
                maxConnections: 0, perIPConnections: 0, perIPNewPerSecond: 1, perIPNewBurst: 1, refusalsPerSecond: 10, refusalsBurst: 2))

        server.read()
        XCTAssertEqual(counter.reads, 1, "a listener within its budget accepts")
        try server.writeInbound(try accepted(from: "127.0.0.9", on: relay.loop))
        XCTAssertNotNil(try server.readInbound(as: Channel.self))
        // Two refusals are the burst; the third pauses.
        for _ in 0..<3 { try server.writeInbound(try accepted(from: "127.0.0.9", on: relay.loop)) }
        XCTAssertEqual(relay.counters.count(.perIPRate), 3)
        XCTAssertEqual(relay.counters.count(.acceptPaused), 1)
        server.read()
        server.read()
        XCTAssertEqual(counter.reads, 1, "no read while paused")

        // The rest of a read cycle still comes through the gate, and meets the limits as usual.
        try server.writeInbound(try accepted(from: "127.0.0.10", on: relay.loop))
        XCTAssertNotNil(try server.readInbound(as: Channel.self), "another address is still admitted")
        XCTAssertEqual(relay.counters.count(.acceptPaused), 1, "one count per pause")

        relay.loop.advanceTime(by: .milliseconds(50))
        XCTAssertEqual(counter.reads, 1, "a tenth of a second's worth of budget (one refusal) is not back yet")
        relay.loop.advanceTime(by: .milliseconds(60))
        XCTAssertEqual(counter.reads, 2, "the held read goes once the pause is over")
        server.read()
        XCTAssertEqual(counter.reads, 3, "and reads pass again")
        _ = try server.finish(acceptAlreadyClosed: true)
    }

    /// A flood of connect-and-reset leaves no address: it pauses accepting like any refusal.
    func testConnectionsGoneAtAcceptChargeTheRefusalBudget() throws {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let (server, counter) = try countingListener(
            relay,
            limits: AcceptLimits(
                maxConnections: 0, perIPConnections: 0, perIPNewPerSecond: 0, perIPNewBurst: 0, refusalsPerSecond: 10, refusalsBurst: 1))
        for _ in 0..<2 { try server.writeInbound(try accepted(from: nil, on: relay.loop)) }
        XCTAssertEqual(relay.counters.count(.goneAtAccept), 2)
        XCTAssertEqual(relay.counters.count(.acceptPaused), 1)
        server.read()
        XCTAssertEqual(counter.reads, 0)
        relay.loop.advanceTime(by: .milliseconds(100))
        XCTAssertEqual(counter.reads, 1)
        _ = try server.finish(acceptAlreadyClosed: true)
    }
}
