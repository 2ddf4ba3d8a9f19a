import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

@testable import RelayCore

/// Flushed output written straight to the socket (`DirectSocketWrites`): on a real accepted
/// channel and a client socket that stops reading, so that the socket takes only part of a write
/// and NIO must hold the rest. The bytes arrive complete and in order whoever wrote them.
final class DirectSocketWritesTests: XCTestCase {
    func testATLSConnectionNeverWritesDirectly() async throws {
        let (server, accepted, client) = try await connectedPair()
        defer { close(client) }
        let routes = try await accepted.eventLoop.submit { () -> [Bool] in
            var writes = DirectSocketWrites(plaintext: false)
            return (0..<40).map { _ in
                if case .throughNIO(_, tracked: false) = writes.send(ByteBuffer(string: "x"), on: accepted) { return true }
                return false
            }
        }.get()
        XCTAssertEqual(routes, Array(repeating: true, count: 40), "every write through NIO, none tracked")
        try await server.close()
    }

    func testABusyConnectionWritesDirectlyAndNIOTakesWhatTheSocketCannotInOrder() async throws {
        let (server, accepted, client) = try await connectedPair()
        defer { close(client) }
        let writer = Flusher(accepted)
        @Sendable func flush(_ count: Int) -> String { writer.flush(count) }

        // The first flush finds the socket: every flush is written directly.
        let first = try await accepted.eventLoop.submit { (0..<Int(DirectSocketWrites.busyAfterFlushes) + 2).map { _ in flush(100) } }.get()
        XCTAssertEqual(first, Array(repeating: "direct", count: Int(DirectSocketWrites.busyAfterFlushes) + 2))

        // The client reads nothing: writes of 64 KiB soon fill both socket buffers.
        var routes: [String] = []
        for _ in 0..<200 {
            routes.append(try await accepted.eventLoop.submit { flush(64 * 1024) }.get())
            if routes.last == "tracked" { break }
        }
        XCTAssertTrue(routes.contains("partial") || routes.contains("tracked"), "the socket never refused: \(routes)")
        XCTAssertEqual(routes.last, "tracked", "while NIO holds output, flushes go through NIO: \(routes)")
        let direct = try await accepted.eventLoop.submit { writer.writes.writesDirectly }.get()
        XCTAssertFalse(direct)

        // The client takes some, and in the same loop task (before NIO can hear that the socket
        // has room) the next flush comes: the socket would take it, but NIO still holds older
        // bytes, so it goes behind them.
        let (early, next) = try await drainThenFlush(client, writer, count: 1000)
        XCTAssertGreaterThan(early.count, 0)
        XCTAssertEqual(next, "tracked", "a flush went ahead of what NIO holds")

        // The client reads it all: every byte, in order.
        let total = (Int(DirectSocketWrites.busyAfterFlushes) + 2) * 100 + routes.count * 64 * 1024 + 1000
        let received = try early + readAll(client, count: total - early.count)
        XCTAssertEqual(received.count, total)
        assertNumberedInOrder(received)
        // NIO wrote what it held: direct writes again.
        let deadline = Date().addingTimeInterval(10)
        var again = false
        while !again && Date() < deadline {
            again = try await accepted.eventLoop.submit { writer.writes.writesDirectly }.get()
            if !again { try await Task.sleep(nanoseconds: 5_000_000) }
        }
        XCTAssertTrue(again, "direct writes did not resume once NIO had written everything")
        let last = try await accepted.eventLoop.submit { flush(10) }.get()
        XCTAssertEqual(last, "direct")
        try await server.close()
    }

    /// Busy (`isBusy`: its output buffer kept between flushes) from the `busyAfterFlushes`th
    /// flush on, and only while it writes directly.
    func testAConnectionIsBusyAfterItsFirstFlushes() async throws {
        let (server, accepted, client) = try await connectedPair()
        defer { close(client) }
        let writer = Flusher(accepted)
        let busy = try await accepted.eventLoop.submit { () -> [Bool] in
            (0..<Int(DirectSocketWrites.busyAfterFlushes) + 1).map { _ in
                _ = writer.flush(10)
                return writer.writes.isBusy
            }
        }.get()
        XCTAssertEqual(busy.firstIndex(of: true), Int(DirectSocketWrites.busyAfterFlushes) - 1, "\(busy)")
        XCTAssertEqual(busy.last, true)
        let tls = try await accepted.eventLoop.submit { () -> Bool in
            var writes = DirectSocketWrites(plaintext: false)
            for _ in 0..<40 { _ = writes.send(ByteBuffer(string: "x"), on: accepted) }
            return writes.isBusy
        }.get()
        XCTAssertFalse(tls, "a connection that never writes directly keeps no output")
        _ = try readAll(client, count: (Int(DirectSocketWrites.busyAfterFlushes) + 1) * 10)
        try await server.close()
    }

    func testASocketErrorHandsTheOutputToNIOForGood() async throws {
        let (server, accepted, client) = try await connectedPair()
        let writer = Flusher(accepted)
        @Sendable func flush() -> String { writer.flush(1) }
        let first = try await accepted.eventLoop.submit { flush() }.get()
        XCTAssertEqual(first, "direct")
        // The client resets the connection (linger 0), having read nothing.
        var linger = linger(l_onoff: 1, l_linger: 0)
        setsockopt(client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        close(client)
        // Whether the send meets the reset, or NIO saw it first and closed the channel (the write
        // then fails through NIO): no direct write after either, and every write goes to NIO
        // untracked.
        var outcomes: [String] = []
        let deadline = Date().addingTimeInterval(10)
        while outcomes.last != "nio" && Date() < deadline {
            outcomes.append(try await accepted.eventLoop.submit { flush() }.get())
            if outcomes.last == "direct" { try await Task.sleep(nanoseconds: 2_000_000) }
        }
        XCTAssertEqual(outcomes.last, "nio", "\(outcomes)")
        let after = try await accepted.eventLoop.submit { (writer.writes.writesDirectly, flush()) }.get()
        XCTAssertFalse(after.0)
        XCTAssertEqual(after.1, "nio")
        try await server.close()
    }

    // MARK: - helpers

    /// In one task on the channel's loop (so NIO writes none of what it holds meanwhile): the
    /// client takes what the socket buffers hold, then the next flush of `count` bytes comes.
    private func drainThenFlush(_ client: Int32, _ writer: Flusher, count: Int) async throws -> ([UInt8], String) {
        try await writer.channel.eventLoop.submit { () -> ([UInt8], String) in
            var early: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 16 * 1024)
            for _ in 0..<50 {
                let taken = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if taken > 0 { early += chunk[0..<taken] } else { usleep(1000) }
            }
            return (early, writer.flush(count))
        }.get()
    }

    /// The bytes are `Flusher`'s numbers, none missing, none out of order.
    private func assertNumberedInOrder(_ received: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        var expected: UInt8 = 0
        for (index, byte) in received.enumerated() {
            guard byte == expected else { return XCTFail("byte \(index) is \(byte), expected \(expected)", file: file, line: line) }
            expected &+= 1
        }
    }

    /// Flushes numbered bytes on one channel as the shard's flush does (`RelayShard.flush`):
    /// through NIO when told to, a tracked write with a promise that tells it done. Used on the
    /// channel's loop only.
    private final class Flusher: @unchecked Sendable {
        var writes = DirectSocketWrites(plaintext: true)
        let channel: Channel
        private var next: UInt8 = 0

        init(_ channel: Channel) { self.channel = channel }

        /// Sends `count` bytes numbered on from the last; says how: "direct", "nio" (untracked),
        /// "partial" (the socket took some, NIO the rest) or "tracked".
        func flush(_ count: Int) -> String {
            var output = ByteBufferAllocator().buffer(capacity: count)
            for _ in 0..<count {
                output.writeInteger(next)
                next &+= 1
            }
            switch writes.send(output, on: channel) {
            case .written:
                return "direct"
            case .throughNIO(let rest, tracked: false):
                channel.writeAndFlush(rest, promise: nil)
                return "nio"
            case .throughNIO(let rest, tracked: true):
                let promise = channel.eventLoop.makePromise(of: Void.self)
                promise.futureResult.whenComplete { result in
                    if case .failure = result { self.writes.nioWriteCompleted(failed: true) } else { self.writes.nioWriteCompleted(failed: false) }
                }
                channel.writeAndFlush(rest, promise: promise)
                return rest.readableBytes < count ? "partial" : "tracked"
            }
        }
    }

    /// A listening channel, the channel it accepted, and the client's raw socket (a small
    /// receive buffer, nothing read until the test reads).
    private func connectedPair() async throws -> (Channel, Channel, Int32) {
        let accepted = NIOLockedValueBox<Channel?>(nil)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                accepted.withLockedValue { $0 = channel }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .childChannelOption(.socketOption(.so_sndbuf), value: 8192)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try XCTUnwrap(server.localAddress?.port)
        let client = try connectedLoopbackSocket(port: port, receiveBuffer: 4096)
        let deadline = Date().addingTimeInterval(10)
        while accepted.withLockedValue({ $0 }) == nil && Date() < deadline { try await Task.sleep(nanoseconds: 2_000_000) }
        let channel = try XCTUnwrap(accepted.withLockedValue { $0 })
        // Active once registered.
        while !channel.isActive && Date() < deadline { try await Task.sleep(nanoseconds: 2_000_000) }
        return (server, channel, client)
    }

    private func readAll(_ socket: Int32, count: Int) throws -> [UInt8] {
        var received: [UInt8] = []
        received.reserveCapacity(count)
        var chunk = [UInt8](repeating: 0, count: 65536)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        while received.count < count {
            let n = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, min($0.count, count - received.count), 0) }
            guard n > 0 else { break }
            received.append(contentsOf: chunk[0..<n])
        }
        return received
    }
}
