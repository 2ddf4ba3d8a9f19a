import PTPBench
import XCTest

/// The percentiles the summary prints, against distributions whose percentiles are known exactly.
final class LatencyHistogramTests: XCTestCase {
    /// Within the histogram's 3 significant digits (0.1 %), plus one for rounding at the bucket edge.
    private func assertClose(_ actual: UInt64, _ expected: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let tolerance = max(1, Double(expected) * 0.001)
        XCTAssertLessThanOrEqual(abs(Double(actual) - Double(expected)), tolerance, "\(actual) vs \(expected)", file: file, line: line)
    }

    func testUniformDistribution() {
        var histogram = LatencyHistogram()
        for value in 1...100_000 { histogram.record(UInt64(value) * 1000) }  // 1 µs ... 100 ms
        XCTAssertEqual(histogram.count, 100_000)
        assertClose(histogram.value(atPercentile: 50), 50_000_000)
        assertClose(histogram.value(atPercentile: 90), 90_000_000)
        assertClose(histogram.value(atPercentile: 99), 99_000_000)
        assertClose(histogram.value(atPercentile: 99.9), 99_900_000)
        assertClose(histogram.max, 100_000_000)
        XCTAssertEqual(histogram.mean, 50_000_500, accuracy: 50_000)
    }

    /// 99 % fast, 1 % slow: p99 is still fast, p99.9 is slow. A wrong rank (off by one, or a
    /// percentile taken as a fraction) shows up here.
    func testBimodalTail() {
        var histogram = LatencyHistogram()
        for _ in 0..<9_900 { histogram.record(100_000) }
        for _ in 0..<100 { histogram.record(10_000_000) }
        assertClose(histogram.value(atPercentile: 50), 100_000)
        assertClose(histogram.value(atPercentile: 99), 100_000)
        assertClose(histogram.value(atPercentile: 99.01), 10_000_000)
        assertClose(histogram.value(atPercentile: 99.9), 10_000_000)
    }

    /// Exponential latencies (seeded): every percentile within 0.1 % of the exact order statistic.
    func testExponentialAgainstSortedSamples() {
        var generator = SplitMix(seed: 42)
        var samples: [UInt64] = []
        var histogram = LatencyHistogram()
        for _ in 0..<200_000 {
            let uniform = Double(generator.next() >> 11) / Double(1 << 53)
            let value = UInt64(-log(1 - uniform) * 50_000) + 1  // mean 50 µs
            samples.append(value)
            histogram.record(value)
        }
        samples.sort()
        for percentile in [50.0, 90, 99, 99.9] {
            let rank = Int((percentile / 100 * Double(samples.count)).rounded(.up)) - 1
            assertClose(histogram.value(atPercentile: percentile), samples[rank])
        }
        XCTAssertEqual(histogram.max, samples.last!, accuracy: samples.last! / 1000 + 1)
    }

    func testMergeEqualsOneHistogram() {
        var whole = LatencyHistogram()
        var first = LatencyHistogram()
        var second = LatencyHistogram()
        for value in 1...10_000 {
            whole.record(UInt64(value) * 7)
            if value.isMultiple(of: 2) { first.record(UInt64(value) * 7) } else { second.record(UInt64(value) * 7) }
        }
        first.merge(second)
        XCTAssertEqual(first.count, whole.count)
        for percentile in [50.0, 90, 99, 99.9] {
            XCTAssertEqual(first.value(atPercentile: percentile), whole.value(atPercentile: percentile))
        }
    }

    func testEmptyAndOutOfRange() {
        var histogram = LatencyHistogram()
        XCTAssertEqual(histogram.value(atPercentile: 99), 0)
        XCTAssertEqual(histogram.max, 0)
        histogram.record(0)
        histogram.record(.max)
        XCTAssertEqual(histogram.count, 2)
        XCTAssertGreaterThanOrEqual(histogram.max, LatencyHistogram.highestTrackable)
    }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
