/// A shard's open connections by id: a dictionary whose key hashes with one multiply.
///
/// Ids are the shard's own sequence numbers, never chosen by a peer, so SipHash (about 150
/// instructions a lookup, and a relayed message looks its connections up at least twice:
/// Benchmarks/instructions.sh) buys nothing here. Owned by the shard's event loop, as the shard is.
///
/// The table holds one reference to each connection, taken and given back by hand, so that
/// `withConnection` can lend one without reference counting (see there).
final class ConnectionTable {
    private var byID: [Key: Unmanaged<Connection>] = [:]

    struct Key: Hashable {
        let id: UInt64

        func hash(into hasher: inout Hasher) {
            hasher.combine(id)
        }

        /// What the dictionary calls for a bucket: the id times an odd constant (a permutation:
        /// consecutive ids land in distinct buckets), folded with the table's seed.
        func _rawHashValue(seed: Int) -> Int {
            let mixed = (id &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(truncatingIfNeeded: seed)
            return Int(truncatingIfNeeded: mixed ^ (mixed >> 29))
        }
    }

    deinit {
        for connection in byID.values { connection.release() }
    }

    subscript(id: UInt64) -> Connection? {
        get { byID[Key(id: id)]?.takeUnretainedValue() }
        set {
            let replaced =
                if let newValue {
                    byID.updateValue(.passRetained(newValue), forKey: Key(id: id))
                } else {
                    byID.removeValue(forKey: Key(id: id))
                }
            replaced?.release()
        }
    }

    /// `body` with connection `id`, lent by the table: no retain and release around it. A
    /// relayed message looks up the connection it came from when its ACK returns, and the atomic
    /// retain of an object the cache has lost since was about 5 % of a message's time
    /// (Benchmarks/time-profile.sh); a plain read of it overlaps with other work, a locked
    /// increment does not. Safe while the table or the connection's handler (which holds it
    /// until its channel is inactive, after the shard's `closed`) keeps it: `body` must not
    /// close the connection.
    @inline(__always)
    func withConnection<Result>(_ id: UInt64, _ body: (Connection) -> Result) -> Result? {
        guard let connection = byID[Key(id: id)] else { return nil }
        let result = connection._withUnsafeGuaranteedRef(body)
        // What keeps the lent connection alive: a `body` that closed it would have used it freed.
        assert(byID[Key(id: id)] != nil, "a connection lent by the table was closed by its borrower")
        return result
    }

    @discardableResult
    func removeValue(forKey id: UInt64) -> Connection? {
        byID.removeValue(forKey: Key(id: id))?.takeRetainedValue()
    }

    /// Every connection, held by the array: a loop over them may close some (and the table then
    /// gives its reference back).
    var values: [Connection] {
        byID.values.map { $0.takeUnretainedValue() }
    }

    var count: Int { byID.count }

    var isEmpty: Bool { byID.isEmpty }
}
