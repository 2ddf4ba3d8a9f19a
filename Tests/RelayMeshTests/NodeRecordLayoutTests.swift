import PTPProtocol
import XCTest

@testable import RelayMesh

final class NodeRecordLayoutTests: XCTestCase {
    /// Every client of the relay has a record, and the table has up to twice as many buckets as
    /// records: what only routes through peers need stays out of line (memory per connection,
    /// docs/operations.md).
    func testARecordIsSmallAndItsPeerPartOutOfLine() {
        XCTAssertLessThanOrEqual(MemoryLayout<NodeRecord>.stride, 48)
    }

    /// The out-of-line part keeps value semantics: a copy does not see the original's changes.
    func testACopyOfARecordKeepsItsOwnRoutes() throws {
        let node = NodeAddress(id: GUID.random(), name: "n")
        var original = NodeRecord(node: node, legacy: false)
        original.newestHeard = 4
        let copy = original
        original.newestHeard = 6
        original.unreachableSince = 3
        XCTAssertEqual(copy.newestHeard, 4)
        XCTAssertEqual(copy.unreachableSince, 0)
        XCTAssertEqual(original.newestHeard, 6)
        original.newestHeard = nil
        original.unreachableSince = 0
        XCTAssertNil(original.newestHeard)
    }
}
