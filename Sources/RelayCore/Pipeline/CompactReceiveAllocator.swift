import NIOCore

/// Receive-buffer sizing for sizes that are powers of two from 256 bytes to 32 KiB, in two
/// bytes. Grows as NIO's `AdaptiveRecvByteBufferAllocator` does (double after a read that filled
/// the buffer) and shrinks more slowly: halve after `smallReadsToShrink` reads in a row that used
/// at most half of it, where NIO's halves after two.
///
/// Why slower: on the `conn` load (1,000 connections, window 8) the reads of one connection
/// alternate between a frame or two and a window's worth. Halving after two small reads left the
/// buffer too small for the next large one, which then filled it and took a second `read`: 0.22-0.26
/// reads a message against the C baseline's 0.18-0.19 (its buffers never shrink). Halving after
/// 3, 8 or 32 small reads all gave 0.17-0.19 (`perf stat` of the syscalls, two alternations each);
/// 8 brings a connection whose traffic dropped back down within a few dozen reads. Memory does
/// not depend on it: the channel's pooled buffer keeps the capacity it reached either way
/// (`NodeRateLimiter.Reads.normalAllocator`).
///
/// A channel keeps its receive allocator as an existential. NIO's adaptive allocator is five
/// words, more than an existential holds in line, so every open connection carried a 57-byte box
/// for it (heaptrack of 4,000 idle connections); this one fits in line. `CompactReceiveAllocatorTests`
/// checks it against a model of these rules from every state it can reach.
struct CompactReceiveAllocator: RecvByteBufferAllocator, Hashable {
    static let minimumShift: UInt8 = 8
    static let maximumShift: UInt8 = 15
    /// Reads in a row that used at most half of the buffer before it is halved.
    static let smallReadsToShrink: UInt8 = 8

    /// The next buffer is `1 << shift` bytes.
    private var shift: UInt8
    /// Reads in a row that used at most half of the buffer (reset when it is halved).
    private var smallReads: UInt8 = 0

    /// The first buffer is `initial` bytes, a power of two from 256 to 32 KiB.
    init(initial: Int) {
        precondition(initial.nonzeroBitCount == 1, "initial: \(initial)")
        let shift = UInt8(initial.trailingZeroBitCount)
        precondition((Self.minimumShift...Self.maximumShift).contains(shift), "initial: \(initial)")
        self.shift = shift
    }

    private var size: Int { 1 << Int(shift) }

    func buffer(allocator: ByteBufferAllocator) -> ByteBuffer {
        allocator.buffer(capacity: size)
    }

    func nextBufferSize() -> Int? { size }

    mutating func record(actualReadBytes: Int) -> Bool {
        if actualReadBytes <= size >> 1 && shift > Self.minimumShift {
            smallReads += 1
            if smallReads >= Self.smallReadsToShrink {
                shift -= 1
                smallReads = 0
            }
            return false
        }
        smallReads = 0
        guard actualReadBytes >= size && shift < Self.maximumShift else { return false }
        shift += 1
        return true
    }
}
