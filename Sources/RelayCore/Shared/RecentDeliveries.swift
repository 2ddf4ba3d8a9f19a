import Atomics
import CPrefetch
import PTPProtocol

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Messages recently delivered to and ACKed by their recipient, for de-duplication of re-sent
/// messages, shared by every event loop without a lock: a direct-mapped table of
/// (recipient, message id) in relaxed atomic words, so a lookup is one multiply and two loads.
///
/// A newer entry can evict an older one that maps to the same slot, and a lookup racing with a
/// write to its slot can miss: the table remembers roughly the last `capacity` ACKed deliveries,
/// in a fixed amount of memory, and errs only towards "not seen".
final class RecentDeliveries: @unchecked Sendable {
    /// Slot `i` is the words `2 i` (the mixed high half) and `2 i + 1` (the low half): one cache
    /// line per lookup. (Two arrays cost two misses, and with ids spread over the table every
    /// lookup and insert misses.)
    private let words: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    private let mask: Int
    private let seed: UInt64
    /// The mapping `words` lies in (freed with the table).
    private let mapping: (base: UnsafeMutableRawPointer, length: Int)

    init(capacity: Int) {
        var size = 1
        while size < capacity { size <<= 1 }
        let stride = MemoryLayout<UnsafeAtomic<UInt64>.Storage>.stride
        let (mapping, start) = Self.zeroedMapping(bytes: 2 * size * stride)
        self.mapping = mapping
        // An all-zero word is a valid storage of the atomic 0.
        words = start.bindMemory(to: UnsafeAtomic<UInt64>.Storage.self, capacity: 2 * size)
        mask = size - 1
        var random = SystemRandomNumberGenerator()
        seed = random.next() | 1
    }

    deinit {
        munmap(mapping.base, mapping.length)
    }

    private static let hugePage = 2 << 20

    /// Fresh zero pages of the kernel's, which take memory only as slots are written (writing
    /// zeroes made the whole table resident at start, in an idle relay too), and where the table
    /// starts in them: on a 2 MiB boundary when it is that large. On Linux such a table asks for
    /// transparent huge pages: a lookup lands on a random line of 16 MiB, and with 4 KiB pages
    /// nearly every one also missed the TLB (perf: the cache prefetch of the line stalled on its
    /// page walk). A written slot then makes its 2 MiB resident, not 4 KiB: the whole table
    /// within the first thousands of messages.
    private static func zeroedMapping(
        bytes: Int
    ) -> (mapping: (base: UnsafeMutableRawPointer, length: Int), start: UnsafeMutableRawPointer) {
        let huge = bytes >= hugePage
        let length = huge ? bytes + hugePage : bytes
        let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let base, base != MAP_FAILED else { fatalError("RecentDeliveries: no memory for \(bytes) bytes") }
        guard huge else { return ((base, length), base) }
        let start = hugePageAligned(base)
        #if os(Linux)
            _ = madvise(start, bytes, MADV_HUGEPAGE)
        #endif
        return ((base, length), start)
    }

    /// `base` rounded up to a 2 MiB boundary.
    private static func hugePageAligned(_ base: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        let address = UInt(bitPattern: base)
        let aligned = (address + UInt(hugePage) - 1) & ~(UInt(hugePage) - 1)
        return base + Int(aligned - address)
    }

    /// The node id folded to one word.
    @inline(__always)
    static func key(_ recipient: GUID) -> UInt64 {
        recipient.high ^ (recipient.low >> 1 | recipient.low << 63)
    }

    @inline(__always)
    private func slot(_ recipient: UInt64, _ id: GUID) -> (index: Int, high: UInt64, low: UInt64) {
        let mixedHigh = id.high ^ (recipient &* 0x9E37_79B9_7F4A_7C15)
        // Every bit of the id moves every bit of the index: ids that differ in their last bits
        // only (a client counting its messages) must not share slots. (One multiply and a fold
        // left the last 8 bits of `id.low` out of the index: 256 such ids shared one slot.)
        // The price is the table's: a delivery's lookup and its ACK's insert each touch a line of
        // 16 MiB that is rarely in cache, as with random ids before. relay-load counts its ids, so
        // with the old index it never missed: 0.3 µs more relay CPU per message in its thr shape
        // (2.19 to 2.49 µs user, 1,000,000 messages, same instruction count).
        var mixed = (mixedHigh &* seed) ^ id.low
        mixed ^= mixed >> 32
        mixed &*= 0xD6E8_FEB8_6659_FD93
        mixed ^= mixed >> 32
        mixed &*= 0xD6E8_FEB8_6659_FD93
        mixed ^= mixed >> 32
        // Never (0, 0), which is an empty slot; the folded bit makes a false match need the same
        // low 64 bits of the id.
        return (Int(truncatingIfNeeded: mixed) & mask, mixedHigh | 1, id.low)
    }

    @inline(__always)
    func contains(recipient: UInt64, _ id: GUID) -> Bool {
        let (index, wantHigh, wantLow) = slot(recipient, id)
        return UnsafeAtomic<UInt64>(at: words + 2 * index).load(ordering: .relaxed) == wantHigh
            && UnsafeAtomic<UInt64>(at: words + 2 * index + 1).load(ordering: .relaxed) == wantLow
    }

    /// Starts bringing the slot of (recipient, id) into the cache for a `contains` a little later.
    /// The table is far larger than the caches, so that lookup waits on memory for nearly every
    /// message (perf: about 7 % of the relay's CPU time on the thr load, all on that one load);
    /// asked for as soon as the frame is read, the line is on its way while the frame is routed.
    @inline(__always)
    func prefetch(recipient: UInt64, _ id: GUID) {
        ptpchat_prefetch(words + 2 * slot(recipient, id).index)
    }

    /// Starts bringing the slot of (recipient, id) into the cache, ready to be written, for an
    /// `insert` a little later. The insert of an ACKed delivery missed as its lookup did, and
    /// worse: the store waiting for its line held up the atomic retains and releases after it.
    /// Measured with one loop on its own CPU (docs/performance.md, the eleventh round): 373k msg/s
    /// without it, 425k with it, 430k without any insert in one sitting; 1.06 times the build
    /// without it, on average, in a later one.
    @inline(__always)
    func prefetchForWrite(recipient: UInt64, _ id: GUID) {
        ptpchat_prefetch_for_write(words + 2 * slot(recipient, id).index)
    }

    @inline(__always)
    func insert(recipient: UInt64, _ id: GUID) {
        let (index, newHigh, newLow) = slot(recipient, id)
        UnsafeAtomic<UInt64>(at: words + 2 * index).store(newHigh, ordering: .relaxed)
        UnsafeAtomic<UInt64>(at: words + 2 * index + 1).store(newLow, ordering: .relaxed)
    }
}
