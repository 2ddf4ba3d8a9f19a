import NIOCore
import XCTest

@testable import RelayCore

final class CompactReceiveAllocatorTests: XCTestCase {
    /// The rules as plain arithmetic: double after a read that filled the buffer (up to 32 KiB),
    /// halve after `smallReadsToShrink` reads in a row that used at most half of it (down to 256 B).
    private struct Model: Hashable {
        var size = 512
        var smallReads = 0

        mutating func record(_ read: Int) -> Bool {
            if read <= size / 2 && size > 256 {
                smallReads += 1
                if smallReads == Int(CompactReceiveAllocator.smallReadsToShrink) {
                    size /= 2
                    smallReads = 0
                }
                return false
            }
            smallReads = 0
            guard read >= size && size < 32_768 else { return false }
            size *= 2
            return true
        }
    }

    /// The model's sizes and "may grow" answers from every state the allocator can reach, for
    /// reads of every kind that matters to it (none, up to half, just over half, short of full,
    /// full, more).
    func testSizesFollowTheRulesFromEveryState() {
        var queue: [(model: Model, compact: CompactReceiveAllocator)] = [(Model(), CompactReceiveAllocator(initial: 512))]
        // Pairs, not allocator states alone: a state reached with the model elsewhere is a bug.
        struct Pair: Hashable {
            var model: Model
            var compact: CompactReceiveAllocator
        }
        var seen: Set<Pair> = [Pair(model: queue[0].model, compact: queue[0].compact)]
        var steps = 0
        while let (model, compact) = queue.popLast() {
            let size = model.size
            XCTAssertEqual(compact.nextBufferSize(), size)
            for read in [0, 1, size / 2 - 1, size / 2, size / 2 + 1, size - 1, size, 2 * size] {
                var nextModel = model
                var nextCompact = compact
                XCTAssertEqual(nextCompact.record(actualReadBytes: read), nextModel.record(read), "read \(read) of \(size)")
                XCTAssertEqual(nextCompact.nextBufferSize(), nextModel.size, "after a read of \(read) of \(size)")
                steps += 1
                if seen.insert(Pair(model: nextModel, compact: nextCompact)).inserted { queue.append((nextModel, nextCompact)) }
            }
        }
        // 512 B to 32 KiB with 0 to 7 small reads counted, and 256 B (which counts none).
        XCTAssertEqual(seen.count, 7 * Int(CompactReceiveAllocator.smallReadsToShrink) + 1)
        XCTAssertGreaterThan(steps, 400)
    }

    /// Growing is NIO's adaptive allocator's: the same sizes and answers for reads that fill the
    /// buffer, from 512 B to the 32 KiB cap and beyond it.
    func testGrowsAsNIOsAdaptiveAllocator() {
        var nio = AdaptiveRecvByteBufferAllocator(minimum: 256, initial: 512, maximum: 32_768)
        var compact = CompactReceiveAllocator(initial: 512)
        for _ in 0..<9 {
            let size = nio.nextBufferSize() ?? 0
            XCTAssertEqual(compact.nextBufferSize(), size)
            XCTAssertEqual(compact.record(actualReadBytes: size), nio.record(actualReadBytes: size), "a full read of \(size)")
        }
        XCTAssertEqual(compact.nextBufferSize(), 32_768)
    }

    /// A connection whose reads alternate between small and large keeps its size (NIO's adaptive
    /// allocator halves after two small reads, and the next large read then fills the buffer);
    /// one that stays small is halved.
    func testShrinksOnlyAfterManySmallReadsInARow() {
        var compact = CompactReceiveAllocator(initial: 4096)
        for smallReadsBetween in [2, 3, Int(CompactReceiveAllocator.smallReadsToShrink) - 1] {
            for round in 0..<10 {
                for _ in 0..<smallReadsBetween { _ = compact.record(actualReadBytes: 300) }
                XCTAssertEqual(compact.nextBufferSize(), 4096, "round \(round), \(smallReadsBetween) small reads between large ones")
                _ = compact.record(actualReadBytes: 3000)
            }
        }
        for _ in 0..<Int(CompactReceiveAllocator.smallReadsToShrink) { _ = compact.record(actualReadBytes: 300) }
        XCTAssertEqual(compact.nextBufferSize(), 2048)
    }

    func testItsBufferHasTheNextSize() {
        var compact = CompactReceiveAllocator(initial: 512)
        XCTAssertEqual(compact.buffer(allocator: ByteBufferAllocator()).capacity, 512)
        XCTAssertTrue(compact.record(actualReadBytes: 512))
        XCTAssertEqual(compact.buffer(allocator: ByteBufferAllocator()).capacity, 1024)
    }

    /// A channel stores its allocator as an existential: three words in line, a box beyond.
    func testItFitsInAnExistentialWithoutABox() {
        XCTAssertLessThanOrEqual(MemoryLayout<CompactReceiveAllocator>.size, 3 * MemoryLayout<Int>.size)
        XCTAssertGreaterThan(MemoryLayout<AdaptiveRecvByteBufferAllocator>.size, 3 * MemoryLayout<Int>.size)
    }
}
