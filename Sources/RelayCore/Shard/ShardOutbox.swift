import NIOCore

/// Commands for other shards gathered during one tick: one batch per target shard, handed over
/// with one `execute` each at the flush. The batches go round: a target runs one, empties it and
/// sends it back with its own next batch for this shard, and this shard fills it again.
/// Owned by the shard's event loop.
struct ShardOutbox {
    /// What the outbox keeps for one other shard.
    private struct Lane {
        /// The batch being filled this tick.
        var batch: ShardBatch?
        /// A batch of this shard's that the other shard ran and sent back, to be filled next.
        var spare: ShardBatch?
        /// A batch of the other shard's that this one ran, going back with the next batch for it.
        var returning: ShardBatch?
        /// The frame bytes of the last batch taken: a new batch reserves that much, so that its
        /// buffer does not grow by doubling (a copy each time) through its first tick.
        var lastFrameBytes = 0
        /// The same for the commands.
        var lastCommandCount = 0
    }

    /// By shard index (this shard's own lane is never used).
    private var lanes: [Lane] = []
    /// Shards with a batch, in the order they got one.
    private var targets: [Int] = []
    /// Batches this shard made (not reused): for tests.
    private(set) var batchesMade = 0

    /// Writes a frame into the batch for `shard`; returns where it is for the command that uses it.
    @inline(__always)
    mutating func appendFrame(for shard: Int, shardCount: Int, _ body: (inout ByteBuffer) -> Void) -> BatchFrame {
        batch(for: shard, shardCount: shardCount)._withUnsafeGuaranteedRef { $0.appendFrame(body) }
    }

    @inline(__always)
    mutating func append(_ command: ShardCommand, for shard: Int, shardCount: Int) {
        batch(for: shard, shardCount: shardCount)._withUnsafeGuaranteedRef { $0.append(command) }
    }

    @inline(__always)
    mutating func append(_ command: CompactCommand, for shard: Int, shardCount: Int) {
        batch(for: shard, shardCount: shardCount)._withUnsafeGuaranteedRef { $0.append(command) }
    }

    /// The batch being filled for `shard`, not retained: its lane holds it until `take`, which
    /// nothing in an append calls. (Returned strong, it cost a retain and a release per frame and
    /// per command a message that crosses shards makes: callgrind, two loops.)
    @inline(__always)
    private mutating func batch(for shard: Int, shardCount: Int) -> Unmanaged<ShardBatch> {
        if !lanes.isEmpty, let batch = lanes[shard].batch { return Unmanaged.passUnretained(batch) }
        return Unmanaged.passUnretained(newBatch(for: shard, shardCount: shardCount))
    }

    private mutating func newBatch(for shard: Int, shardCount: Int) -> ShardBatch {
        prepare(shardCount: shardCount)
        let batch: ShardBatch
        if let spare = lanes[shard].spare {
            lanes[shard].spare = nil
            batch = spare
        } else {
            batch = ShardBatch(frameCapacity: lanes[shard].lastFrameBytes, commandCapacity: lanes[shard].lastCommandCount)
            batchesMade += 1
        }
        lanes[shard].batch = batch
        targets.append(shard)
        return batch
    }

    private mutating func prepare(shardCount: Int) {
        guard lanes.isEmpty else { return }
        lanes = Array(repeating: Lane(), count: shardCount)
    }

    var isEmpty: Bool { targets.isEmpty }

    /// Hands each batch gathered since the last call to `body`, with its target shard and any batch
    /// of that shard's going back with it, and empties the outbox.
    mutating func take(_ body: (_ shard: Int, _ batch: ShardBatch) -> Void) {
        guard !targets.isEmpty else { return }
        for target in targets {
            let batch = lanes[target].batch!
            lanes[target].batch = nil
            batch.returning = lanes[target].returning
            lanes[target].returning = nil
            // Capped: a burst's size is not reserved by every new batch after it.
            lanes[target].lastFrameBytes = min(batch.frameBytes, ShardBatch.chunkCapacity)
            lanes[target].lastCommandCount = min(batch.compact.count, ShardBatch.keptCommandCapacity)
            body(target, batch)
        }
        targets.removeAll(keepingCapacity: true)
    }

    /// A batch from `source` arrived: the batch of this shard's that it brings back is the next
    /// one filled for `source`.
    mutating func received(_ batch: ShardBatch, from source: Int, shardCount: Int) {
        guard let returned = batch.returning else { return }
        batch.returning = nil
        prepare(shardCount: shardCount)
        lanes[source].spare = returned
    }

    /// A batch from `source` has been run: emptied, it goes back with the next batch for `source`
    /// (unless a burst grew it beyond what is kept).
    mutating func giveBack(_ batch: ShardBatch, to source: Int, shardCount: Int) {
        guard batch.reset() else { return }
        prepare(shardCount: shardCount)
        lanes[source].returning = batch
    }
}
