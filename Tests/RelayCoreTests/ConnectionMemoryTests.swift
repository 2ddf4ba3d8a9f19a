import NIOCore
import PTPProtocol
import XCTest

@testable import RelayCore

/// The Swift runtime's size of a class's instances (the standard library's internal
/// `_class_getInstancePositiveExtentSize`): what an instance asks of malloc.
@_silgen_name("$ss36_class_getInstancePositiveExtentSizeySiyXlXpF")
private func instanceSize(_ theClass: AnyClass) -> Int

/// What a connection keeps once its traffic is done: no output buffer after a flush, no tables
/// sized for a busy spell after it went quiet.
final class ConnectionMemoryTests: XCTestCase {
    private func connection(of node: String, in relay: TestRelay) -> Connection? {
        relay.shard.connections.values.first { $0.nodeID == Node.guid(node) }
    }

    /// An idle client's `Connection` holds what every connection needs; the rest (CONNECT budget,
    /// store backlog, `channels` view, mesh and legacy state) is made on first use. Counted in
    /// the memory per idle connection (Benchmarks/memory.sh idle; 552 bytes before the extras).
    func testAnIdleClientsConnectionIsSmall() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        _ = relay.client(Node.a, name: "alice")
        XCTAssertNotNil(connection(of: Node.a, in: relay), "alice is bound")
        // The size the runtime asks malloc for: 248 bytes or fewer fit glibc's 256-byte chunk.
        // (`malloc_usable_size` of the object is not fixed: malloc may hand out a free chunk 16
        // bytes larger than asked for, and did, in one run in four here.)
        XCTAssertLessThanOrEqual(instanceSize(Connection.self), 248)
    }

    /// The shard's table and the connection's remembered ACK hold their references by hand
    /// (`ConnectionTable`, `Connection.lastAck`): a closed connection and its ACK are still freed.
    func testAClosedConnectionAndItsRememberedAckAreFreed() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        for _ in 0..<2 {
            let id = Node.newID()
            alice.send(Frames.message(from: Node.a, to: [Node.b], id: id))
            XCTAssertEqual(bob.receiveOne()?.msgID, id)
            bob.send(Frames.ack(id))
            alice.expectAck(id)
        }
        weak let bobs = connection(of: Node.b, in: relay)
        weak let remembered = bobs?.lastAck
        XCTAssertNotNil(bobs)
        XCTAssertNotNil(remembered, "Bob's ACKs repeat one layout: the last one is kept")
        bob.close()
        relay.runLoops()
        XCTAssertNil(connection(of: Node.b, in: relay))
        XCTAssertNil(bobs, "the closed connection is freed")
        XCTAssertNil(remembered, "and its remembered ACK with it")
    }

    /// A connection's remembered MESSAGE (`Connection.lastMessage`) is given back when it goes
    /// quiet, and freed with the connection.
    func testARememberedMessageIsDroppedWhenQuietAndFreedOnClose() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let ids = alice.sendMessages(3, from: Node.a, to: Node.b, text: "aGk=")
        XCTAssertEqual(bob.receive().compactMap(\.dataMsgID), ids)
        weak let alices = connection(of: Node.a, in: relay)
        XCTAssertNotNil(alices?.lastMessage, "Alice's MESSAGEs repeat one layout: the last one is kept")
        alices?.releaseIdleStorage()
        XCTAssertNil(alices?.lastMessage, "a quiet connection gives it back")
        let more = alice.sendMessages(2, from: Node.a, to: Node.b, text: "aGk=")
        XCTAssertEqual(bob.receive().compactMap(\.dataMsgID), more)
        weak let remembered = alices?.lastMessage
        XCTAssertNotNil(remembered)
        alice.close()
        relay.runLoops()
        XCTAssertNil(connection(of: Node.a, in: relay))
        XCTAssertNil(alices, "the closed connection is freed")
        XCTAssertNil(remembered, "and its remembered MESSAGE with it")
    }

    func testOutputGoesBackToTheSharedEmptyBufferAfterAFlush() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        // Far more than the 4 KiB a flush's first write reserves: the output grows past it.
        let text = String(repeating: "QUFB", count: 500)
        let ids = alice.sendMessages(40, from: Node.a, to: Node.b, text: text)
        XCTAssertEqual(bob.receive().compactMap(\.dataMsgID), ids)
        guard let bobs = connection(of: Node.b, in: relay) else { return XCTFail("no connection for bob") }
        XCTAssertEqual(bobs.out.readableBytes, 0)
        XCTAssertEqual(bobs.takeOutput(leaving: relay.shard.emptyOutput).capacity, 0, "the flushed output is not kept")
        XCTAssertNil(bobs.outChunk)
        XCTAssertEqual(bobs.awaiting.count, ids.count, "the deliveries still await their ACK")
    }

    /// A busy tick's first write reserves room for about what the last flush wrote (twice it), so
    /// a batch of the same size is not grown and copied from 4 KiB again; the reserve is taken only
    /// once something is written, and given back at the flush. (Seen in the buffer the flush
    /// wrote: whether a read cycle's output waits for the end of the tick or goes at once,
    /// `FlushTiming`, it is written in the buffer the first write reserved.)
    func testTheFirstWriteAfterABigFlushReservesItsSize() throws {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let text = String(repeating: "QUFB", count: 500)
        // About 90 KB to bob from one read: one flush.
        let ids = (0..<40).map { _ in Node.newID() }
        alice.send(bytes: ids.flatMap { frameBytes(Frames.message(from: Node.a, to: [Node.b], id: $0, text: text)) })
        XCTAssertEqual(bob.receive().count, ids.count)
        guard let bobs = connection(of: Node.b, in: relay) else { return XCTFail("no connection for bob") }
        XCTAssertEqual(bobs.out.capacity, 0, "nothing is reserved before a write")
        alice.sendMessages(1, from: Node.a, to: Node.b, text: text)
        bob.channel.embeddedEventLoop.run()
        let written = try XCTUnwrap(try bob.channel.readOutbound(as: ByteBuffer.self), "nothing written to bob")
        XCTAssertLessThan(written.readableBytes, 4096, "one message")
        XCTAssertGreaterThanOrEqual(written.capacity, 128 * 1024)
        XCTAssertLessThanOrEqual(written.capacity, 512 * 1024)
        XCTAssertEqual(bobs.out.capacity, 0)
    }

    func testAQuietConnectionGivesBackItsAwaitingTable() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let bob = relay.client(Node.b, name: "bob")
        let ids = alice.sendMessages(64, from: Node.a, to: Node.b)
        XCTAssertEqual(bob.receive().count, ids.count)
        for id in ids { bob.send(Frames.ack(id)) }
        relay.shard.flushAll()
        XCTAssertEqual(alice.receive().count, ids.count)
        guard let bobs = connection(of: Node.b, in: relay) else { return XCTFail("no connection for bob") }
        XCTAssertTrue(bobs.awaiting.isEmpty)
        XCTAssertGreaterThanOrEqual(bobs.awaiting.capacity, ids.count, "emptied, the table keeps its storage")
        // The first sweep sees the traffic since the last one; the next finds the connection quiet.
        relay.shard.sweepIdle(now: .now())
        XCTAssertGreaterThan(bobs.awaiting.capacity, 0, "not while it was busy in the last interval")
        relay.shard.sweepIdle(now: .now())
        XCTAssertEqual(bobs.awaiting.capacity, 0)
        // It works as before afterwards.
        let next = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.b], id: next))
        XCTAssertEqual(bob.receiveOne()?.dataMsgID, next)
        XCTAssertEqual(bobs.awaiting.count, 1)
    }
}
