import NIOCore
import PTPProtocol
import XCTest

@testable import RelayCore

/// A batch of commands for another shard, without a channel or a loop.
final class ShardBatchTests: XCTestCase {
    private func ack(_ connection: UInt64) -> CompactCommand {
        .ack(on: connection, GUID(high: 0, low: connection))
    }

    /// Compact and other commands come out in the order they went in, whichever comes first or last.
    func testCommandsRunInTheOrderTheyWereAppended() {
        let batch = ShardBatch(frameCapacity: 0)
        batch.append(.close(connection: 1, reason: "first"))
        batch.append(ack(2))
        batch.append(ack(3))
        batch.append(.close(connection: 4, reason: "between"))
        batch.append(.close(connection: 5, reason: "next to it"))
        batch.append(ack(6))

        var order: [UInt64] = []
        batch.forEachInOrder(
            compact: { order.append($0.connection) },
            other: { command in
                if case .close(let connection, _) = command { order.append(connection) }
            })
        XCTAssertEqual(order, [1, 2, 3, 4, 5, 6])
    }

    /// Every compact command is shown ahead once, before it runs and `lookahead` commands before
    /// it where there are that many; commands of the other kind do not change the distance.
    func testEachCompactCommandIsShownAheadOfItsRun() {
        let batch = ShardBatch(frameCapacity: 0)
        let count = 3 * ShardBatch.lookahead
        for connection in 0..<UInt64(count) {
            if connection % 5 == 2 { batch.append(.close(connection: 1000 + connection, reason: "between")) }
            batch.append(ack(connection))
        }
        var events: [String] = []
        batch.forEachInOrder(
            ahead: { events.append("ahead \($0.connection)") },
            compact: { events.append("run \($0.connection)") },
            other: { _ in events.append("other") })

        let shown = events.compactMap { $0.hasPrefix("ahead ") ? Int($0.dropFirst(6)) : nil }
        XCTAssertEqual(shown, Array(0..<count), "each once, in order")
        XCTAssertEqual(events.filter { $0 == "other" }.count, (0..<count).filter { $0 % 5 == 2 }.count)
        for connection in 0..<count {
            let aheadAt = events.firstIndex(of: "ahead \(connection)")!
            let runAt = events.firstIndex(of: "run \(connection)")!
            XCTAssertLessThan(aheadAt, runAt)
            let runsBetween = events[aheadAt..<runAt].filter { $0.hasPrefix("run ") }.count
            XCTAssertEqual(runsBetween, min(connection, ShardBatch.lookahead), "command \(connection)")
        }
    }

    /// A delivery with one recipient and a connection upstream is compact and reads back whole;
    /// any other is not.
    func testOnlyTheCommonDeliveryIsCompact() {
        let recipient = GUID(high: 7, low: 8)
        let common = Delivery(
            messageID: GUID(high: 1, low: 2), upstream: .connection(shard: 1, id: 42), recipients: Recipients(recipient),
            sender: GUID(high: 3, low: 4))
        let frame = BatchFrame(chunk: 2, start: 100, count: 250)
        let compact = CompactCommand.deliver(to: 9, frame: frame, common)
        XCTAssertEqual(compact?.connection, 9)
        XCTAssertEqual(compact?.frame, frame)
        XCTAssertEqual(compact?.delivery.messageID, common.messageID)
        XCTAssertEqual(compact?.delivery.sender, common.sender)
        XCTAssertEqual(compact?.delivery.recipients, common.recipients)
        guard case .connection(1, 42)? = compact?.delivery.upstream else {
            return XCTFail("upstream \(String(describing: compact?.delivery.upstream))")
        }

        var two = common
        two.recipients = [recipient, GUID(high: 9, low: 9)]
        XCTAssertNil(CompactCommand.deliver(to: 9, frame: frame, two))
        var split = common
        split.upstream = .split(shard: 1, id: 42, token: 3)
        XCTAssertNil(CompactCommand.deliver(to: 9, frame: frame, split))
        var stored = common
        stored.upstream = .stored(seq: 5)
        XCTAssertNil(CompactCommand.deliver(to: 9, frame: frame, stored))
    }

    /// Frames go into buffers of at most `chunkCapacity`, a new one when the last is nearly full,
    /// and each reads back as it was written.
    func testFramesFillOneBufferAfterAnotherAndReadBackWhole() {
        let batch = ShardBatch(frameCapacity: 0)
        let frameSize = 3000
        var frames: [BatchFrame] = []
        for index in 0..<60 {
            frames.append(batch.appendFrame { $0.writeRepeatingByte(UInt8(index), count: frameSize) })
        }
        XCTAssertEqual(frames.first, BatchFrame(chunk: 0, start: 0, count: UInt32(frameSize)))
        XCTAssertGreaterThan(frames.last!.chunk, 1, "180,000 bytes take more than two buffers")
        XCTAssertTrue(batch.chunks.allSatisfy { $0.capacity <= ShardBatch.chunkCapacity })
        XCTAssertEqual(batch.frameBytes, 60 * frameSize)
        for (index, frame) in frames.enumerated() {
            let bytes = batch.withFrame(frame) { Array($0) }
            XCTAssertEqual(bytes, Array(repeating: UInt8(index), count: frameSize))
            XCTAssertEqual(Array(batch.slice(frame).readableBytesView), bytes)
        }
    }

    /// An emptied batch is ready to be filled again with the buffers it used; a quieter tick
    /// gives back what it did not use; one whose command list a burst grew too long is not kept.
    func testResetEmptiesTheBatchAndKeepsNoBurstForGood() {
        let batch = ShardBatch(frameCapacity: 0)
        for _ in 0..<30 { _ = batch.appendFrame { $0.writeRepeatingByte(1, count: 3000) } }
        XCTAssertEqual(batch.chunks.count, 2)
        batch.append(ack(1))
        batch.append(.close(connection: 2, reason: "x"))
        batch.returning = ShardBatch(frameCapacity: 0)
        XCTAssertTrue(batch.reset())
        XCTAssertTrue(batch.isEmpty)
        XCTAssertEqual(batch.chunks.count, 2, "the buffers a tick used are kept for the next")
        XCTAssertEqual(batch.frameBytes, 0)
        XCTAssertNil(batch.returning)

        // The same load again fills the same buffers.
        let frames = (0..<30).map { index in batch.appendFrame { $0.writeRepeatingByte(UInt8(index), count: 3000) } }
        XCTAssertEqual(batch.chunks.count, 2)
        XCTAssertEqual(frames.first, BatchFrame(chunk: 0, start: 0, count: 3000))
        XCTAssertEqual(batch.withFrame(frames.last!) { Array($0) }, Array(repeating: 29, count: 3000))
        XCTAssertTrue(batch.reset())

        // A quiet tick: one buffer is kept, and it shrinks back to what the tick used.
        XCTAssertEqual(batch.appendFrame { $0.writeString("again") }, BatchFrame(chunk: 0, start: 0, count: 5))
        XCTAssertEqual(batch.withFrame(BatchFrame(chunk: 0, start: 0, count: 5)) { String(decoding: $0, as: UTF8.self) }, "again")
        XCTAssertTrue(batch.reset())
        XCTAssertEqual(batch.chunks.count, 1)
        XCTAssertLessThan(batch.chunks[0].capacity, 1024, "5 bytes used: the buffer shrinks back")

        let long = ShardBatch(frameCapacity: 0)
        for connection in 0...UInt64(ShardBatch.keptCommandCapacity) { long.append(ack(connection)) }
        XCTAssertFalse(long.reset())
    }
}
