import NIOCore
import XCTest

@testable import RelayCore

final class CompactReceiveAllocatorTests: XCTestCase {
    /// The same sizes and the same "may grow" answers as NIO's adaptive allocator with the
    /// relay's bounds, from every state the allocator can reach, for reads of every kind that
    /// matters to it (none, up to half, just over half, short of full, full, more).
    func testSizesAsNIOsAdaptiveAllocator() {
        typealias Pair = (nio: AdaptiveRecvByteBufferAllocator, compact: CompactReceiveAllocator)
        var queue: [Pair] = [(AdaptiveRecvByteBufferAllocator(minimum: 256, initial: 512, maximum: 32_768), CompactReceiveAllocator(initial: 512))]
        var seen: Set<CompactReceiveAllocator> = [queue[0].compact]
        var steps = 0
        while let (nio, compact) = queue.popLast() {
            let size = nio.nextBufferSize() ?? 0
            XCTAssertEqual(compact.nextBufferSize(), size)
            for read in [0, 1, size / 2 - 1, size / 2, size / 2 + 1, size - 1, size, 2 * size] {
                var nextNIO = nio
                var nextCompact = compact
                XCTAssertEqual(nextCompact.record(actualReadBytes: read), nextNIO.record(actualReadBytes: read), "read \(read) of \(size)")
                XCTAssertEqual(nextCompact.nextBufferSize(), nextNIO.nextBufferSize(), "after a read of \(read) of \(size)")
                steps += 1
                if seen.insert(nextCompact).inserted { queue.append((nextNIO, nextCompact)) }
            }
        }
        // 256 B to 32 KiB, each with or without a pending decrease (256 B never has one).
        XCTAssertEqual(seen.count, 15)
        XCTAssertGreaterThan(steps, 100)
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
