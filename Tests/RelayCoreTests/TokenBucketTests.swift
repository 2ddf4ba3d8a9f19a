import NIOCore
import XCTest

@testable import RelayCore

final class TokenBucketTests: XCTestCase {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    private func at(_ seconds: Double) -> NIODeadline { start + .nanoseconds(Int64(seconds * 1e9)) }

    func testStartsFullAndRefusesWhenEmpty() {
        var bucket = TokenBucket(rate: 2, burst: 3, now: start)
        XCTAssertTrue(bucket.take(now: start))
        XCTAssertTrue(bucket.take(now: start))
        XCTAssertTrue(bucket.take(now: start))
        XCTAssertFalse(bucket.take(now: start), "burst 3 spent")
        XCTAssertEqual(bucket.tokens, 0, "a refusal takes nothing")
        XCTAssertFalse(bucket.take(now: at(0.4)), "0.8 tokens after 0.4 s at 2/s")
        XCTAssertTrue(bucket.take(now: at(0.5)))
        XCTAssertFalse(bucket.take(now: at(0.5)))
    }

    func testRefillStopsAtBurst() {
        var bucket = TokenBucket(rate: 10, burst: 5, now: start)
        for _ in 0..<5 { XCTAssertTrue(bucket.take(now: start)) }
        XCTAssertFalse(bucket.isFull(now: at(0.4)))
        XCTAssertTrue(bucket.isFull(now: at(0.5)))
        bucket.refill(now: at(100))
        XCTAssertEqual(bucket.tokens, 5)
    }

    func testZeroMeansUnlimited() {
        for (rate, burst) in [(0.0, 10.0), (10.0, 0.0), (0.0, 0.0)] {
            var bucket = TokenBucket(rate: rate, burst: burst, now: start)
            XCTAssertTrue(bucket.isUnlimited)
            for _ in 0..<10_000 { XCTAssertTrue(bucket.take(now: start)) }
            bucket.charge(1e12, now: start)
            XCTAssertTrue(bucket.holds(1))
            XCTAssertEqual(bucket.timeUntil(holding: 1), .zero)
        }
    }

    func testChargeGoesIntoDebtAndTimeUntilPaysItBack() {
        var bucket = TokenBucket(rate: 100, burst: 50, now: start)
        bucket.charge(150, now: start)
        XCTAssertEqual(bucket.tokens, -100)
        XCTAssertFalse(bucket.holds(1e-9))
        XCTAssertEqual(bucket.timeUntil(holding: 10), .milliseconds(1100))
        bucket.refill(now: at(1.1))
        XCTAssertEqual(bucket.tokens, 10, accuracy: 1e-6)
        XCTAssertEqual(bucket.timeUntil(holding: 10), .zero)
        XCTAssertEqual(bucket.timeUntil(holding: 1000), .milliseconds(400), "at most the burst is waited for")
    }

    func testReconfigureKeepsTokensAndClampsToTheNewBurst() {
        var bucket = TokenBucket(rate: 1, burst: 10, now: start)
        for _ in 0..<4 { _ = bucket.take(now: start) }
        bucket.reconfigure(rate: 1, burst: 3, now: start)
        XCTAssertEqual(bucket.tokens, 3)
        bucket.reconfigure(rate: 1, burst: 100, now: start)
        XCTAssertEqual(bucket.tokens, 3, "raising the burst gives no tokens")
        var unlimited = TokenBucket(rate: 0, burst: 0, now: start)
        unlimited.reconfigure(rate: 5, burst: 7, now: start)
        XCTAssertEqual(unlimited.tokens, 7, "a bucket that becomes limited starts full")
        XCTAssertFalse(unlimited.isUnlimited)
    }

    func testTimeGoingBackwardsTakesNothing() {
        var bucket = TokenBucket(rate: 1, burst: 1, now: at(5))
        XCTAssertTrue(bucket.take(now: at(5)))
        XCTAssertFalse(bucket.take(now: at(4)))
        XCTAssertTrue(bucket.take(now: at(6)))
    }
}
