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
        let writer = Box(DirectSocketWrites(plaintext: true))  // used on the accepted channel's loop only
        let sequence = NIOLockedValueBox(UInt8(0))
        /// Sends `count` bytes numbered on from the last, as the shard's flush would: through NIO
        /// when told to (with a promise counting a tracked write done). Returns how it went.
        @Sendable func flush(_ count: Int) -> String {
            var output = ByteBufferAllocator().buffer(capacity: count)
            sequence.withLockedValue { next in
                for _ in 0..<count {
                    output.writeInteger(next)
                    next &+= 1
                }
            }
            switch writer.writes.send(output, on: accepted) {
            case .written:
                return "direct"
            case .throughNIO(let rest, tracked: false):
                accepted.writeAndFlush(rest, promise: nil)
                return "nio"
            case .throughNIO(let rest, tracked: true):
                let promise = accepted.eventLoop.makePromise(of: Void.self)
                promise.futureResult.whenComplete { result in
                    if case .failure = result { writer.writes.nioWriteCompleted(failed: true) } else { writer.writes.nioWriteCompleted(failed: false) }
                }
                accepted.writeAndFlush(rest, promise: promise)
                return rest.readableBytes < count ? "partial" : "tracked"
            }
        }

        // The first flushes go through NIO; then the socket is found and written directly.
        let first = try await accepted.eventLoop.submit { (0..<Int(DirectSocketWrites.busyAfterFlushes) + 2).map { _ in flush(100) } }.get()
        XCTAssertEqual(first.prefix(Int(DirectSocketWrites.busyAfterFlushes) - 1), ArraySlice(Array(repeating: "nio", count: Int(DirectSocketWrites.busyAfterFlushes) - 1)))
        XCTAssertEqual(first.suffix(3), ["direct", "direct", "direct"])

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
        let (early, next) = try await accepted.eventLoop.submit { () -> ([UInt8], String) in
            // All the socket buffers hold (the loop is busy here: NIO writes none of its own).
            var early: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 16 * 1024)
            for _ in 0..<50 {
                let taken = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if taken > 0 { early += chunk[0..<taken] } else { usleep(1000) }
            }
            return (early, flush(1000))
        }.get()
        XCTAssertGreaterThan(early.count, 0)
        XCTAssertEqual(next, "tracked", "a flush went ahead of what NIO holds")

        // The client reads it all: every byte, in order.
        let total = (Int(DirectSocketWrites.busyAfterFlushes) + 2) * 100 + routes.count * 64 * 1024 + 1000
        let received = try early + readAll(client, count: total - early.count)
        XCTAssertEqual(received.count, total)
        var expected: UInt8 = 0
        for (index, byte) in received.enumerated() {
            guard byte == expected else { return XCTFail("byte \(index) is \(byte), expected \(expected)") }
            expected &+= 1
        }
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

    /// Writes before the socket is looked up are not tracked: if NIO still holds some of them
    /// then, the lookup waits, so that a direct write cannot pass them.
    func testTheSocketIsNotWrittenDirectlyWhileNIOHoldsEarlierOutput() async throws {
        let (server, accepted, client) = try await connectedPair()
        defer { close(client) }
        let writer = Box(DirectSocketWrites(plaintext: true))  // used on the accepted channel's loop only
        let sequence = NIOLockedValueBox(UInt8(0))
        @Sendable func flush(_ count: Int) -> String {
            var output = ByteBufferAllocator().buffer(capacity: count)
            sequence.withLockedValue { next in
                for _ in 0..<count {
                    output.writeInteger(next)
                    next &+= 1
                }
            }
            switch writer.writes.send(output, on: accepted) {
            case .written:
                return "direct"
            case .throughNIO(let rest, tracked: false):
                accepted.writeAndFlush(rest, promise: nil)
                return "nio"
            case .throughNIO(let rest, tracked: true):
                let promise = accepted.eventLoop.makePromise(of: Void.self)
                promise.futureResult.whenComplete { result in
                    if case .failure = result { writer.writes.nioWriteCompleted(failed: true) } else { writer.writes.nioWriteCompleted(failed: false) }
                }
                accepted.writeAndFlush(rest, promise: promise)
                return "tracked"
            }
        }
        let before = Int(DirectSocketWrites.busyAfterFlushes) - 1
        let first = try await accepted.eventLoop.submit { (0..<before).map { _ in flush(64 * 1024) } }.get()
        XCTAssertEqual(first, Array(repeating: "nio", count: before))
        // The client takes what the socket buffers hold; in the same loop task (NIO has not
        // written more of its own), the flush that would look the socket up comes.
        let (early, lookup) = try await accepted.eventLoop.submit { () -> ([UInt8], String) in
            var early: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 16 * 1024)
            for _ in 0..<50 {
                let taken = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if taken > 0 { early += chunk[0..<taken] } else { usleep(1000) }
            }
            return (early, flush(1000))
        }.get()
        XCTAssertEqual(lookup, "nio", "NIO holds earlier output: no direct write yet")
        let total = before * 64 * 1024 + 1000
        let received = try early + readAll(client, count: total - early.count)
        XCTAssertEqual(received.count, total)
        var expected: UInt8 = 0
        for (index, byte) in received.enumerated() {
            guard byte == expected else { return XCTFail("byte \(index) is \(byte), expected \(expected)") }
            expected &+= 1
        }
        // Drained: the lookup comes again and finds the socket.
        let later = try await accepted.eventLoop.submit { (0..<Int(DirectSocketWrites.busyAfterFlushes)).map { _ in flush(10) } }.get()
        XCTAssertEqual(later.last, "direct", "\(later)")
        try await server.close()
    }

    func testASocketErrorHandsTheOutputToNIOForGood() async throws {
        let (server, accepted, client) = try await connectedPair()
        let writer = Box(DirectSocketWrites(plaintext: true))  // used on the accepted channel's loop only
        /// As the shard's flush: a tracked write's promise tells how it ended.
        @Sendable func flush() -> String {
            switch writer.writes.send(ByteBuffer(string: "x"), on: accepted) {
            case .written:
                return "direct"
            case .throughNIO(let output, tracked: false):
                accepted.writeAndFlush(output, promise: nil)
                return "untracked"
            case .throughNIO(let output, tracked: true):
                let promise = accepted.eventLoop.makePromise(of: Void.self)
                promise.futureResult.whenComplete { result in
                    if case .failure = result { writer.writes.nioWriteCompleted(failed: true) } else { writer.writes.nioWriteCompleted(failed: false) }
                }
                accepted.writeAndFlush(output, promise: promise)
                return "tracked"
            }
        }
        let busy = try await accepted.eventLoop.submit { (0..<Int(DirectSocketWrites.busyAfterFlushes) + 1).map { _ in flush() } }.get()
        XCTAssertEqual(busy.last, "direct")
        // The client resets the connection (linger 0), having read nothing.
        var linger = linger(l_onoff: 1, l_linger: 0)
        setsockopt(client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        close(client)
        // Whether the send meets the reset, or NIO saw it first and closed the channel (the write
        // then fails through NIO): no direct write after either, and every write goes to NIO
        // untracked.
        var outcomes: [String] = []
        let deadline = Date().addingTimeInterval(10)
        while outcomes.last != "untracked" && Date() < deadline {
            outcomes.append(try await accepted.eventLoop.submit { flush() }.get())
            if outcomes.last == "direct" { try await Task.sleep(nanoseconds: 2_000_000) }
        }
        XCTAssertEqual(outcomes.last, "untracked", "\(outcomes)")
        let after = try await accepted.eventLoop.submit { (writer.writes.writesDirectly, flush()) }.get()
        XCTAssertFalse(after.0)
        XCTAssertEqual(after.1, "untracked")
        try await server.close()
    }

    // MARK: - helpers

    private final class Box: @unchecked Sendable {
        var writes: DirectSocketWrites
        init(_ writes: DirectSocketWrites) { self.writes = writes }
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
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var small: Int32 = 4096
        setsockopt(client, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(connected, 0)
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
