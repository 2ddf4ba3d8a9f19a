import NIOCore
import PTPProtocol
import XCTest

@testable import RelayCore

/// A connection's deliveries awaiting their ACK: what an ACK leaves behind (nothing), when and in
/// which order late ones expire, and the storage given back when it is empty.
final class AwaitingAcksTests: XCTestCase {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    private let chunk = OutputChunk()

    private func entry(_ id: GUID, deadline: NIODeadline) -> AwaitingAck {
        let delivery = Delivery(
            messageID: id, upstream: .connection(shard: 0, id: 1), recipients: [GUID(high: 9, low: 9)], sender: GUID(high: 8, low: 8))
        return AwaitingAck(delivery, deadline: deadline, chunk: chunk, offset: 0, length: 10)
    }

    /// Adds as the shard does: one access, which claims the new entry.
    private func deliver(_ id: GUID, deadline: NIODeadline, to awaiting: inout AwaitingAcks) {
        var isNew = false
        awaiting[id, default: entry(id, deadline: deadline)].claim(for: .connection(shard: 0, id: 1), isNew: &isNew)
        XCTAssertTrue(isNew)
    }

    func testAnAckedDeliveryLeavesNothingBehind() {
        var awaiting = AwaitingAcks()
        // 100,000 deliveries, each ACKed before the next: what is kept never grows past one entry
        // (a shard-wide queue of deadlines kept every one of them until its deadline).
        for n in 1...100_000 {
            let id = GUID(high: UInt64(n), low: 1)
            deliver(id, deadline: start + .seconds(10), to: &awaiting)
            XCTAssertEqual(awaiting.count, 1)
            XCTAssertNotNil(awaiting.removeValue(forKey: id))
        }
        XCTAssertTrue(awaiting.isEmpty)
        // Nothing expires: the sweep past the deadline finds nothing and then has nothing to wait for.
        XCTAssertTrue(awaiting.removeExpired(now: start + .seconds(11)).isEmpty)
        XCTAssertNil(awaiting.nextDeadline)
    }

    func testExpiredEntriesComeInDeliveryOrderAndTheRestStay() {
        var awaiting = AwaitingAcks()
        // Equal deadlines (one tick of the shard's clock), then later ones.
        let ids = (1...20).map { GUID(high: UInt64($0 * 7919 % 101), low: UInt64($0)) }
        for (n, id) in ids.enumerated() {
            deliver(id, deadline: start + .seconds(n < 15 ? 10 : 20), to: &awaiting)
        }
        XCTAssertEqual(awaiting.nextDeadline, start + .seconds(10))
        XCTAssertNotNil(awaiting.removeValue(forKey: ids[3]))  // ACKed in time
        XCTAssertTrue(awaiting.removeExpired(now: start + .seconds(9)).isEmpty)
        XCTAssertFalse(awaiting.hasExpired(now: start + .seconds(9)))
        XCTAssertTrue(awaiting.hasExpired(now: start + .seconds(10)))
        XCTAssertEqual(awaiting.count, 19, "asking removes nothing")

        let expired = awaiting.removeExpired(now: start + .seconds(10))
        XCTAssertEqual(expired.map(\.id), Array(ids[0..<3] + ids[4..<15]))
        XCTAssertEqual(awaiting.count, 5)
        XCTAssertEqual(awaiting.nextDeadline, start + .seconds(20))
        XCTAssertEqual(awaiting.removeExpired(now: start + .seconds(25)).map(\.id), Array(ids[15...]))
        XCTAssertNil(awaiting.nextDeadline)
    }

    /// For the existing client the entries leave when their write completes: a deadline that
    /// passed with nothing left due moves on to the earliest entry left.
    func testAPassedDeadlineWithNothingDueMovesOn() {
        var awaiting = AwaitingAcks()
        let early = GUID(high: 1, low: 1)
        let late = GUID(high: 2, low: 2)
        deliver(early, deadline: start + .seconds(10), to: &awaiting)
        deliver(late, deadline: start + .seconds(12), to: &awaiting)
        awaiting.removeValue(forKey: early)
        XCTAssertEqual(awaiting.nextDeadline, start + .seconds(10), "a lower bound: a removal does not move it")
        XCTAssertFalse(awaiting.hasExpired(now: start + .seconds(11)))
        XCTAssertEqual(awaiting.nextDeadline, start + .seconds(12))
        XCTAssertTrue(awaiting.hasExpired(now: start + .seconds(12)))
    }

    func testARepeatClaimsTheEntryAlreadyThere() {
        var awaiting = AwaitingAcks()
        let id = GUID(high: 5, low: 5)
        deliver(id, deadline: start + .seconds(10), to: &awaiting)
        var isNew = false
        awaiting[id, default: entry(id, deadline: start + .seconds(30))].claim(for: .stored(seq: 4), isNew: &isNew)
        XCTAssertFalse(isNew)
        XCTAssertEqual(awaiting[id]?.more?.count, 1)
        XCTAssertEqual(awaiting[id]?.deadline, start + .seconds(10), "the first delivery's deadline stands")
        XCTAssertEqual(awaiting.removeExpired(now: start + .seconds(10)).map(\.id), [id])
    }

    /// An entry put in through the plain subscript (as the shard does for a held copy) still expires.
    func testAnEntrySetThroughThePlainSubscriptExpires() {
        var awaiting = AwaitingAcks()
        let id = GUID(high: 6, low: 6)
        awaiting[id] = entry(id, deadline: start + .seconds(10))
        XCTAssertEqual(awaiting.removeExpired(now: start + .seconds(10)).map(\.id), [id])
    }

    func testAnEmptyTableGivesBackItsStorage() {
        var awaiting = AwaitingAcks()
        for n in 1...64 { deliver(GUID(high: UInt64(n), low: 2), deadline: start + .seconds(10), to: &awaiting) }
        for n in 1...64 { awaiting.removeValue(forKey: GUID(high: UInt64(n), low: 2)) }
        XCTAssertGreaterThanOrEqual(awaiting.capacity, 64, "a dictionary keeps its storage when emptied")
        awaiting.releaseStorageIfEmpty()
        XCTAssertEqual(awaiting.capacity, 0)
        // Not while something is awaited.
        deliver(GUID(high: 1, low: 3), deadline: start + .seconds(10), to: &awaiting)
        let capacity = awaiting.capacity
        awaiting.releaseStorageIfEmpty()
        XCTAssertEqual(awaiting.capacity, capacity)
        XCTAssertEqual(awaiting.count, 1)
    }

    // MARK: - the ring and its index

    /// Answers in any order find their own entries, and the rest stay in delivery order.
    func testAnswersOutOfOrderFindTheirEntries() {
        var awaiting = AwaitingAcks()
        let ids = (1...50).map { GUID(high: UInt64($0), low: 7) }
        for id in ids { deliver(id, deadline: start + .seconds(10), to: &awaiting) }
        // Every third first, from the newest down, then the rest oldest first.
        let order = ids.indices.filter { $0 % 3 == 1 }.reversed() + ids.indices.filter { $0 % 3 != 1 }
        var left = ids
        for index in order {
            let removed = awaiting.removeValue(forKey: ids[index])
            XCTAssertEqual(removed?.order, UInt64(index + 1), "the entry of \(ids[index])")
            XCTAssertNil(awaiting.removeValue(forKey: ids[index]), "answered once only")
            left.removeAll { $0 == ids[index] }
            XCTAssertEqual(awaiting.count, left.count)
            XCTAssertEqual(awaiting.map(\.key), left, "the rest in delivery order")
        }
        XCTAssertTrue(awaiting.isEmpty)
    }

    /// One delivery never answered while thousands after it are: the table stays the size of what
    /// is in flight (the ring closes its gaps), and the old entry is still found and expires.
    func testAnUnansweredEntryDoesNotGrowTheTable() {
        var awaiting = AwaitingAcks()
        let stuck = GUID(high: 1, low: 1)
        deliver(stuck, deadline: start + .seconds(10), to: &awaiting)
        for n in 2...10_000 {
            let id = GUID(high: UInt64(n), low: 1)
            deliver(id, deadline: start + .seconds(20), to: &awaiting)
            XCTAssertNotNil(awaiting.removeValue(forKey: id))
        }
        XCTAssertEqual(awaiting.count, 1)
        XCTAssertLessThanOrEqual(awaiting.capacity, 16, "sized for two entries in flight, not for the traffic")
        XCTAssertNotNil(awaiting[stuck])
        XCTAssertEqual(awaiting.removeExpired(now: start + .seconds(10)).map(\.id), [stuck])
    }

    /// A window of deliveries sliding over many ids, answered oldest first with every fifth
    /// answered late: every id in flight is found, every answered one is not (the index is
    /// rebuilt many times over), and a repeat of one in flight claims it.
    func testAWindowOfDeliveriesIsFoundWhileTheIndexIsRebuilt() {
        var awaiting = AwaitingAcks()
        let ids = (1...3_000).map { GUID(high: UInt64($0) &* 0x9E37_79B9_7F4A_7C15, low: UInt64($0)) }
        var inFlight: [GUID] = []
        XCTAssertFalse(awaiting.contains(ids[0]), "nothing delivered yet")
        for (n, id) in ids.enumerated() {
            deliver(id, deadline: start + .seconds(10), to: &awaiting)
            inFlight.append(id)
            if inFlight.count > 64 {
                // The oldest, or the second oldest when the oldest is a late one.
                let answered = n % 5 == 0 && inFlight.count > 1 ? inFlight.remove(at: 1) : inFlight.removeFirst()
                XCTAssertNotNil(awaiting.removeValue(forKey: answered))
                XCTAssertNil(awaiting[answered])
                XCTAssertFalse(awaiting.contains(answered))
            }
            let probe = inFlight[n % inFlight.count]
            XCTAssertNotNil(awaiting[probe], "in flight after \(n) deliveries")
            XCTAssertTrue(awaiting.contains(probe))
        }
        XCTAssertEqual(awaiting.count, inFlight.count)
        XCTAssertEqual(awaiting.map(\.key), inFlight)
        var isNew = false
        awaiting[inFlight[10], default: entry(inFlight[10], deadline: start)].claim(for: .stored(seq: 1), isNew: &isNew)
        XCTAssertFalse(isNew, "a repeat of a delivery in flight")
        XCTAssertEqual(awaiting.count, inFlight.count)
    }

    /// The close takes a copy and empties the table: the copy keeps what it had, and a change to
    /// either after the copy leaves the other as it was.
    func testACopyKeepsItsEntries() {
        var awaiting = AwaitingAcks()
        let ids = (1...5).map { GUID(high: UInt64($0), low: 9) }
        for id in ids { deliver(id, deadline: start + .seconds(10), to: &awaiting) }
        let copy = awaiting
        awaiting.removeValue(forKey: ids[0])
        deliver(GUID(high: 6, low: 9), deadline: start + .seconds(10), to: &awaiting)
        XCTAssertEqual(copy.map(\.key), ids)
        XCTAssertEqual(awaiting.map(\.key), Array(ids.dropFirst()) + [GUID(high: 6, low: 9)])
        awaiting.removeAll()
        XCTAssertTrue(awaiting.isEmpty)
        XCTAssertEqual(copy.count, 5)
    }
}
