import NIOCore
import PTPBench
import Synchronization

/// What the runner and every event loop share during a run: when to send and to measure, and the
/// totals the progress bar and the drain read. Owned by `BenchRunner`; the loops read the times and
/// add to the totals (once per read batch, not per message).
final class RunControl: Sendable {
    /// Monotonic ns: events from then on count in rates and latencies (start + warm-up).
    let measureFrom = Atomic<UInt64>(.max)
    /// Monotonic ns: senders send until then (0 before the start; the deadline, or earlier when the
    /// run is interrupted or completes).
    let sendingUntil = Atomic<UInt64>(0)
    /// Monotonic ns of a SIGINT, 0 without one.
    let interruptedAt = Atomic<UInt64>(0)
    /// Senders that sent their whole budget and got every answer, or lost their connection.
    let finishedSenders = Atomic<Int>(0)
    /// Monotonic ns when the last sender finished.
    let lastFinish = Atomic<UInt64>(0)
    /// Set before the runner closes the connections: a close is then no error.
    let closing = Atomic<Bool>(false)
    /// Published totals: MESSAGEs sent, answered (ACK or NACK), ACKed.
    let sent = Atomic<UInt64>(0)
    let answered = Atomic<UInt64>(0)
    let acked = Atomic<UInt64>(0)

    static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    @inline(__always)
    func isMeasuring(_ now: UInt64) -> Bool {
        now >= measureFrom.load(ordering: .relaxed) && now < sendingUntil.load(ordering: .relaxed)
    }

    /// SIGINT: stop sending now. Returns false when the run was interrupted already.
    func interrupt() -> Bool {
        let now = Self.now()
        guard interruptedAt.compareExchange(expected: 0, desired: now, ordering: .relaxed).exchanged else { return false }
        stopSending(at: now)
        return true
    }

    /// Brings the end of the send phase forward to `time` (never later).
    func stopSending(at time: UInt64) {
        var current = sendingUntil.load(ordering: .relaxed)
        while time < current {
            let (exchanged, original) = sendingUntil.compareExchange(expected: current, desired: time, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    func senderFinished(at time: UInt64) {
        _ = lastFinish.max(time, ordering: .relaxed)
        _ = finishedSenders.add(1, ordering: .relaxed)
    }
}

/// The counters and histograms of one event loop's connections.
///
/// Confined to its event loop: only that loop's handlers touch it, and the runner only through
/// `execute`/`submit` on that loop (hence `@unchecked Sendable`: the compiler cannot see the
/// confinement, a lock would cost every message).
final class LoopState: @unchecked Sendable {
    let eventLoop: EventLoop
    let control: RunControl
    var counters = BenchCounters()
    var delivery = LatencyHistogram()
    var ack = LatencyHistogram()
    var firstNackReason: String?
    var connections: [BenchConnection] = []
    private var publishedSent: UInt64 = 0
    private var publishedAnswered: UInt64 = 0
    private var publishedAcked: UInt64 = 0

    init(eventLoop: EventLoop, control: RunControl) {
        self.eventLoop = eventLoop
        self.control = control
    }

    /// Adds what changed since the last call to the shared totals.
    func publish() {
        let answered = counters.acked + counters.nacked
        if counters.sent != publishedSent {
            _ = control.sent.add(counters.sent - publishedSent, ordering: .relaxed)
            publishedSent = counters.sent
        }
        if answered != publishedAnswered {
            _ = control.answered.add(answered - publishedAnswered, ordering: .relaxed)
            publishedAnswered = answered
        }
        if counters.acked != publishedAcked {
            _ = control.acked.add(counters.acked - publishedAcked, ordering: .relaxed)
            publishedAcked = counters.acked
        }
    }

    func startSending() {
        eventLoop.preconditionInEventLoop()
        for connection in connections { connection.startSending() }
        publish()
    }

    func closeAll() {
        eventLoop.preconditionInEventLoop()
        for connection in connections { connection.close() }
    }

    struct Snapshot: Sendable {
        var counters: BenchCounters
        var delivery: LatencyHistogram
        var ack: LatencyHistogram
        var firstNackReason: String?
    }

    func snapshot() -> Snapshot {
        eventLoop.preconditionInEventLoop()
        return Snapshot(counters: counters, delivery: delivery, ack: ack, firstNackReason: firstNackReason)
    }
}
