import PTPProtocol
import XCTest

@testable import RelayCore

/// The shared table of recently ACKed deliveries (de-duplication of re-sent messages).
final class RecentDeliveriesTests: XCTestCase {
    /// Ids a client numbers in order (relay-load's: sender index and run in `high`, a counter in
    /// `low`) spread over the table like random ones: far fewer than its capacity are all remembered.
    func testCountedIdsAreAllRemembered() {
        let table = RecentDeliveries(capacity: 1 << 20)
        let recipient = RecentDeliveries.key(GUID(high: 0x1234, low: 0x5678))
        let ids = (0..<UInt64(4096)).map { GUID(high: 0x0000_0007_0abc_4def, low: 8 << 60 | $0) }
        for id in ids { table.insert(recipient: recipient, id) }
        let remembered = ids.filter { table.contains(recipient: recipient, $0) }.count
        // 4,096 keys in 2^20 slots collide about 8 times (the old index put them in 2 slots).
        XCTAssertGreaterThan(remembered, 4000)
    }

    func testAnotherRecipientOrIdIsNotSeen() {
        let table = RecentDeliveries(capacity: 1024)
        let alice = RecentDeliveries.key(GUID(high: 1, low: 1))
        let bob = RecentDeliveries.key(GUID(high: 2, low: 2))
        let id = GUID(high: 42, low: 43)
        table.insert(recipient: alice, id)
        XCTAssertTrue(table.contains(recipient: alice, id))
        XCTAssertFalse(table.contains(recipient: bob, id))
        XCTAssertFalse(table.contains(recipient: alice, GUID(high: 42, low: 44)))
    }

    /// A table of 2 MiB or more starts on a 2 MiB boundary inside a larger mapping (for huge
    /// pages): every slot, to the last, is inside it. A smaller one is the mapping itself.
    func testEverySlotOfAnAlignedTableIsUsable() {
        for capacity in [1 << 17, 1 << 18, 1 << 12] {
            let table = RecentDeliveries(capacity: capacity)
            let recipient = RecentDeliveries.key(GUID(high: 7, low: 9))
            var random = SeededRandom(seed: UInt64(capacity))
            // Eight ids a slot: every slot is written, the last ones too.
            let ids = (0..<(8 * capacity)).map { _ in GUID(high: random.next(), low: random.next()) }
            for id in ids {
                table.prefetch(recipient: recipient, id)
                table.insert(recipient: recipient, id)
            }
            // The last `capacity / 8` ids were written after nearly all others: most are still there.
            let recent = ids.suffix(capacity / 8)
            let remembered = recent.filter { table.contains(recipient: recipient, $0) }.count
            XCTAssertGreaterThan(remembered, recent.count * 3 / 4, "capacity \(capacity)")
        }
    }
}
