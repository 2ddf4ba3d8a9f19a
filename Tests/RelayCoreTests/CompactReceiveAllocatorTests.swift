import NIOCore
import XCTest

@testable import RelayCore

final class CompactReceiveAllocatorTests: XCTestCase {
    /// The same sizes and the same "may grow" answers as NIO's adaptive allocator with the
    /// relay's bounds, over random reads (seeded: a failure repeats).
    func testSizesAsNIOsAdaptiveAllocator() {
        var random = SystemRandomNumberGenerator()
        let seed = UInt64.random(in: 0...UInt64.max, using: &random)
        var generator = SplitMix(seed: seed)
        for round in 0..<200 {
            var nio = AdaptiveRecvByteBufferAllocator(minimum: 256, initial: 512, maximum: 32_768)
            var compact = CompactReceiveAllocator(initial: 512)
            for step in 0..<200 {
                let size = nio.nextBufferSize() ?? 0
                XCTAssertEqual(compact.nextBufferSize(), size, "seed \(seed) round \(round) step \(step)")
                // Reads that fill the buffer, use half of it or less, or something between.
                let read: Int
                switch generator.next() % 3 {
                case 0: read = size
                case 1: read = Int(generator.next() % UInt64(size / 2 + 1))
                default: read = size / 2 + 1 + Int(generator.next() % UInt64(size / 2))
                }
                XCTAssertEqual(compact.record(actualReadBytes: read), nio.record(actualReadBytes: read), "seed \(seed) round \(round) step \(step)")
            }
        }
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

/// SplitMix64, for repeatable random tests.
private struct SplitMix {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
