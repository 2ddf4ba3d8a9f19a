import NIOCore

/// Commands for other shards gathered during one tick: one batch per target shard, handed over
/// with one `execute` each at the flush. Owned by the shard's event loop.
struct ShardOutbox {
    private var batches: [ShardBatch] = []
    private var targets: [Int] = []

    /// Writes a frame into the batch for `shard`; returns its range for the command that uses it.
    @inline(__always)
    mutating func appendFrame(for shard: Int, shardCount: Int, _ body: (inout ByteBuffer) -> Void) -> Range<Int> {
        touch(shard, shardCount: shardCount)
        return batches[shard].appendFrame(body)
    }

    @inline(__always)
    mutating func append(_ command: ShardCommand, for shard: Int, shardCount: Int) {
        touch(shard, shardCount: shardCount)
        batches[shard].commands.append(command)
    }

    @inline(__always)
    private mutating func touch(_ shard: Int, shardCount: Int) {
        if batches.isEmpty {
            batches = (0..<shardCount).map { _ in ShardBatch(allocator: ByteBufferAllocator()) }
        }
        if batches[shard].isEmpty && !targets.contains(shard) {
            targets.append(shard)
        }
    }

    var isEmpty: Bool { targets.isEmpty }

    /// The batches gathered since the last call, by target shard.
    mutating func take() -> [(shard: Int, batch: ShardBatch)] {
        guard !targets.isEmpty else { return [] }
        let taken = targets.map { target in
            let batch = batches[target]
            batches[target] = ShardBatch(allocator: ByteBufferAllocator())
            return (target, batch)
        }
        targets.removeAll(keepingCapacity: true)
        return taken
    }
}
