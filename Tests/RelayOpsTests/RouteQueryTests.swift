import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest

@testable import RelayCore
@testable import RelayOps

/// `GET /routes?limit=&match=`: what the dashboard asks for instead of the whole table.
final class RouteQueryTests: XCTestCase {
    private static let rows = (0..<500).map { index in
        RouteRow(node: "node\(index)@00000000-0000-4000-8000-\(String(format: "%012d", index))", ttl: 1, via: "local", legacy: false)
    }
    + [RouteRow(node: "Bob@0b370041-cd1e-40ac-ac59-0136bba850fe", ttl: 2, via: "8f0d3c52-6c4e-4f43-9f36-9b1c34a1a001", legacy: true)]

    func testQueryStringsAreParsed() throws {
        XCTAssertEqual(try RouteQuery(uri: "/routes"), RouteQuery())
        XCTAssertEqual(try RouteQuery(uri: "/routes?limit=200&match=bo%20b"), RouteQuery(limit: 200, match: "bo b"))
        XCTAssertEqual(try RouteQuery(uri: "/routes?match=&other=1"), RouteQuery(), "an empty match matches everything")
        XCTAssertEqual(try RouteQuery(uri: "/routes?limit=0"), RouteQuery(limit: 0))
        for bad in ["/routes?limit=-1", "/routes?limit=many", "/routes?limit="] {
            XCTAssertThrowsError(try RouteQuery(uri: bad), bad)
        }
    }

    func testSelectMatchesNameOrIDIgnoringCaseAndKeepsTheFirstRows() {
        let all = RouteQuery().select(Self.rows)
        XCTAssertEqual(all.rows.count, 501)
        XCTAssertEqual(all.matched, 501)

        let first = RouteQuery(limit: 200).select(Self.rows)
        XCTAssertEqual(first.rows.map(\.node), Self.rows.prefix(200).map(\.node), "the first rows, in the table's order")
        XCTAssertEqual(first.matched, 501)

        let bob = RouteQuery(limit: 200, match: "bOB").select(Self.rows)
        XCTAssertEqual(bob.rows.map(\.node), ["Bob@0b370041-cd1e-40ac-ac59-0136bba850fe"])
        XCTAssertEqual(bob.matched, 1)
        XCTAssertEqual(RouteQuery(match: "0B370041-CD1E").select(Self.rows).matched, 1, "by id")

        let node4 = RouteQuery(limit: 3, match: "node4").select(Self.rows)
        XCTAssertEqual(node4.matched, 111, "node4, node40-49, node400-499")
        XCTAssertEqual(node4.rows.map(\.node).map { String($0.prefix(while: { $0 != "@" })) }, ["node4", "node40", "node41"])
        XCTAssertEqual(RouteQuery(limit: 5, match: "nobody").select(Self.rows).rows.count, 0)
    }

    func testRoutesJSONCountsEveryRouteAndCarriesOnlyTheSelectedOnes() throws {
        let collector = StatsCollector(readiness: Readiness(), routes: { Self.rows }, source: FakeRelay().source())
        let json = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(collector.routesJSON(RouteQuery(limit: 2, match: "node1")))) as? [String: Any])
        XCTAssertEqual(json["count"] as? Int, 501)
        XCTAssertEqual(json["matched"] as? Int, 111)
        let routes = try XCTUnwrap(json["routes"] as? [[String: Any]])
        XCTAssertEqual(routes.compactMap { $0["node"] as? String }.map { $0.prefix(while: { $0 != "@" }) }, ["node1", "node10"])

        let whole = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(collector.routesJSON())) as? [String: Any])
        XCTAssertEqual((whole["routes"] as? [Any])?.count, 501, "no query: the whole table, as before")
        XCTAssertEqual(whole["matched"] as? Int, 501)
    }
}
