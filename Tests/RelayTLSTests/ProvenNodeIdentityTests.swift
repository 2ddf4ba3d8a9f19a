import PTPProtocol
import RelayTLS
import XCTest

final class ProvenNodeIdentityTests: XCTestCase {
    func testCarriesTheNodeID() throws {
        let id = try XCTUnwrap(GUID("0b370041-cd1e-40ac-ac59-0136bba850fe"))
        XCTAssertEqual(ProvenNodeIdentity(nodeID: id).nodeID, id)
    }
}
