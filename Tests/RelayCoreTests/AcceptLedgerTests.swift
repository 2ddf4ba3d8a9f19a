import NIOCore
import XCTest

@testable import RelayCore

final class AcceptLedgerTests: XCTestCase {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    private func at(_ seconds: Double) -> NIODeadline { start + .nanoseconds(Int64(seconds * 1e9)) }
    private func key(_ ip: String) -> AddressKey { AddressKey(try! SocketAddress(ipAddress: ip, port: 1))! }

    private func limits(total: Int = 0, perIP: Int = 0, rate: Double = 0, burst: Int = 0) -> AcceptLimits {
        AcceptLimits(maxConnections: total, perIPConnections: perIP, perIPNewPerSecond: rate, perIPNewBurst: burst)
    }

    func testIPv6CountsPerSlash64AndMappedIPv4AsIPv4() {
        XCTAssertEqual(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"))
        XCTAssertNotEqual(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"))
        XCTAssertEqual(key("::ffff:192.0.2.7"), key("192.0.2.7"))
        XCTAssertEqual(key("192.0.2.7").description, "192.0.2.7")
        XCTAssertEqual(key("2001:db8:1:2::1").description, "2001:db8:1:2::/64")
    }

    func testPerIPLimitRefusesOnlyThatAddressAndReleaseMakesRoom() {
        var ledger = AcceptLedger(limits: limits(perIP: 2), now: start)
        let a = key("127.0.0.2"), b = key("127.0.0.3")
        XCTAssertEqual(ledger.admit(a, now: start), .admit)
        XCTAssertEqual(ledger.admit(a, now: start), .admit)
        XCTAssertEqual(ledger.admit(a, now: start), .refuse(.perIPLimit, warn: 1))
        XCTAssertEqual(ledger.admit(b, now: start), .admit)
        XCTAssertEqual(ledger.total, 3)
        ledger.release(a, now: start)
        XCTAssertEqual(ledger.admit(a, now: start), .admit)
        XCTAssertEqual(ledger.connections(from: a), 2)
    }

    func testTotalLimit() {
        var ledger = AcceptLedger(limits: limits(total: 2), now: start)
        XCTAssertEqual(ledger.admit(key("127.0.0.2"), now: start), .admit)
        XCTAssertEqual(ledger.admit(key("127.0.0.3"), now: start), .admit)
        XCTAssertEqual(ledger.admit(key("127.0.0.4"), now: start), .refuse(.connectionLimit, warn: nil))
        XCTAssertEqual(ledger.admit(nil, now: start), .refuse(.connectionLimit, warn: nil))
        ledger.release(key("127.0.0.2"), now: start)
        XCTAssertEqual(ledger.admit(nil, now: start), .admit, "an address with no IP counts in all")
    }

    func testWithThePerIPLimitsOffConnectionsAreCountedInAllOnlyUntilOneIsTurnedOn() {
        let limiter = AcceptLimiter(limits: limits(total: 4), now: start)
        let a = key("127.0.0.2"), b = key("127.0.0.3"), c = key("127.0.0.4")
        let first = limiter.admit(a, now: start)
        XCTAssertEqual(first.verdict, .admit)
        XCTAssertNil(first.countedAs, "released with no key: no address entry was made for it")
        XCTAssertEqual(limiter.admit(a, now: start).verdict, .admit)
        limiter.update(limits(total: 4, perIP: 1))
        let counted = limiter.admit(a, now: start)
        XCTAssertEqual(counted.verdict, .admit, "the two before the reload are not counted for the address")
        XCTAssertEqual(counted.countedAs, a)
        XCTAssertEqual(limiter.admit(a, now: start).verdict, .refuse(.perIPLimit, warn: 1))
        XCTAssertEqual(limiter.admit(b, now: start).verdict, .admit)
        XCTAssertEqual(limiter.admit(c, now: start).verdict, .refuse(.connectionLimit, warn: nil), "all four count in all")
        limiter.release(first.countedAs, now: start)
        XCTAssertEqual(limiter.admit(c, now: start).verdict, .admit)
        limiter.release(counted.countedAs, now: start)
        limiter.release(nil, now: start)
        XCTAssertEqual(limiter.admit(a, now: start).verdict, .admit, "its one counted connection closed")

        var ledger = AcceptLedger(limits: limits(total: 0), now: start)
        for _ in 0..<5 { XCTAssertEqual(ledger.admit(a, now: start), .admit) }
        XCTAssertEqual(ledger.total, 5)
        XCTAssertEqual(ledger.trackedAddresses, 0)
    }

    func testNewConnectionRateAndWarningsAtMostOnceAMinute() {
        var ledger = AcceptLedger(limits: limits(rate: 1, burst: 3), now: start)
        let a = key("198.51.100.1")
        for _ in 0..<3 { XCTAssertEqual(ledger.admit(a, now: start), .admit) }
        XCTAssertEqual(ledger.admit(a, now: start), .refuse(.perIPRate, warn: 1), "first refusal warns")
        XCTAssertEqual(ledger.admit(a, now: at(0.5)), .refuse(.perIPRate, warn: nil))
        XCTAssertEqual(ledger.admit(a, now: at(1)), .admit, "one token a second")
        var refusedSince = 0
        var now = 1.0
        while now < 59.5 {
            now += 0.01
            if case .refuse(_, let warn, _) = ledger.admit(a, now: at(now)) {
                XCTAssertNil(warn, "no second warning within the minute (at \(now) s)")
                refusedSince += 1
            }
        }
        // Past the minute: the next refusal warns (a token that came meanwhile is taken first).
        var verdict = ledger.admit(a, now: at(60.001))
        if verdict == .admit { verdict = ledger.admit(a, now: at(60.001)) }
        guard case .refuse(.perIPRate, let warn, _) = verdict else { return XCTFail("not refused: \(verdict)") }
        XCTAssertEqual(warn, refusedSince + 2, "the warning counts every refusal since the last one")
    }

    func testForgottenAddressesKeepTheTableSmall() {
        var ledger = AcceptLedger(limits: limits(perIP: 5, rate: 10, burst: 10), now: start)
        for index in 0..<1000 {
            let a = key("10.0.\(index / 256).\(index % 256)")
            XCTAssertEqual(ledger.admit(a, now: start), .admit)
            ledger.release(a, now: start)
        }
        XCTAssertEqual(ledger.trackedAddresses, 1000, "buckets not yet full again")
        XCTAssertEqual(ledger.admit(key("10.9.9.9"), now: at(11)), .admit, "the admit sweeps")
        XCTAssertEqual(ledger.trackedAddresses, 1)
        ledger.release(key("10.9.9.9"), now: at(20))
        XCTAssertEqual(ledger.trackedAddresses, 0, "released with a full bucket: forgotten at once")
    }

    func testAWarnedAddressIsRememberedForTheMinute() {
        var ledger = AcceptLedger(limits: limits(rate: 1, burst: 1), now: start)
        let a = key("203.0.113.9")
        XCTAssertEqual(ledger.admit(a, now: start), .admit)
        XCTAssertEqual(ledger.admit(a, now: start), .refuse(.perIPRate, warn: 1))
        ledger.release(a, now: at(5))
        ledger.sweep(now: at(30))
        XCTAssertEqual(ledger.trackedAddresses, 1)
        XCTAssertEqual(ledger.admit(a, now: at(30)), .admit)
        XCTAssertEqual(ledger.admit(a, now: at(30)), .refuse(.perIPRate, warn: nil), "still within the minute")
        ledger.release(a, now: at(31))
        ledger.sweep(now: at(61))
        XCTAssertEqual(ledger.trackedAddresses, 0)
    }

    /// The refusal that is an address's `banAfterRefusals`-th within a minute asks for a ban; the
    /// count then starts again. Refusals spread over more than a minute never do, nor do refusals
    /// of a full relay (not one address's doing), nor anything when bans are off.
    func testTheRefusalThatReachesTheBanCountWithinAMinuteAsksForABan() {
        var banning = limits(total: 3, rate: 0.001, burst: 1)
        banning.banAfterRefusals = 3
        var ledger = AcceptLedger(limits: banning, now: start)
        let a = key("192.0.2.1")
        XCTAssertEqual(ledger.admit(a, now: start), .admit)
        XCTAssertEqual(ledger.admit(a, now: at(1)), .refuse(.perIPRate, warn: 1))
        XCTAssertEqual(ledger.admit(a, now: at(2)), .refuse(.perIPRate, warn: nil))
        XCTAssertEqual(ledger.admit(a, now: at(3)), .refuse(.perIPRate, warn: nil, ban: true), "the third within the minute")
        XCTAssertEqual(ledger.admit(a, now: at(4)), .refuse(.perIPRate, warn: nil), "the count starts again")

        let b = key("192.0.2.2")
        XCTAssertEqual(ledger.admit(b, now: start), .admit)
        for minute in 0..<4 {
            for second in [0.0, 30.0] {
                guard case .refuse(_, _, let ban) = ledger.admit(b, now: at(100 + Double(minute) * 61 + second)) else {
                    return XCTFail("admitted")
                }
                XCTAssertFalse(ban, "two refusals a minute")
            }
        }

        XCTAssertEqual(ledger.admit(key("192.0.2.3"), now: at(400)), .admit)
        for _ in 0..<5 {
            XCTAssertEqual(ledger.admit(key("192.0.2.4"), now: at(400)), .refuse(.connectionLimit, warn: nil), "the relay is full")
        }

        banning.banAfterRefusals = 0
        ledger.update(banning)
        ledger.release(key("192.0.2.3"), now: at(500))
        for second in 0..<5 {
            guard case .refuse(_, _, let ban) = ledger.admit(a, now: at(500 + Double(second))) else { return XCTFail("admitted") }
            XCTAssertFalse(ban, "bans off")
        }
    }

    /// An address counting toward a ban is remembered for the minute of its count, even with
    /// nothing else to remember: no connection, a full bucket, its warning minute over (after a
    /// ban the count starts later than the warning minute).
    func testAnAddressCountingTowardABanIsRememberedForItsMinute() {
        var banning = limits(rate: 100, burst: 1)
        banning.banAfterRefusals = 2
        var ledger = AcceptLedger(limits: banning, now: start)
        let a = key("192.0.2.1")
        XCTAssertEqual(ledger.admit(a, now: start), .admit)
        XCTAssertEqual(ledger.admit(a, now: start), .refuse(.perIPRate, warn: 1))
        XCTAssertEqual(ledger.admit(a, now: at(0.001)), .refuse(.perIPRate, warn: nil, ban: true))
        XCTAssertEqual(ledger.admit(a, now: at(50)), .admit)
        XCTAssertEqual(ledger.admit(a, now: at(50)), .refuse(.perIPRate, warn: nil), "a new count from 50 s")
        ledger.release(a, now: at(55))
        ledger.release(a, now: at(55))
        ledger.sweep(now: at(65))
        XCTAssertEqual(ledger.trackedAddresses, 1, "its warning minute is over, its count's is not")
        XCTAssertEqual(ledger.admit(a, now: at(70)), .admit)
        XCTAssertEqual(ledger.admit(a, now: at(70)), .refuse(.perIPRate, warn: 3, ban: true), "the count survived the sweep")
        ledger.release(a, now: at(71))
        ledger.release(a, now: at(71))
        ledger.sweep(now: at(131))
        XCTAssertEqual(ledger.trackedAddresses, 0)
    }

    func testZeroIsUnlimited() {
        var ledger = AcceptLedger(limits: limits(), now: start)
        for _ in 0..<10_000 { XCTAssertEqual(ledger.admit(key("127.0.0.2"), now: start), .admit) }
        XCTAssertEqual(ledger.total, 10_000)
    }

    func testRefusalsOverTheirBudgetAskForAPauseUntilATenthOfASecondIsBack() {
        var budget = limits(total: 1)
        budget.refusalsPerSecond = 50
        budget.refusalsBurst = 10
        var ledger = AcceptLedger(limits: budget, now: start)
        for refusal in 1...10 { XCTAssertNil(ledger.chargeRefusal(now: start), "refusal \(refusal) is within the burst") }
        XCTAssertEqual(ledger.chargeRefusal(now: start), .milliseconds(100), "5 refusals at 50 a second")
        XCTAssertEqual(ledger.chargeRefusal(now: at(0.01)), .milliseconds(90), "half a refusal back")
        for _ in 0..<5 { XCTAssertNil(ledger.chargeRefusal(now: at(0.1)), "5 back") }
        XCTAssertNotNil(ledger.chargeRefusal(now: at(0.1)))

        budget.refusalsPerSecond = 0
        ledger.update(budget)
        for _ in 0..<1_000 { XCTAssertNil(ledger.chargeRefusal(now: at(0.2)), "0 is unlimited, after a reload too") }
        budget.refusalsPerSecond = 1_000
        budget.refusalsBurst = 2
        ledger.update(budget)
        XCTAssertNil(ledger.chargeRefusal(now: at(0.2)))
        XCTAssertNil(ledger.chargeRefusal(now: at(0.2)))
        XCTAssertEqual(ledger.chargeRefusal(now: at(0.2)), .milliseconds(2), "a tenth of a second's worth, at most the burst")
    }

    func testTheLimiterChargesOnlyRefusals() {
        var budget = limits(perIP: 1)
        budget.refusalsPerSecond = 1
        budget.refusalsBurst = 1
        let limiter = AcceptLimiter(limits: budget, now: start)
        for ip in 2..<50 {
            let (verdict, pause, _) = limiter.admit(key("127.0.0.\(ip)"), now: start)
            XCTAssertEqual(verdict, .admit)
            XCTAssertNil(pause, "admitted connections never pause accepting")
        }
        let first = limiter.admit(key("127.0.0.2"), now: start)
        XCTAssertEqual(first.verdict, .refuse(.perIPLimit, warn: 1))
        XCTAssertNil(first.pause, "the burst of one")
        let second = limiter.admit(key("127.0.0.3"), now: start)
        XCTAssertEqual(second.verdict, .refuse(.perIPLimit, warn: 1))
        XCTAssertEqual(second.pause, .milliseconds(1000))
        XCTAssertEqual(limiter.chargeRefusal(now: start), .milliseconds(1000), "gone at accept counts too")
    }

    func testPausesWarnAtMostOnceAMinuteForTheWholeRelay() {
        var ledger = AcceptLedger(limits: limits(), now: start)
        XCTAssertEqual(ledger.notePause(now: start), 1, "the first pause warns")
        XCTAssertNil(ledger.notePause(now: at(1)))
        XCTAssertNil(ledger.notePause(now: at(59)))
        XCTAssertEqual(ledger.notePause(now: at(60)), 3, "a minute later, with the pauses since")
        XCTAssertNil(ledger.notePause(now: at(61)))
    }
}
