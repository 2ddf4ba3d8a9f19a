/// When a shard writes out what a read cycle produced: at the end of the event loop tick, or at
/// once.
///
/// At the end of the tick (one `execute`), every connection gets one write for all the tick's
/// read cycles: with many connections read per tick (`thr`, `conn`) that saves writes. With one
/// read cycle per tick (a pair of clients taking turns, `lat`), the task bought nothing and cost
/// about 1,600 of the relay's 13,700 instructions per message (NIO's task queue and its lock,
/// the task's closure). So while ticks carry one read cycle each, a read cycle's output is
/// written as it ends; every `cyclesBetweenSamples`th cycle goes back to end-of-tick writes, and
/// the next whole tick's cycles are counted (the sample's own tick is not whole: the cycles before
/// it went at once) to decide again.
/// Owned by the shard's loop.
struct FlushTiming {
    static let cyclesBetweenSamples = 64

    /// Whether read cycles are flushed as they end.
    private(set) var flushesAtOnce = false
    /// Read cycles counted in this tick (while flushing at the end of ticks).
    private var cyclesInTick = 0
    /// Read cycles flushed at once before the next sample.
    private var cyclesUntilSample = 0
    /// A sample began during this tick: its count is not the whole tick's.
    private var inPartialTick = false

    /// A read cycle ended: true to flush now, false to flush at the end of the tick.
    mutating func readCycleEnded() -> Bool {
        if flushesAtOnce {
            cyclesUntilSample -= 1
            if cyclesUntilSample > 0 { return true }
            flushesAtOnce = false
            inPartialTick = true
        }
        cyclesInTick += 1
        return false
    }

    /// The end-of-tick flush ran.
    mutating func tickEnded() {
        guard !flushesAtOnce else { return }
        if inPartialTick {
            inPartialTick = false
        } else if cyclesInTick == 1 {
            flushesAtOnce = true
            cyclesUntilSample = Self.cyclesBetweenSamples
        }
        cyclesInTick = 0
    }
}
