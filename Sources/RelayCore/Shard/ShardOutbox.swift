import NIOCore

/// Commands for other shards gathered during one tick: one batch per target shard, handed over
/// with one `execute` each at the flush. Owned by the shard's event loop.
struct ShardOutbox {
    /// By target shard; a batch taken is replaced at its first use after that.
    private var batches: [ShardBatch?] = []
    /// The frame bytes of the last batch taken for each shard: the next one reserves that much,
    /// so that its buffer does not grow by doubling (a copy each time) through every tick.
    private var lastFrameBytes: [Int] = []
    /// The same for the commands: an array grown from empty every tick reallocated at 1, 2, 4, ...
    private var lastCommandCounts: [Int] = []
    /// Shards with a batch, in the order they got one.
    private var targets: [Int] = []

    /// Writes a frame into the batch for `shard`; returns its range for the command that uses it.
    @inline(__always)
    mutating func appendFrame(for shard: Int, shardCount: Int, _ body: (inout ByteBuffer) -> Void) -> Range<Int> {
        touch(shard, shardCount: shardCount)
        return batches[shard]!.appendFrame(body)
    }

    @inline(__always)
    mutating func append(_ command: ShardCommand, for shard: Int, shardCount: Int) {
        touch(shard, shardCount: shardCount)
        batches[shard]!.commands.append(command)
    }

    @inline(__always)
    private mutating func touch(_ shard: Int, shardCount: Int) {
        if batches.isEmpty {
            batches = Array(repeating: nil, count: shardCount)
            lastFrameBytes = Array(repeating: 0, count: shardCount)
            lastCommandCounts = Array(repeating: 0, count: shardCount)
        }
        if batches[shard] == nil {
            batches[shard] = ShardBatch(frameCapacity: lastFrameBytes[shard], commandCapacity: lastCommandCounts[shard])
            targets.append(shard)
        }
    }

    var isEmpty: Bool { targets.isEmpty }

    /// Hands each batch gathered since the last call to `body`, with its target shard, and
    /// empties the outbox.
    mutating func take(_ body: (_ shard: Int, _ batch: ShardBatch) -> Void) {
        guard !targets.isEmpty else { return }
        for target in targets {
            let batch = batches[target]!
            batches[target] = nil
            // Capped: a burst's size is not reserved every tick after it, and a block this size
            // stays below malloc's mmap threshold.
            lastFrameBytes[target] = min(batch.frames.writerIndex, 64 * 1024)
            lastCommandCounts[target] = min(batch.commands.count, 1024)
            body(target, batch)
        }
        targets.removeAll(keepingCapacity: true)
    }
}
