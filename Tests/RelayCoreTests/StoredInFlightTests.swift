import PTPProtocol
import XCTest

@testable import RelayCore

/// Rows of the store out for delivery on a shard, and the race between a read and a delete.
final class StoredInFlightTests: XCTestCase {
    private let recipient = GUID(high: 1, low: 2)

    func testARowDeliveredWhileAReadIsUnderWayIsNotSentAgainByThatRead() {
        var inFlight = StoredInFlight()
        inFlight.sent(7, to: recipient, attemptsBefore: 0)
        // A read starts: its snapshot may still hold row 7.
        inFlight.readStarted()
        // Row 7 is ACKed and its delete commits before the read's rows come back.
        XCTAssertNotNil(inFlight.settle(7))
        inFlight.deleted(7)
        XCTAssertTrue(inFlight.contains(7), "the read's copy of a delivered row would be sent again")
        inFlight.readFinished()
        XCTAssertFalse(inFlight.contains(7), "with no read under way, nothing needs remembering")
    }

    func testADeleteWithNoReadUnderWayIsForgottenAtOnce() {
        var inFlight = StoredInFlight()
        inFlight.sent(8, to: recipient, attemptsBefore: 0)
        XCTAssertTrue(inFlight.contains(8))
        _ = inFlight.settle(8)
        inFlight.deleted(8)
        XCTAssertFalse(inFlight.contains(8))
        // A failed attempt keeps its row: it may be read again as soon as the outcome is written.
        inFlight.sent(9, to: recipient, attemptsBefore: 0)
        inFlight.readStarted()
        _ = inFlight.settle(9)
        inFlight.settled(9)
        XCTAssertFalse(inFlight.contains(9))
        inFlight.readFinished()
    }
}
