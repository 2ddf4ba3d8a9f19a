import NIOCore

/// The receive-buffer sizing of NIO's `AdaptiveRecvByteBufferAllocator` (double after a read that
/// filled the buffer, halve after two reads in a row that used at most half of it), for sizes
/// that are powers of two from 256 bytes to 32 KiB, in two bytes.
///
/// A channel keeps its receive allocator as an existential. NIO's adaptive allocator is five
/// words, more than an existential holds in line, so every open connection carried a 57-byte box
/// for it (heaptrack of 4,000 idle connections); this one fits in line. `CompactReceiveAllocatorTests`
/// checks it against NIO's allocator from every state it can reach.
struct CompactReceiveAllocator: RecvByteBufferAllocator, Hashable {
    static let minimumShift: UInt8 = 8
    static let maximumShift: UInt8 = 15

    /// The next buffer is `1 << shift` bytes.
    private var shift: UInt8
    /// The last read used at most half of its buffer: one more such read halves it.
    private var decreaseNow = false

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
            if decreaseNow {
                shift -= 1
                decreaseNow = false
            } else {
                decreaseNow = true
            }
            return false
        }
        decreaseNow = false
        guard actualReadBytes >= size && shift < Self.maximumShift else { return false }
        shift += 1
        return true
    }
}
