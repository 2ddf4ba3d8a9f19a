import Atomics
import PTPProtocol

/// Messages recently delivered to and ACKed by their recipient, for de-duplication of re-sent
/// messages, shared by every event loop without a lock: a direct-mapped table of
/// (recipient, message id) in relaxed atomic words, so a lookup is one multiply and two loads.
///
/// A newer entry can evict an older one that maps to the same slot, and a lookup racing with a
/// write to its slot can miss: the table remembers roughly the last `capacity` ACKed deliveries,
/// in a fixed amount of memory, and errs only towards "not seen".
final class RecentDeliveries: @unchecked Sendable {
    private let high: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    private let low: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    private let mask: Int
    private let seed: UInt64

    init(capacity: Int) {
        var size = 1
        while size < capacity { size <<= 1 }
        high = UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>.allocate(capacity: size)
        low = UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>.allocate(capacity: size)
        high.initialize(repeating: UnsafeAtomic<UInt64>.Storage(0), count: size)
        low.initialize(repeating: UnsafeAtomic<UInt64>.Storage(0), count: size)
        mask = size - 1
        var random = SystemRandomNumberGenerator()
        seed = random.next() | 1
    }

    deinit {
        high.deallocate()
        low.deallocate()
    }

    /// The node id folded to one word.
    @inline(__always)
    static func key(_ recipient: GUID) -> UInt64 {
        recipient.high ^ (recipient.low >> 1 | recipient.low << 63)
    }

    @inline(__always)
    private func slot(_ recipient: UInt64, _ id: GUID) -> (index: Int, high: UInt64, low: UInt64) {
        let mixedHigh = id.high ^ (recipient &* 0x9E37_79B9_7F4A_7C15)
        var mixed = (mixedHigh ^ id.low.byteSwapped) &* seed
        mixed ^= mixed >> 29
        // Never (0, 0), which is an empty slot; the folded bit makes a false match need the same
        // low 64 bits of the id.
        return (Int(truncatingIfNeeded: mixed) & mask, mixedHigh | 1, id.low)
    }

    @inline(__always)
    func contains(recipient: UInt64, _ id: GUID) -> Bool {
        let (index, wantHigh, wantLow) = slot(recipient, id)
        return UnsafeAtomic<UInt64>(at: high + index).load(ordering: .relaxed) == wantHigh
            && UnsafeAtomic<UInt64>(at: low + index).load(ordering: .relaxed) == wantLow
    }

    @inline(__always)
    func insert(recipient: UInt64, _ id: GUID) {
        let (index, newHigh, newLow) = slot(recipient, id)
        UnsafeAtomic<UInt64>(at: high + index).store(newHigh, ordering: .relaxed)
        UnsafeAtomic<UInt64>(at: low + index).store(newLow, ordering: .relaxed)
    }
}
