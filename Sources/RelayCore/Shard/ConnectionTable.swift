/// A shard's open connections by id: a dictionary whose key hashes with one multiply.
///
/// Ids are the shard's own sequence numbers, never chosen by a peer, so SipHash (about 150
/// instructions a lookup, and a relayed message looks its connections up at least twice:
/// Benchmarks/instructions.sh) buys nothing here. Owned by the shard's event loop, as the shard is.
struct ConnectionTable {
    private var byID: [Key: Connection] = [:]

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

    subscript(id: UInt64) -> Connection? {
        get { byID[Key(id: id)] }
        set { byID[Key(id: id)] = newValue }
    }

    @discardableResult
    mutating func removeValue(forKey id: UInt64) -> Connection? {
        byID.removeValue(forKey: Key(id: id))
    }

    var values: Dictionary<Key, Connection>.Values { byID.values }

    var count: Int { byID.count }

    var isEmpty: Bool { byID.isEmpty }
}
