import Foundation
import Logging
import NIOCore
import NIOPosix
import PTPProtocol
import RelayConfig
import XCTest

@testable import RelayCore

/// A busy connection keeps its last flushed output and takes it again once nothing references it
/// (`Connection.startOutput`): a real relay, two clients on real sockets taking turns, as `lat`.
final class OutputReuseTests: XCTestCase {
    func testAPairTakingTurnsReusesItsOutputAndLosesNothing() async throws {
        let (server, free) = try await startInProcessRelay(threads: 1, label: "reuse-test")
        defer { Task { try? await server.shutdown() } }
        let alice = try RawClient(port: free)
        let bob = try RawClient(port: free)
        defer {
            alice.close()
            bob.close()
        }
        for (client, id) in [(alice, Node.a), (bob, Node.b)] {
            XCTAssertEqual(try client.nextFrame().verb, "HELLO")
            try client.send(Frames.hello(id))
            XCTAssertEqual(try client.nextFrame().verb, "ROUTING")
        }
        let shard = server.shards[0]
        /// Bob's connection's kept chunk, by weak reference (a strong one would stop its reuse).
        final class Watch: @unchecked Sendable { weak var chunk: OutputChunk? }
        let watch = Watch()
        var reusedAt: Int?
        for round in 0..<(Int(DirectSocketWrites.busyAfterFlushes) + 20) {
            let id = Node.newID()
            try alice.send(Frames.message(from: Node.a, to: [Node.b], id: id))
            let delivered = try bob.nextFrame()
            XCTAssertEqual(delivered.verb, "MESSAGE")
            XCTAssertTrue(delivered.text.contains(id), "round \(round): another message")
            try bob.send(Frames.ack(id))
            let answer = try alice.nextFrame()
            XCTAssertEqual(answer.verb, "ACK")
            XCTAssertTrue(answer.text.contains(id), "round \(round): another ACK")
            let same = try await shard.eventLoop.submit { () -> Bool in
                guard let bobs = shard.connections.values.first(where: { $0.nodeID?.description == Node.b }) else { return false }
                let same = watch.chunk != nil && watch.chunk === bobs.outChunk
                watch.chunk = bobs.outChunk
                return same
            }.get()
            if same && reusedAt == nil { reusedAt = round }
        }
        let reused = try XCTUnwrap(reusedAt, "bob's output chunk was never taken again")
        XCTAssertGreaterThanOrEqual(reused, Int(DirectSocketWrites.busyAfterFlushes) - 3, "kept before the connection was busy")
    }
}

/// A blocking client socket that reads whole frames (4-byte length, JSON).
private final class RawClient {
    let socket: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        socket = try connectedLoopbackSocket(port: port)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ json: String) throws {
        let bytes = frameBytes(json)
        let sent = bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { throw ChannelError.ioOnClosedChannel }
    }

    func nextFrame() throws -> (verb: String, text: String) {
        while true {
            if buffer.count >= 4 {
                let length = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
                if buffer.count >= 4 + length {
                    let text = String(decoding: buffer[4..<(4 + length)], as: UTF8.self)
                    buffer.removeFirst(4 + length)
                    if length == 0 { continue }
                    let verb = text.range(of: #""msg_type":""#).map { text[$0.upperBound...].prefix { $0 != "\"" } }.map(String.init) ?? "?"
                    return (verb, text)
                }
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw ChannelError.eof }
            buffer += chunk[0..<n]
        }
    }

    func close() { Glibc.close(socket) }
}
