import CLinuxExtras

/// How the process's heap (glibc's malloc) gives freed memory back to the kernel.
public enum ProcessHeap {
    /// Freed memory glibc keeps at the top of each heap before it gives pages back to the kernel.
    ///
    /// Its default gives them back from 128 KiB on (or twice the largest block it mapped and
    /// freed since). A relay under load frees and makes again, every loop tick, output buffers
    /// of tens of KiB for each busy connection and the frame buffers of the batches between
    /// shards; each time the top of the heap passed the threshold glibc gave the pages back
    /// (`madvise`), and the next tick faulted every one of them in again: 0.07-0.09 page faults
    /// a message on `thr` with two loops (`perf`: the copies into connections' outputs), 0.003
    /// with 4 MiB, and 0.25 µs less system time a message (docs/performance.md, the ninth round).
    public static let trimThreshold = 4 * 1024 * 1024
    /// Blocks below this come from the heap, not from a mapping of their own (a system call to
    /// make and one to free, and page faults): a connection's output reserve is at most 256 KiB.
    /// Setting the trim threshold fixes glibc's mmap threshold at its default (128 KiB) otherwise.
    public static let mmapThreshold = 1024 * 1024

    public enum Outcome: Equatable, Sendable {
        /// Set as above.
        case kept
        /// The environment sets glibc's own thresholds (an operator's choice), or this is not glibc.
        case leftToTheEnvironment
        case refused
    }

    /// Sets `trimThreshold` and `mmapThreshold`; once, at start, before the event loops run.
    public static func keepFreedMemory() -> Outcome {
        switch ptpchat_keep_freed_heap_memory(UInt(trimThreshold), UInt(mmapThreshold)) {
        case 1: .kept
        case 0: .leftToTheEnvironment
        default: .refused
        }
    }
}
