import Histogram

/// Latencies in nanoseconds in an HDR histogram (HdrHistogram/hdrhistogram-swift): 3 significant
/// digits (a value is off by at most 0.1 %) from 1 ns to 10 minutes; a longer one is counted as 10
/// minutes. One per event loop, merged at the end.
public struct LatencyHistogram: Sendable {
    public static let highestTrackable: UInt64 = 600_000_000_000

    /// Internal so that `record` can be inlined into the loop that reads the frames (twice per
    /// message: the call and its checks were about 4 % of a load test's instructions).
    @usableFromInline var storage = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: LatencyHistogram.highestTrackable, numberOfSignificantValueDigits: .three)

    public var histogram: Histogram<UInt64> { storage }

    public init() {}

    @inlinable @inline(__always)
    public mutating func record(_ nanoseconds: UInt64) {
        _ = storage.record(Swift.max(1, Swift.min(nanoseconds, Self.highestTrackable)))
    }

    public mutating func merge(_ other: LatencyHistogram) {
        storage.add(other.storage)
    }

    public var count: UInt64 { histogram.totalCount }

    /// The value at `percentile` (0 to 100), in ns: the highest value equivalent to the one at that
    /// rank (HdrHistogram's definition); 0 when empty.
    public func value(atPercentile percentile: Double) -> UInt64 {
        count == 0 ? 0 : histogram.valueAtPercentile(percentile)
    }

    public var max: UInt64 { count == 0 ? 0 : histogram.max }
    public var mean: Double { count == 0 ? 0 : histogram.mean }
}
