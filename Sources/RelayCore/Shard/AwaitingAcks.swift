import NIOCore
import PTPProtocol

/// The messages delivered on a connection and not yet ACKed by it, by message id, with when the
/// first of their ACKs may be late. Owned by the shard's loop.
///
/// Each delivery's deadline lives in its entry only: an ACK removes the entry and with it all
/// the relay remembers of the delivery. (A shard-wide queue of every delivery's deadline held each
/// for `timeouts.ack` whether or not its ACK came: 1.7 million entries, 160 MB, at 170,000
/// messages per second, kept at that size afterwards.) The ACK sweep looks into a connection only
/// once `nextDeadline` has passed, which happens about once per `timeouts.ack` for a connection
/// whose ACKs come in time.
///
/// The entries lie in a ring in the order they were delivered (`AwaitingRing`), because a
/// connection answers in that order nearly always: a new entry goes where the last one went, and
/// an ACK finds its entry at the ring's head, in lines the connection used a moment before. (In a
/// `Dictionary` both landed at a random bucket: an `AwaitingAck` is two cache lines, and writing
/// a new one into lines not in the cache stalled the retains and releases after it, half of
/// `deliverFrame`'s time under perf; removing one was another 5 % of the relay's.) An index by
/// message id finds the rest: a repeat of a message in flight, an answer out of order.
/// A value type: a copy (the close takes one to fail what it held) copies the ring when either
/// copy changes.
struct AwaitingAcks: Sequence {
    /// nil until the first delivery, and again once `releaseStorageIfEmpty` gave it back.
    private var ring: AwaitingRing?
    /// No entry is due before this (a lower bound: an ACK does not move it; the sweep that finds
    /// it passed sets it to the earliest deadline left). nil: nothing awaited since that sweep.
    private(set) var nextDeadline: NIODeadline?
    private var lastOrder: UInt64 = 0

    var isEmpty: Bool { count == 0 }
    var count: Int { ring?.count ?? 0 }
    /// Entries the storage has room for (an emptied table keeps its storage).
    var capacity: Int { ring?.capacity ?? 0 }

    /// Whether a delivery of `id` awaits its ACK: one probe, without the copy of the entry (two
    /// cache lines, with references to retain) the subscript's getter makes.
    func contains(_ id: GUID) -> Bool {
        guard let ring else { return false }
        return ring.find(id).slot != nil
    }

    /// Inserting goes through `subscript(_:default:)`; this one reads, changes or removes an entry
    /// (one added here is registered as a new delivery too).
    subscript(id: GUID) -> AwaitingAck? {
        get {
            guard let ring, let slot = ring.find(id).slot else { return nil }
            return ring.entries[slot]
        }
        set {
            guard var entry = newValue else {
                removeValue(forKey: id)
                return
            }
            if entry.order == 0 { register(&entry) }
            prepareForAppend()
            let (slot, empty) = ring.unsafelyUnwrapped.find(id)
            if let slot {
                ring.unsafelyUnwrapped.entries[slot] = entry
            } else {
                ring.unsafelyUnwrapped.append(id, entry, indexSlot: empty)
            }
        }
    }

    /// The entry for `id`, added from `make` (and registered: its order, its deadline) when there
    /// is none: one lookup either way.
    @inline(__always)
    subscript(id: GUID, default make: @autoclosure () -> AwaitingAck) -> AwaitingAck {
        get { self[id] ?? make() }
        _modify {
            prepareForAppend()
            let (found, empty) = ring.unsafelyUnwrapped.find(id)
            let slot: Int
            if let found {
                slot = found
            } else {
                // Made in its slot and registered there: a local first was a copy of the entry.
                slot = ring.unsafelyUnwrapped.append(id, make(), indexSlot: empty)
                register(&ring.unsafelyUnwrapped.entries[slot])
            }
            yield &ring.unsafelyUnwrapped.entries[slot]
        }
    }

    @discardableResult
    mutating func removeValue(forKey id: GUID) -> AwaitingAck? {
        guard ring != nil else { return nil }
        makeRingUnique()
        return ring.unsafelyUnwrapped.remove(id)
    }

    /// Forgets every entry and gives back the storage.
    mutating func removeAll() {
        ring = nil
        nextDeadline = nil
    }

    func makeIterator() -> AwaitingRing.Iterator { AwaitingRing.Iterator(ring) }

    /// Whether an entry's deadline has passed (the entries stay). When none has, `nextDeadline`
    /// moves to the earliest one left, so the next sweeps do not look again before it.
    mutating func hasExpired(now: NIODeadline) -> Bool {
        guard let due = nextDeadline, due <= now else { return false }
        var earliestLeft: NIODeadline?
        for (_, entry) in self {
            if entry.deadline <= now { return true }
            if earliestLeft.map({ entry.deadline < $0 }) ?? true { earliestLeft = entry.deadline }
        }
        nextDeadline = earliestLeft
        return false
    }

    /// Removes the entries whose deadline has passed and returns them in the order they were
    /// delivered; sets `nextDeadline` to the earliest deadline left.
    mutating func removeExpired(now: NIODeadline) -> [(id: GUID, entry: AwaitingAck)] {
        guard let due = nextDeadline, due <= now else { return [] }
        var expired: [(id: GUID, entry: AwaitingAck)] = []
        var earliestLeft: NIODeadline?
        for (id, entry) in self {
            if entry.deadline <= now {
                expired.append((id, entry))
            } else if earliestLeft.map({ entry.deadline < $0 }) ?? true {
                earliestLeft = entry.deadline
            }
        }
        if !expired.isEmpty {
            makeRingUnique()
            for (id, _) in expired { _ = ring.unsafelyUnwrapped.remove(id) }
        }
        nextDeadline = earliestLeft
        // The ring's order is the order of delivery; an entry replaced through the plain
        // subscript keeps its place but may carry another order.
        expired.sort { $0.entry.order < $1.entry.order }
        return expired
    }

    /// Gives back the storage if it is empty: a connection that went quiet keeps none sized for
    /// the window it had under load. (Not at each removal: with one message in flight that would
    /// free and allocate it again per message.)
    mutating func releaseStorageIfEmpty() {
        if isEmpty && ring != nil { ring = nil }
    }

    /// Makes the ring this table's own: copied if a copy of the table shares it.
    @inline(__always)
    private mutating func makeRingUnique() {
        // No binding of the ring before the check: it would count as a second reference.
        guard ring != nil, !isKnownUniquelyReferenced(&ring) else { return }
        let shared = ring.unsafelyUnwrapped
        ring = shared.rebuilt(capacity: shared.capacity, moving: false)
    }

    /// Makes the ring this table's own, with room for one more entry.
    @inline(__always)
    private mutating func prepareForAppend() {
        guard ring != nil else {
            ring = AwaitingRing(capacity: AwaitingRing.initialCapacity)
            return
        }
        makeRingUnique()
        if let replaced = ring.unsafelyUnwrapped.prepareForAppend() { ring = replaced }
    }

    private mutating func register(_ entry: inout AwaitingAck) {
        lastOrder &+= 1
        entry.order = lastOrder
        noteDeadline(entry.deadline)
    }

    @inline(__always)
    private mutating func noteDeadline(_ deadline: NIODeadline) {
        if let nextDeadline, nextDeadline <= deadline { return }
        nextDeadline = deadline
    }
}

/// The storage of `AwaitingAcks`: its entries in a ring, oldest first, and an index from message
/// id to ring slot.
///
/// - The ring: positions `head..<tail` (counted from the start, a slot is `position & mask`) hold
///   the entries not answered yet in the order they were delivered, with a gap for each one
///   answered out of order; the head is always a live entry. A full ring is compacted when at
///   most half of it is live, else doubled. Each slot's id and whether it is live lie apart from
///   the entries (`keys`), so that a probe or a step of the head reads no entry; an entry is
///   initialized only while its slot is live, and moved in and out, not copied.
/// - The index: open addressing with linear probing, each used slot the ring slot + 1. An
///   answered entry leaves its index slot behind (it no longer matches: its ring slot is empty or
///   holds another id), so an ACK at the head touches no index line; the index is rebuilt from
///   the ring when three quarters of it are used (four index slots per ring slot: about once per
///   three ring's worth of deliveries).
final class AwaitingRing {
    struct Key {
        var id: GUID
        var isLive: Bool
    }

    static let initialCapacity = 8
    /// Index slots per ring slot.
    private static let indexFactor = 4

    let capacity: Int
    private let mask: Int
    private let keys: UnsafeMutablePointer<Key>
    /// Initialized where `keys` says live.
    let entries: UnsafeMutablePointer<AwaitingAck>
    private(set) var head = 0
    private(set) var tail = 0
    private(set) var count = 0

    private let index: UnsafeMutablePointer<UInt32>
    private let indexMask: Int
    /// Index slots not empty: live entries and those left behind.
    private var indexUsed = 0
    /// Per process: a peer cannot choose ids that share one probe sequence.
    private static let processSeed = Int.random(in: .min ... .max)
    private let seed = AwaitingRing.processSeed

    init(capacity: Int) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "a power of two")
        self.capacity = capacity
        mask = capacity - 1
        keys = .allocate(capacity: capacity)
        keys.initialize(repeating: Key(id: .zero, isLive: false), count: capacity)
        entries = .allocate(capacity: capacity)
        indexMask = Self.indexFactor * capacity - 1
        index = .allocate(capacity: indexMask + 1)
        index.initialize(repeating: 0, count: indexMask + 1)
    }

    deinit {
        var position = head
        while position != tail {
            let slot = position & mask
            if keys[slot].isLive { (entries + slot).deinitialize(count: 1) }
            position &+= 1
        }
        keys.deallocate()
        entries.deallocate()
        index.deallocate()
    }

    /// The ring slot of `id`'s entry, if it has one, and the empty index slot its probe ended at
    /// (where it is indexed if it is added next).
    @inline(__always)
    func find(_ id: GUID) -> (slot: Int?, empty: Int) {
        var probe = id._rawHashValue(seed: seed) & indexMask
        while true {
            let used = index[probe]
            if used == 0 { return (nil, probe) }
            let slot = Int(used &- 1)
            if keys[slot].id == id && keys[slot].isLive { return (slot, probe) }
            probe = (probe &+ 1) & indexMask
        }
    }

    /// Adds `entry` for `id`, which has none (`find` said so and where: `indexSlot`). Call
    /// `prepareForAppend` first. Returns its ring slot.
    @inline(__always)
    @discardableResult
    func append(_ id: GUID, _ entry: consuming AwaitingAck, indexSlot: Int) -> Int {
        let slot = tail & mask
        keys[slot] = Key(id: id, isLive: true)
        (entries + slot).initialize(to: entry)
        index[indexSlot] = UInt32(truncatingIfNeeded: slot &+ 1)
        indexUsed &+= 1
        tail &+= 1
        count &+= 1
        return slot
    }

    /// Makes room for one more entry. Returns the ring to use instead when this one had to be
    /// rebuilt (moved out of this one), else nil.
    @inline(__always)
    func prepareForAppend() -> AwaitingRing? {
        if tail &- head == capacity {
            // Full: compacted in place of its gaps, or twice as large.
            return rebuilt(capacity: count <= capacity / 2 ? capacity : 2 * capacity, moving: true)
        }
        if indexUsed >= (indexMask + 1) / 4 * 3 { rebuildIndex() }
        return nil
    }

    /// Removes `id`'s entry and returns it; nil when it has none.
    @inline(__always)
    func remove(_ id: GUID) -> AwaitingAck? {
        let slot: Int
        let oldest = head & mask
        if head != tail && keys[oldest].id == id {
            // The oldest delivery answered first: no index line.
            slot = oldest
        } else {
            guard let found = find(id).slot else { return nil }
            slot = found
        }
        keys[slot].isLive = false
        count &-= 1
        while head != tail && !keys[head & mask].isLive { head &+= 1 }
        return (entries + slot).move()
    }

    /// A ring of `capacity` with the live entries, in order: moved out of this one (`moving`), or
    /// copied (a copy of the table shares this one).
    func rebuilt(capacity newCapacity: Int, moving: Bool) -> AwaitingRing {
        let new = AwaitingRing(capacity: max(newCapacity, Self.initialCapacity))
        var position = head
        while position != tail {
            let slot = position & mask
            if keys[slot].isLive {
                let id = keys[slot].id
                let entry = moving ? (entries + slot).move() : entries[slot]
                let (_, empty) = new.find(id)
                new.append(id, entry, indexSlot: empty)
                if moving { keys[slot].isLive = false }
            }
            position &+= 1
        }
        if moving {
            head = tail
            count = 0
        }
        return new
    }

    /// Indexes the live entries again, leaving out what answered entries left behind.
    private func rebuildIndex() {
        index.update(repeating: 0, count: indexMask + 1)
        indexUsed = 0
        var position = head
        while position != tail {
            let slot = position & mask
            if keys[slot].isLive {
                let (_, empty) = find(keys[slot].id)
                index[empty] = UInt32(truncatingIfNeeded: slot &+ 1)
                indexUsed &+= 1
            }
            position &+= 1
        }
    }

    /// The live entries, oldest first.
    struct Iterator: IteratorProtocol {
        private let ring: AwaitingRing?
        private var position: Int

        init(_ ring: AwaitingRing?) {
            self.ring = ring
            position = ring?.head ?? 0
        }

        mutating func next() -> (key: GUID, value: AwaitingAck)? {
            guard let ring else { return nil }
            while position != ring.tail {
                let slot = position & ring.mask
                position &+= 1
                if ring.keys[slot].isLive { return (ring.keys[slot].id, ring.entries[slot]) }
            }
            return nil
        }
    }
}
