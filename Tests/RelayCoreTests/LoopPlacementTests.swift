import CLinuxExtras
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PTPProtocol
import RelayConfig
import XCTest

@testable import RelayCore

/// Where accepted connections are served while the relay may run on fewer CPUs than it has event
/// loops (`LoopPlacement`, `LoopPlacer`): the choice as a value, the socket found in NIO's
/// accepted channel, and a real relay whose loops are put on one CPU.
final class LoopPlacementTests: XCTestCase {
    func testConnectionsStayOnTheirLoopWhileEveryLoopHasACPU() {
        for cpus in [2, 3, 8] {
            let placement = LoopPlacement(loops: 2, usableCPUs: cpus)
            XCTAssertFalse(placement.isNarrowed)
            XCTAssertEqual((0..<2).map(placement.loop(forAcceptedOn:)), [0, 1], "\(cpus) CPUs")
        }
    }

    func testWithFewerCPUsThanLoopsTheFirstLoopsTakeEveryConnection() {
        XCTAssertEqual((0..<4).map(LoopPlacement(loops: 4, usableCPUs: 1).loop(forAcceptedOn:)), [0, 0, 0, 0])
        XCTAssertEqual((0..<4).map(LoopPlacement(loops: 4, usableCPUs: 2).loop(forAcceptedOn:)), [0, 1, 0, 1])
        XCTAssertEqual((0..<5).map(LoopPlacement(loops: 5, usableCPUs: 3).loop(forAcceptedOn:)), [0, 1, 2, 0, 1])
        XCTAssertTrue(LoopPlacement(loops: 2, usableCPUs: 1).isNarrowed)
    }

    func testTheUsableCPUsAreThoseTheThreadMayRunOn() throws {
        let all = try XCTUnwrap(UsableCPUs.ofThisThread())
        XCTAssertGreaterThanOrEqual(all, 1)
        // On a thread of its own, so that the test runner's threads keep their CPUs.
        let pinned = try onOwnThread { () -> (Int?, Int?) in
            guard ptpchat_set_cpu_of_this_thread(Self.firstCPU()) == 0 else { return (nil, nil) }
            let one = UsableCPUs.ofThisThread()
            _ = ptpchat_set_cpu_of_this_thread(-1)
            return (one, UsableCPUs.ofThisThread())
        }
        XCTAssertEqual(pinned.0, 1, "pinned to one CPU")
        XCTAssertEqual(pinned.1, all, "every CPU back")
    }

    /// The descriptor read out of NIO's accepted channel (by reflection: NIO has no public way;
    /// after the first, at the offsets learned from it) is that connection's socket, on the NIO
    /// this package builds with. Once the learned offsets read the right descriptor of
    /// `checksBeforeTrust` connections, lookups are no longer checked against the remote address,
    /// and still find each connection's own socket.
    func testTheAcceptedChannelsSocketIsFound() async throws {
        let found = NIOLockedValueBox<[(CInt?, Int?)]>([])
        let checks = NIOLockedValueBox<[Int]>([])
        let reflectiveBefore = ChannelSocket.reflectiveLookups
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DescriptorProbe(found: found, checks: checks))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        var clients: [Channel] = []
        for _ in 0..<(ChannelSocket.checksBeforeTrust + 3) {
            clients.append(
                try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connect(host: "127.0.0.1", port: try XCTUnwrap(server.localAddress?.port)).get())
            let deadline = Date().addingTimeInterval(10)
            while found.withLockedValue({ $0.count }) < clients.count && Date() < deadline { try await Task.sleep(nanoseconds: 5_000_000) }
        }
        let results = found.withLockedValue { $0 }
        XCTAssertEqual(results.count, clients.count, "not every connection was accepted")
        XCTAssertLessThanOrEqual(
            ChannelSocket.reflectiveLookups - reflectiveBefore, 1, "the first lookup learns where the descriptor lies; the others read it there")
        for (client, (descriptor, peerPort)) in zip(clients, results) {
            XCTAssertNotNil(descriptor, "the accepted channel's socket was not found")
            XCTAssertEqual(peerPort, client.localAddress?.port, "the descriptor is another socket")
        }
        // Earlier tests of this process may have confirmed the offsets already: at most the
        // confirmations still missing are checked, and the last lookups not at all.
        let checked = checks.withLockedValue { $0 }
        XCTAssertLessThanOrEqual(checked.reduce(0, +), ChannelSocket.checksBeforeTrust - 1, "\(checked)")
        XCTAssertEqual(Array(checked.suffix(3)), [0, 0, 0], "lookups still checked after \(ChannelSocket.checksBeforeTrust) confirmations: \(checked)")
        for client in clients { try await client.close() }
        try await server.close()
    }

    /// A relay with two loops, both put on one CPU: every new connection is served on the first
    /// loop, each moved one counted, and the relay's HELLO reaches each client from there. With the
    /// CPUs back, connections stay on the loop that accepted them again.
    func testARelayOnOneCPUServesNewConnectionsOnItsFirstLoop() async throws {
        let (server, free) = try await startInProcessRelay(threads: 2, label: "placement-test")
        defer { Task { try? await server.shutdown() } }
        let cpu = Self.firstCPU()
        for shard in server.shards {
            let result = try await shard.eventLoop.submit { ptpchat_set_cpu_of_this_thread(CInt(cpu)) }.get()
            XCTAssertEqual(result, 0, "sched_setaffinity on loop \(shard.index)")
        }

        // Eight connections: the kernel would give each loop about half (all eight to the first
        // loop by chance: 1 in 256).
        let clients = try await connect(8, to: free)
        try await waitFor("eight connections") { try await self.connections(server).reduce(0, +) == 8 }
        let placed = try await connections(server)
        XCTAssertEqual(placed, [8, 0], "connections per loop")
        // Counted by the listener that accepted them: the first loop's moved none.
        let moved = try await movedAtAccept(server)
        let first = server.shards[0]
        let movedByFirst = try await first.eventLoop.submit { first.counters.connectionsMovedAtAccept }.get()
        XCTAssertEqual(movedByFirst, 0)
        for client in clients {
            let hello = try await client.firstFrame()
            XCTAssertTrue(hello.contains("\"HELLO\""), "the relay's HELLO: \(hello)")
        }

        // The CPUs back: no connection is moved.
        for shard in server.shards {
            _ = try await shard.eventLoop.submit { ptpchat_set_cpu_of_this_thread(-1) }.get()
        }
        guard (UsableCPUs.ofThisThread() ?? 1) >= 2 else { return }
        let more = try await connect(8, to: free)
        try await waitFor("sixteen connections") { try await self.connections(server).reduce(0, +) == 16 }
        let movedAfter = try await movedAtAccept(server)
        XCTAssertEqual(movedAfter, moved, "connections moved while every loop has a CPU")
        for client in clients + more { try await client.channel.close() }
    }

    // MARK: - helpers

    /// The first CPU this process may run on.
    private static func firstCPU() -> Int32 {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") } ?? "Cpus_allowed_list: 0"
        let list = line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)
        return Int32(list.prefix { $0.isNumber }) ?? 0
    }

    private func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) throws -> T {
        let result = NIOLockedValueBox<T?>(nil)
        let thread = Thread { result.withLockedValue { $0 = body() } }
        thread.start()
        let deadline = Date().addingTimeInterval(10)
        while result.withLockedValue({ $0 }) == nil && Date() < deadline { usleep(1000) }
        return try XCTUnwrap(result.withLockedValue { $0 })
    }

    private func connections(_ server: RelayServer) async throws -> [Int] {
        var counts: [Int] = []
        for shard in server.shards { counts.append(try await shard.eventLoop.submit { shard.connections.count }.get()) }
        return counts
    }

    private func movedAtAccept(_ server: RelayServer) async throws -> Int {
        var moved = 0
        for shard in server.shards { moved += try await shard.eventLoop.submit { shard.counters.connectionsMovedAtAccept }.get() }
        return moved
    }

    private func waitFor(_ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(nanoseconds: 5_000_000)
        }
        XCTFail("timed out waiting for \(what)")
    }

    private func connect(_ count: Int, to port: Int) async throws -> [FirstFrameClient] {
        var clients: [FirstFrameClient] = []
        for _ in 0..<count {
            let collector = FirstFrameCollector()
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) } }
                .connect(host: "127.0.0.1", port: port).get()
            clients.append(FirstFrameClient(channel: channel, collector: collector))
        }
        return clients
    }
}

/// Records the descriptor `ChannelSocket` finds in each accepted channel, and its peer's port.
private final class DescriptorProbe: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Channel
    let found: NIOLockedValueBox<[(CInt?, Int?)]>
    /// How many remote-address checks each lookup made.
    let checks: NIOLockedValueBox<[Int]>
    init(found: NIOLockedValueBox<[(CInt?, Int?)]>, checks: NIOLockedValueBox<[Int]>) {
        self.found = found
        self.checks = checks
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        let checkedBefore = ChannelSocket.checkedLookups
        let descriptor = ChannelSocket.descriptor(of: child)
        checks.withLockedValue { $0.append(ChannelSocket.checkedLookups - checkedBefore) }
        var peerPort: Int?
        if let descriptor {
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let result = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(descriptor, $0, &length) }
            }
            if result == 0 { peerPort = Int(UInt16(bigEndian: address.sin_port)) }
        }
        found.withLockedValue { $0.append((descriptor, peerPort)) }
        context.fireChannelRead(data)
    }
}

/// The first frame (4-byte length, then JSON) a client receives, as text.
private final class FirstFrameCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let received = NIOLockedValueBox(ByteBuffer())

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        received.withLockedValue { _ = $0.writeBuffer(&bytes) }
    }

    var frame: String? {
        received.withLockedValue { buffer in
            guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
                buffer.readableBytes >= 4 + Int(length)
            else { return nil }
            return buffer.getString(at: buffer.readerIndex + 4, length: Int(length))
        }
    }
}

private struct FirstFrameClient {
    let channel: Channel
    let collector: FirstFrameCollector

    func firstFrame() async throws -> String {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let frame = collector.frame { return frame }
            try await Task.sleep(nanoseconds: 5_000_000)
        }
        throw ChannelError.connectTimeout(.seconds(10))
    }
}
