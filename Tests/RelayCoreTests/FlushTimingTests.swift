import XCTest

@testable import RelayCore

/// When a shard writes out a read cycle's output (`FlushTiming`): a value, no channel.
final class FlushTimingTests: XCTestCase {
    /// Runs ticks of the given read cycles; returns how many cycles were flushed at once.
    private func run(_ ticks: [Int], on timing: inout FlushTiming) -> Int {
        var atOnce = 0
        for cycles in ticks {
            var scheduled = false
            for _ in 0..<cycles {
                if timing.readCycleEnded() { atOnce += 1 } else { scheduled = true }
            }
            if scheduled { timing.tickEnded() }
        }
        return atOnce
    }

    func testManyReadCyclesPerTickWaitForTheEndOfTheTick() {
        var timing = FlushTiming()
        XCTAssertEqual(run(Array(repeating: 5, count: 100), on: &timing), 0)
        XCTAssertFalse(timing.flushesAtOnce)
    }

    func testOneReadCyclePerTickIsFlushedAtOnceButForTheSamples() {
        var timing = FlushTiming()
        // The first tick finds it out; then each sample costs two ticks at the end: its own (not
        // counted) and the whole one after it.
        let period = FlushTiming.cyclesBetweenSamples + 1
        let atOnce = run(Array(repeating: 1, count: 1 + 10 * period), on: &timing)
        XCTAssertEqual(atOnce, 10 * (FlushTiming.cyclesBetweenSamples - 1))
        XCTAssertTrue(timing.flushesAtOnce)
    }

    func testASampleWithMoreCyclesGoesBackToEndOfTickFlushes() {
        var timing = FlushTiming()
        _ = run([1], on: &timing)
        XCTAssertTrue(timing.flushesAtOnce)
        // Load arrives: ticks now carry several cycles; those before the sample still go at once.
        let atOnce = run(Array(repeating: 8, count: 20), on: &timing)
        XCTAssertEqual(atOnce, FlushTiming.cyclesBetweenSamples - 1)
        XCTAssertFalse(timing.flushesAtOnce)
    }

    func testATickWithNoReadCycleChangesNothing() {
        var timing = FlushTiming()
        timing.tickEnded()
        XCTAssertFalse(timing.flushesAtOnce)
        _ = run([1], on: &timing)
        timing.tickEnded()
        XCTAssertTrue(timing.flushesAtOnce, "a flush scheduled by something else keeps the mode")
    }
}
