import Foundation
import PTPProtocol
import RelayMesh
import XCTest

final class RouteTableTests: XCTestCase {
    private let me = relay(1)
    private let p = relay(2)
    private let q = relay(3)
    private let r = relay(4)
    private let x = node(1)
    private let y = node(2)
    private let z = node(3)

    // MARK: Preference

    func testRouteFromAPeerIsOneHopLongerThanItsEntry() {
        var table = RouteTable.make(1, peers: [p])
        let result = table.receive([entry(x, ttl: 1, seq: 2, legacy: true)], from: p)
        XCTAssertEqual(result.applied, 1)
        XCTAssertEqual(table.route(to: x), Route(node: address(x), nextHop: .peer(p), ttl: 2, seq: 2, legacy: true))
        XCTAssertEqual(table.nextHopPeer(for: x), p)
        XCTAssertEqual(table.reachableCount, 1)
        XCTAssertEqual(table.routesVia(p), 1)
        XCTAssertEqual(table.reachableNodes().map(\.node.id), [x])
    }

    func testNewerSequenceNumberWinsOverAShorterRoute() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 1, seq: 2)], from: p)
        _ = table.receive([entry(x, ttl: 5, seq: 4)], from: q)
        XCTAssertEqual(table.route(to: x)?.nextHop, .peer(q))
        XCTAssertEqual(table.route(to: x)?.ttl, 6)
        XCTAssertEqual(table.route(to: x)?.seq, 4)
        // However short, the older number stays beaten.
        let result = table.receive([entry(x, ttl: 1, seq: 2)], from: p)
        XCTAssertEqual(result.ignored, 1)
        XCTAssertEqual(table.nextHopPeer(for: x), q)
    }

    func testAtTheSameNumberTheShorterRouteWins() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 3, seq: 2)], from: p)
        XCTAssertEqual(table.route(to: x)?.ttl, 4)
        _ = table.receive([entry(x, ttl: 1, seq: 2)], from: q)
        XCTAssertEqual(table.nextHopPeer(for: x), q)
        XCTAssertEqual(table.route(to: x)?.ttl, 2)
        XCTAssertEqual(table.routesVia(p), 0)
        XCTAssertEqual(table.routesVia(q), 1)
    }

    func testOnATieTheNextHopStays() {
        for (first, second) in [(p, q), (q, p)] {
            var table = RouteTable.make(1, peers: [p, q])
            _ = table.receive([entry(x, ttl: 2, seq: 2)], from: first)
            XCTAssertEqual(table.takeChanges().ids, [x])
            let result = table.receive([entry(x, ttl: 2, seq: 2)], from: second)
            XCTAssertEqual(result.ignored, 1)
            XCTAssertEqual(table.nextHopPeer(for: x), first)
            XCTAssertEqual(table.takeChanges().ids, [], "a tie changes nothing to advertise")
        }
    }

    // MARK: Withdrawals and odd numbers

    func testTTL31And32FromTheNextHopAreWithdrawals() {
        for ttl in [31, 32] {
            var table = RouteTable.make(1, peers: [p, q])
            _ = table.receive([entry(x, ttl: 1, seq: 2)], from: p)
            _ = table.takeChanges().ids
            let result = table.receive([entry(x, ttl: ttl, seq: 2)], from: p)
            XCTAssertEqual(result.applied, 1)
            XCTAssertNil(table.route(to: x), "ttl \(ttl)")
            XCTAssertEqual(table.reachableCount, 0)
            XCTAssertEqual(table.routesVia(p), 0)
            XCTAssertEqual(table.takeChanges().ids, [x])
            // Passed on as unreachable with the odd number above the route's.
            XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 32, seq: 3))
        }
        // Without numbers as well.
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 1, seq: nil)], from: p)
        XCTAssertEqual(table.route(to: x)?.ttl, 2)
        _ = table.receive([entry(x, ttl: 31, seq: nil)], from: p)
        XCTAssertNil(table.route(to: x))
        XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 32, seq: nil))
    }

    func testAnOddNumberFromTheNextHopRemovesTheRouteAndIsPassedOn() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 1, seq: 4)], from: p)
        _ = table.takeChanges().ids
        _ = table.receive([entry(x, ttl: 32, seq: 5)], from: p)
        XCTAssertNil(table.route(to: x))
        XCTAssertEqual(table.takeChanges().ids, [x])
        XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 32, seq: 5))
        XCTAssertEqual(table.advertised(x, to: p), entry(x, ttl: 32, seq: 5))
    }

    func testAnOddNumberFromAnotherPeerKeepsTheRouteAndClimbsToTheNextHop() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 1, seq: 4)], from: p)
        _ = table.takeChanges().ids
        let result = table.receive([entry(x, ttl: 32, seq: 5)], from: q)
        XCTAssertEqual(table.nextHopPeer(for: x), p, "this route may not use the broken link")
        XCTAssertEqual(table.route(to: x)?.ttl, 2)
        XCTAssertEqual(result.applied, 1, "the poisoned entry to the next hop changed")
        XCTAssertEqual(table.takeChanges().ids, [x])
        // The news travels to the next hop (towards the origin) inside the poisoned entry...
        XCTAssertEqual(table.advertised(x, to: p), entry(x, ttl: 32, seq: 5))
        // ...while the other peers still get the route.
        XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 2, seq: 4))
    }

    func testAFeasibleAlternativeTakesOverWithoutAWithdrawal() {
        var table = RouteTable.make(1, peers: [p, q, r])
        _ = table.receive([entry(x, ttl: 2, seq: 4)], from: p)
        _ = table.receive([entry(x, ttl: 2, seq: 4)], from: q)
        XCTAssertEqual(table.nextHopPeer(for: x), p)
        _ = table.takeChanges().ids
        table.peerDown(p)
        XCTAssertEqual(table.route(to: x), Route(node: address(x), nextHop: .peer(q), ttl: 3, seq: 4, legacy: false))
        XCTAssertEqual(table.advertised(x, to: r), entry(x, ttl: 3, seq: 4), "no withdrawal, no new number")
    }

    func testOnceABreakIsKnownNoNewNextHopIsTakenAtTheOldNumber() {
        var table = RouteTable.make(1, peers: [p, q, r])
        _ = table.receive([entry(x, ttl: 2, seq: 4)], from: p)
        _ = table.receive([entry(x, ttl: 2, seq: 4)], from: q)
        _ = table.receive([entry(x, ttl: 32, seq: 5)], from: r)
        XCTAssertEqual(table.nextHopPeer(for: x), p)
        table.peerDown(p)
        // q's offer at 4 may be a copy of the broken path: wait for the origin's next number.
        XCTAssertNil(table.route(to: x))
        XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 32, seq: 5))
        _ = table.receive([entry(x, ttl: 2, seq: 6)], from: q)
        XCTAssertEqual(table.route(to: x)?.nextHop, .peer(q))
        XCTAssertEqual(table.route(to: x)?.seq, 6)
    }

    func testALongerRouteAtTheSameNumberWaitsForANewNumber() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 1, seq: 4)], from: p)
        _ = table.receive([entry(x, ttl: 3, seq: 4)], from: q)
        table.peerDown(p)
        // q's route is longer than ours was: it may run through this relay. Not feasible.
        XCTAssertNil(table.route(to: x))
        XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 32, seq: 5))
        _ = table.receive([entry(x, ttl: 3, seq: 6)], from: q)
        XCTAssertEqual(table.route(to: x)?.ttl, 4)
    }

    // MARK: Advertising

    func testPoisonedReverseToTheNextHop() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 1, seq: 4)], from: p)
        table.addLocal(address(y), legacy: false)
        XCTAssertEqual(table.advertised(x, to: p), entry(x, ttl: 32, seq: 4), "ttl 32, the number kept")
        XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 2, seq: 4))
        XCTAssertEqual(table.advertised(y, to: p), entry(y, ttl: 1, seq: 0), "a local node is never poisoned")

        let toP = Dictionary(uniqueKeysWithValues: table.fullAdvertisement(to: p).map { ($0.node.id, $0) })
        let toQ = Dictionary(uniqueKeysWithValues: table.fullAdvertisement(to: q).map { ($0.node.id, $0) })
        XCTAssertEqual(toP.count, 3)
        XCTAssertEqual(toP[x], entry(x, ttl: 32, seq: 4))
        XCTAssertEqual(toQ[x], entry(x, ttl: 2, seq: 4))
        XCTAssertEqual(toP[y], entry(y, ttl: 1, seq: 0))
        XCTAssertEqual(toP[me], MeshRouteEntry(node: NodeAddress(id: me, name: "r1"), ttl: 1, seq: 0))
    }

    func testPeerDownRemovesItsRoutesAtOnceAndWithdrawsThem() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 1, seq: 2), entry(y, ttl: 3, seq: 4)], from: p)
        _ = table.receive([entry(z, ttl: 1, seq: 6)], from: q)
        XCTAssertEqual(table.routesVia(p), 2)
        _ = table.takeChanges().ids

        table.peerDown(p)
        XCTAssertNil(table.route(to: x))
        XCTAssertNil(table.route(to: y))
        XCTAssertEqual(table.nextHopPeer(for: z), q)
        XCTAssertEqual(table.routesVia(p), 0)
        XCTAssertEqual(table.reachableCount, 1)
        XCTAssertEqual(Set(table.takeChanges().ids), [x, y])
        XCTAssertEqual(
            table.advertisement(to: q, of: [x, y]), [entry(x, ttl: 32, seq: 3), entry(y, ttl: 32, seq: 5)])
        // A peer that is down is not listened to.
        let late = table.receive([entry(x, ttl: 1, seq: 8)], from: p)
        XCTAssertEqual(late.ignored, 1)
        XCTAssertNil(table.route(to: x))
    }

    // MARK: The origin

    func testTheOriginTakesANewNumberOnANewerWithdrawal() {
        var table = RouteTable.make(1, peers: [p])
        table.addLocal(address(x), legacy: false)
        XCTAssertEqual(table.route(to: x)?.seq, 0)
        _ = table.takeChanges().ids

        // The poisoned echo of its own number is no news.
        XCTAssertEqual(table.receive([entry(x, ttl: 32, seq: 0)], from: p).ignored, 1)
        XCTAssertEqual(table.takeChanges().ids, [])

        let result = table.receive([entry(x, ttl: 32, seq: 1)], from: p)
        XCTAssertEqual(result.applied, 1)
        XCTAssertEqual(table.route(to: x), Route(node: address(x), nextHop: .local, ttl: 1, seq: 2, legacy: false))
        XCTAssertEqual(table.takeChanges().ids, [x])
        XCTAssertEqual(table.advertised(x, to: p), entry(x, ttl: 1, seq: 2))

        _ = table.receive([entry(x, ttl: 31, seq: 7)], from: p)
        XCTAssertEqual(table.route(to: x)?.seq, 8)
        _ = table.receive([entry(x, ttl: 32, seq: 5)], from: p)
        XCTAssertEqual(table.route(to: x)?.seq, 8, "older news")
    }

    func testARelayTakesANewNumberForItselfOnANewerWithdrawal() {
        var table = RouteTable.make(1, peers: [p])
        _ = table.receive([MeshRouteEntry(node: NodeAddress(id: me, name: "r1"), ttl: 32, seq: 3)], from: p)
        XCTAssertEqual(table.selfSeq, 4)
        XCTAssertEqual(table.takeChanges().ids, [me])
        XCTAssertEqual(
            table.advertisement(to: p, of: [me]), [MeshRouteEntry(node: NodeAddress(id: me, name: "r1"), ttl: 1, seq: 4)])
        _ = table.receive([MeshRouteEntry(node: NodeAddress(id: me, name: "r1"), ttl: 32, seq: 4)], from: p)
        XCTAssertEqual(table.selfSeq, 4)
        XCTAssertNil(table.route(to: me), "the relay is not a route to itself")
    }

    func testAPeerIsRoutedAtOneHopFromItsOwnEntry() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(p, ttl: 1, seq: 6)], from: p)
        XCTAssertEqual(table.route(to: p), Route(node: address(p), nextHop: .peer(p), ttl: 1, seq: 6, legacy: false))
        XCTAssertEqual(table.advertised(p, to: q), entry(p, ttl: 1, seq: 6))
        XCTAssertEqual(table.advertised(p, to: p), entry(p, ttl: 32, seq: 6))
        _ = table.receive([entry(p, ttl: 1, seq: 6)], from: q)
        XCTAssertEqual(table.nextHopPeer(for: p), p)

        // The link goes: q's route is longer, so it waits for p's next number.
        table.peerDown(p)
        XCTAssertNil(table.route(to: p))
        XCTAssertEqual(table.advertised(p, to: q), entry(p, ttl: 32, seq: 7))
        _ = table.receive([entry(p, ttl: 1, seq: 8)], from: q)
        XCTAssertEqual(table.route(to: p)?.ttl, 2)
    }

    func testAddLocalAfterAMoveStartsAboveTheKnownNumber() {
        var table = RouteTable(selfID: me, initialSeq: 1001)
        table.peerUp(p)
        _ = table.receive([entry(x, ttl: 1, seq: 10)], from: p)
        table.addLocal(address(x), legacy: true)
        XCTAssertEqual(table.route(to: x), Route(node: address(x), nextHop: .local, ttl: 1, seq: 12, legacy: true))
        XCTAssertNil(table.nextHopPeer(for: x))
        XCTAssertEqual(table.advertised(x, to: p), entry(x, ttl: 1, seq: 12, legacy: true))

        // A withdrawal counts as known too.
        _ = table.receive([entry(y, ttl: 1, seq: 10), entry(y, ttl: 32, seq: 11)], from: p)
        table.addLocal(address(y), legacy: false)
        XCTAssertEqual(table.route(to: y)?.seq, 12)

        // Nothing known: the initial number (rounded down to even).
        table.addLocal(address(z), legacy: false)
        XCTAssertEqual(table.route(to: z)?.seq, 1000)
        XCTAssertEqual(table.selfSeq, 1000)
    }

    func testALeavingClientIsWithdrawnWithTheOddNumberAndComesBackAboveIt() {
        var table = RouteTable.make(1, peers: [p])
        table.addLocal(address(x), legacy: false)
        XCTAssertEqual(table.reachableCount, 1)
        table.removeLocal(x)
        XCTAssertNil(table.route(to: x))
        XCTAssertEqual(table.reachableCount, 0)
        XCTAssertEqual(table.advertised(x, to: p), entry(x, ttl: 32, seq: 1))
        table.addLocal(address(x), legacy: false)
        XCTAssertEqual(table.route(to: x)?.seq, 2)
    }

    func testAClientThatMovedAwayIsRoutedToItsNewPlace() {
        var table = RouteTable.make(1, peers: [p])
        table.addLocal(address(x), legacy: false)
        // The new origin's entry arrives before this relay noticed the client left.
        let result = table.receive([entry(x, ttl: 1, seq: 2)], from: p)
        XCTAssertEqual(result.collisions.count, 1)
        XCTAssertEqual(table.route(to: x)?.nextHop, .local, "the local route wins while it lasts")
        table.removeLocal(x)
        XCTAssertEqual(table.route(to: x), Route(node: address(x), nextHop: .peer(p), ttl: 2, seq: 2, legacy: false))
    }

    // MARK: Validation and collisions

    func testInvalidEntriesAreCountedAndNeverApplied() {
        var table = RouteTable.make(1, peers: [p])
        let result = table.receive(
            [
                entry(x, ttl: 0, seq: 2),
                entry(x, ttl: 33, seq: 2),
                entry(x, ttl: -1, seq: nil),
                entry(.zero, ttl: 1, seq: 2),
                entry(x, ttl: 2, seq: 3),  // an odd number on a live route
                entry(p, ttl: 2, seq: 2),  // a relay names itself at 1 only
                entry(y, ttl: 1, seq: 2),
            ], from: p)
        XCTAssertEqual(result.invalid, 6)
        XCTAssertEqual(result.applied, 1)
        XCTAssertNil(table.route(to: x))
        XCTAssertNil(table.route(to: p))
        XCTAssertNil(table.route(to: .zero))
        XCTAssertEqual(table.reachableCount, 1)
    }

    func testCollisionsAreReported() {
        var table = RouteTable(selfID: me, initialSeq: 4)
        table.peerUp(p)
        table.addLocal(address(x), legacy: false)
        func collisions(_ entries: [MeshRouteEntry]) -> [RouteCollision] {
            table.receive(entries, from: p).collisions
        }
        XCTAssertEqual(collisions([entry(x, ttl: 1, seq: 2)]), [], "an older claim: the relay the node left")
        XCTAssertEqual(
            collisions([entry(x, ttl: 1, seq: 4)]),
            [RouteCollision(node: address(x), peer: p, ttl: 1, seq: 4, localSeq: 4)])
        XCTAssertEqual(collisions([entry(x, ttl: 1, seq: nil)]).count, 1)
        XCTAssertEqual(collisions([entry(x, ttl: 3, seq: 6)]).count, 1, "a newer number anywhere")
        XCTAssertEqual(collisions([entry(x, ttl: 3, seq: 4)]), [], "our own route, through others")
        XCTAssertEqual(collisions([entry(x, ttl: 32, seq: 4)]), [])
        XCTAssertEqual(table.route(to: x)?.nextHop, .local)
        XCTAssertEqual(table.route(to: x)?.seq, 4)
        // This relay's own id.
        XCTAssertEqual(collisions([entry(me, ttl: 1, seq: 4)]).count, 1)
        XCTAssertEqual(collisions([entry(me, ttl: 1, seq: 2)]), [])
        XCTAssertNil(table.route(to: me))
    }

    // MARK: Sequence numbers

    func testSequenceNumbersCompareAcrossTheWraparound() {
        XCTAssertTrue(RouteSequence.isNewer(1, than: 0xFFFF_FFFE))
        XCTAssertFalse(RouteSequence.isNewer(0xFFFF_FFFE, than: 1))
        XCTAssertTrue(RouteSequence.isNewer(0, than: 0xFFFF_FFFF))
        XCTAssertTrue(RouteSequence.isNewer(0x7FFF_FFFF, than: 0))
        XCTAssertFalse(RouteSequence.isNewer(0x8000_0000, than: 0), "half the space apart: unordered")
        XCTAssertFalse(RouteSequence.isNewer(0, than: 0x8000_0000))
        XCTAssertFalse(RouteSequence.isNewer(5, than: 5))
        XCTAssertEqual(RouteSequence.nextEven(after: 4), 6)
        XCTAssertEqual(RouteSequence.nextEven(after: 5), 6)
        XCTAssertEqual(RouteSequence.nextEven(after: 0xFFFF_FFFE), 0)
        XCTAssertEqual(RouteSequence.nextEven(after: 0xFFFF_FFFF), 0)
        XCTAssertEqual(RouteSequence.broken(4), 5)

        var table = RouteTable(selfID: me, initialSeq: 0xFFFF_FFFE)
        table.peerUp(p)
        table.peerUp(q)
        _ = table.receive([entry(x, ttl: 1, seq: 0xFFFF_FFFE)], from: p)
        _ = table.receive([entry(x, ttl: 3, seq: 0)], from: q)
        XCTAssertEqual(table.nextHopPeer(for: x), q, "0 is newer than 0xFFFFFFFE")
        table.addLocal(address(y), legacy: false)
        XCTAssertEqual(table.route(to: y)?.seq, 0xFFFF_FFFE)
        _ = table.receive([entry(y, ttl: 32, seq: 0xFFFF_FFFF)], from: p)
        XCTAssertEqual(table.route(to: y)?.seq, 0)
    }

    // MARK: Batching and memory

    func testManyChangesMakeOneListUntilTaken() {
        var table = RouteTable.make(1, peers: [p, q])
        let ids = (0..<1000).map { node($0) }
        for batch in stride(from: 0, to: ids.count, by: 100) {
            let slice = ids[batch..<batch + 100]
            _ = table.receive(slice.map { entry($0, ttl: 3, seq: 2) }, from: p)
            _ = table.receive(slice.map { entry($0, ttl: 1, seq: 2) }, from: q)
            _ = table.receive(slice.map { entry($0, ttl: 2, seq: 4) }, from: p)
        }
        XCTAssertEqual(table.takeChanges().ids, ids, "each id once, in the order of its first change")
        XCTAssertEqual(table.takeChanges().ids, [])
        XCTAssertEqual(table.advertisement(to: q, of: Array(ids.prefix(1))), [entry(ids[0], ttl: 3, seq: 4)])
    }

    func testChangesSayWhetherTheyAreUrgent() {
        var table = RouteTable.make(1, peers: [p, q])
        func urgency(_ change: (inout RouteTable) -> Void) -> Bool? {
            _ = table.takeChanges()
            change(&table)
            let changes = table.takeChanges()
            return changes.isEmpty ? nil : changes.urgent
        }
        XCTAssertEqual(urgency { _ = $0.receive([entry(x, ttl: 3, seq: 2)], from: p) }, false, "a new node")
        // A shorter route is a repair (a relay or link came back): it may not wait a whole
        // interval per relay (MeshRelaySimulationTests: a revived relay in 50 took 3.1 intervals).
        XCTAssertEqual(urgency { _ = $0.receive([entry(x, ttl: 1, seq: 2)], from: q) }, true, "a shorter route")
        XCTAssertEqual(urgency { _ = $0.receive([entry(x, ttl: 2, seq: 4)], from: p) }, true, "a new number")
        XCTAssertEqual(urgency { _ = $0.receive([entry(x, ttl: 32, seq: 5)], from: q) }, true, "a break climbing")
        XCTAssertEqual(urgency { _ = $0.receive([entry(x, ttl: 32, seq: 5)], from: p) }, true, "a withdrawal")
        XCTAssertEqual(urgency { $0.addLocal(address(y), legacy: false) }, false, "a new client")
        XCTAssertEqual(urgency { $0.removeLocal(y) }, true, "a client leaving")
        XCTAssertEqual(urgency { $0.addLocal(address(x), legacy: false) }, true, "a known node moving here")
        XCTAssertEqual(urgency { _ = $0.receive([entry(x, ttl: 32, seq: 7)], from: p) }, true, "the origin's new number")
        XCTAssertEqual(urgency { _ = $0.receive([entry(z, ttl: 2, seq: 2)], from: p) }, false)
        XCTAssertEqual(urgency { $0.peerDown(p) }, true, "routes lost with the peer")
    }

    func testARouteTooLongToAdvertiseDoesNotAskForNewNumbers() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 30, seq: 4)], from: p)
        XCTAssertEqual(table.route(to: x)?.ttl, 31)
        XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 31, seq: 4), "a withdrawal for q")
        // Beyond the horizon only withdrawals at the even number arrive: they are repeated as they
        // are. An odd number would make the origin bump, the new number would come back just as
        // long, and the relay would ask again, for ever.
        _ = table.receive([entry(y, ttl: 31, seq: 6)], from: p)
        XCTAssertNil(table.route(to: y))
        XCTAssertEqual(table.knownCount, 1, "nothing to withdraw for a node never reached")
        _ = table.receive([entry(x, ttl: 31, seq: 6)], from: p)
        XCTAssertNil(table.route(to: x))
        XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 32, seq: 6), "even: no new number asked")
    }

    func testAPeerOfferingAnOlderNumberThanAWithdrawalIsToldAboutIt() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 1, seq: 40)], from: p)
        table.peerDown(p)
        XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 32, seq: 41))
        _ = table.takeChanges()
        // q's origin restarted and offers x at 0: the older number is not feasible, and q must
        // learn 41 so that its origin outbids it.
        let result = table.receive([entry(x, ttl: 1, seq: 0)], from: q)
        XCTAssertEqual(result.ignored, 1)
        XCTAssertNil(table.route(to: x))
        XCTAssertEqual(table.takeChanges(), RouteChanges(ids: [x], urgent: true))
        XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 32, seq: 41))
        _ = table.receive([entry(x, ttl: 1, seq: 42)], from: q)
        XCTAssertEqual(table.route(to: x)?.nextHop, .peer(q))
    }

    func testWithdrawalsAreForgottenOnceAdvertised() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 1, seq: 2)], from: p)
        _ = table.receive([entry(x, ttl: 32, seq: 3)], from: p)
        XCTAssertEqual(table.knownCount, 1)
        // Not handed out yet: kept however long.
        XCTAssertEqual(table.expireWithdrawals(), 0)
        XCTAssertEqual(table.expireWithdrawals(), 0)
        XCTAssertEqual(table.takeChanges().ids, [x])
        // Kept through one more refresh, in the full tables...
        XCTAssertEqual(table.expireWithdrawals(), 0)
        XCTAssertTrue(table.fullAdvertisement(to: q).contains(entry(x, ttl: 32, seq: 3)))
        // ...then forgotten.
        XCTAssertEqual(table.expireWithdrawals(), 1)
        XCTAssertEqual(table.knownCount, 0)
        XCTAssertEqual(table.fullAdvertisement(to: q).map(\.node.id), [me])

        // A node some peer still offers (at a number that is not feasible here) is kept: forgetting
        // it would forget why that offer must not be taken.
        _ = table.receive([entry(y, ttl: 1, seq: 2)], from: p)
        _ = table.receive([entry(y, ttl: 3, seq: 2)], from: q)
        _ = table.receive([entry(y, ttl: 32, seq: 3)], from: p)
        XCTAssertNil(table.route(to: y))
        _ = table.takeChanges().ids
        for _ in 0..<3 { table.expireWithdrawals() }
        XCTAssertEqual(table.knownCount, 1)
        XCTAssertNil(table.route(to: y))
    }

    func testEntriesWithoutNumbersArePlainDistanceVector() {
        var table = RouteTable.make(1, peers: [p, q])
        _ = table.receive([entry(x, ttl: 2, seq: nil)], from: p)
        XCTAssertEqual(table.route(to: x)?.ttl, 3)
        XCTAssertNil(table.route(to: x)?.seq)
        _ = table.receive([entry(x, ttl: 1, seq: nil)], from: q)
        XCTAssertEqual(table.nextHopPeer(for: x), q)
        // A numbered route wins even when longer...
        _ = table.receive([entry(x, ttl: 5, seq: 4)], from: p)
        XCTAssertEqual(table.route(to: x)?.nextHop, .peer(p))
        XCTAssertEqual(table.route(to: x)?.ttl, 6)
        XCTAssertEqual(table.advertised(x, to: q), entry(x, ttl: 6, seq: 4))
        // ...and the plain one is only used again when no peer offers a numbered one.
        _ = table.receive([entry(x, ttl: 32, seq: 5)], from: p)
        XCTAssertEqual(table.route(to: x), Route(node: address(x), nextHop: .peer(q), ttl: 2, seq: nil, legacy: false))
        XCTAssertEqual(table.advertised(x, to: p), entry(x, ttl: 2, seq: nil))
    }

    func testATenThousandNodeTableIsAdvertisedInMilliseconds() {
        let peers = (10..<14).map { relay($0) }
        var table = RouteTable.make(1, peers: peers)
        let started = Date()
        for (index, peer) in peers.enumerated() {
            let entries = (0..<2500).map { entry(node(UInt64(index * 2500 + $0)), ttl: 1 + $0 % 5, seq: 2) }
            _ = table.receive(entries, from: peer)
        }
        let received = Date()
        let full = table.fullAdvertisement(to: peers[0])
        let advertised = Date()
        XCTAssertEqual(table.reachableCount, 10_000)
        XCTAssertEqual(full.count, 10_001)
        XCTAssertEqual(full.filter { $0.ttl == 32 }.count, 2500, "poisoned reverse to the first peer")
        let receiveMS = received.timeIntervalSince(started) * 1000
        let fullMS = advertised.timeIntervalSince(received) * 1000
        print(String(format: "RouteTable 10,000 nodes: receive %.1f ms, full advertisement %.1f ms", receiveMS, fullMS))
        XCTAssertLessThan(fullMS, 500, "debug build; a release build takes a few ms")
    }

    // MARK: Small topologies: no counting to infinity

    /// Runs rounds until `done` holds (at most 32), checking that no relay's ttl for `node` ever
    /// climbs above `maxTTL` and that its next hops never loop; returns the number of rounds.
    private func rounds(
        _ mesh: inout RoundMesh, to node: GUID, maxTTL: Int, until done: (RoundMesh) -> Bool
    ) -> Int {
        for count in 0...32 {
            if done(mesh) { return count }
            mesh.round()
            XCTAssertLessThanOrEqual(mesh.maxTTL(to: node) ?? 0, maxTTL, "round \(count + 1)")
            XCTAssertFalse(mesh.hasLoop(to: node), "round \(count + 1)")
        }
        XCTFail("not done after 32 rounds: counting to infinity")
        return 33
    }

    private func nobodyRoutes(_ node: GUID, among relays: [GUID]) -> (RoundMesh) -> Bool {
        { mesh in relays.allSatisfy { mesh.tables[$0]!.route(to: node) == nil } }
    }

    func testTriangleAClientLeavesAndIsGoneEverywhereWithinARound() {
        let (a, b, c) = (relay(1), relay(2), relay(3))
        var mesh = RoundMesh(relays: [a, b, c])
        mesh.connect(a, b)
        mesh.connect(b, c)
        mesh.connect(c, a)
        mesh.tables[a]!.addLocal(address(x), legacy: false)
        mesh.settle()
        XCTAssertEqual(mesh.tables[b]!.route(to: x)?.ttl, 2)
        XCTAssertEqual(mesh.tables[c]!.route(to: a)?.ttl, 1)

        mesh.tables[a]!.removeLocal(x)
        let count = rounds(&mesh, to: x, maxTTL: 2, until: nobodyRoutes(x, among: [a, b, c]))
        XCTAssertLessThanOrEqual(count, 1)
        XCTAssertLessThanOrEqual(mesh.settle(), 2)
    }

    func testRingOfFourAClientLeavesAndIsGoneEverywhereWithinTwoRounds() {
        let ring = (1...4).map { relay($0) }
        var mesh = RoundMesh(relays: ring)
        for index in ring.indices { mesh.connect(ring[index], ring[(index + 1) % 4]) }
        mesh.tables[ring[0]]!.addLocal(address(x), legacy: false)
        mesh.settle()
        XCTAssertEqual(mesh.tables[ring[2]]!.route(to: x)?.ttl, 3)

        mesh.tables[ring[0]]!.removeLocal(x)
        let count = rounds(&mesh, to: x, maxTTL: 3, until: nobodyRoutes(x, among: ring))
        XCTAssertLessThanOrEqual(count, 2)
        XCTAssertLessThanOrEqual(mesh.settle(), 3)
    }

    /// The classic case split horizon does not fix: the origin hangs off a loop of three and its
    /// link fails. Plain distance vector counts up to 32 around the loop; here it is one wave.
    func testTriangleCutOffFromTheOriginDoesNotCountToInfinity() {
        let (a, b, c, origin) = (relay(1), relay(2), relay(3), relay(4))
        var mesh = RoundMesh(relays: [a, b, c, origin])
        mesh.connect(a, b)
        mesh.connect(b, c)
        mesh.connect(c, a)
        mesh.connect(a, origin)
        mesh.tables[origin]!.addLocal(address(x), legacy: false)
        mesh.settle()
        XCTAssertEqual(mesh.tables[b]!.route(to: x)?.ttl, 3)

        mesh.disconnect(a, origin)
        let count = rounds(&mesh, to: x, maxTTL: 3, until: nobodyRoutes(x, among: [a, b, c]))
        XCTAssertLessThanOrEqual(count, 1)
        XCTAssertNil(mesh.tables[a]!.route(to: origin))
        XCTAssertLessThanOrEqual(mesh.settle(), 3)
    }

    func testRingOfFourCutOffFromTheOriginDoesNotCountToInfinity() {
        let ring = (1...4).map { relay($0) }
        let origin = relay(5)
        var mesh = RoundMesh(relays: ring + [origin])
        for index in ring.indices { mesh.connect(ring[index], ring[(index + 1) % 4]) }
        mesh.connect(ring[0], origin)
        mesh.tables[origin]!.addLocal(address(x), legacy: false)
        mesh.settle()
        XCTAssertEqual(mesh.tables[ring[2]]!.route(to: x)?.ttl, 4)

        mesh.disconnect(ring[0], origin)
        let count = rounds(&mesh, to: x, maxTTL: 4, until: nobodyRoutes(x, among: ring))
        XCTAssertLessThanOrEqual(count, 2)
        XCTAssertLessThanOrEqual(mesh.settle(), 4)
    }

    /// A link of the ring fails and the relay behind it has no feasible route: its withdrawal
    /// climbs the remaining routes to the origin, whose new number comes back the other way round.
    /// That round trip (here 3 hops up and 3 down) is the price of never counting; in one round
    /// per hop it takes 6 rounds, while on a quiet mesh each hop goes out at once (see
    /// MeshSimulationTests). No loop and no ttl above the longest path at any round.
    func testRingOfFourLinkFailureFindsTheOtherWayWithoutCounting() {
        let ring = (1...4).map { relay($0) }
        var mesh = RoundMesh(relays: ring)
        for index in ring.indices { mesh.connect(ring[index], ring[(index + 1) % 4]) }
        mesh.tables[ring[0]]!.addLocal(address(x), legacy: false)
        mesh.settle()
        XCTAssertEqual(mesh.tables[ring[1]]!.nextHopPeer(for: x), ring[0])

        mesh.disconnect(ring[0], ring[1])
        let count = rounds(&mesh, to: x, maxTTL: 4) { mesh in
            mesh.tables[ring[1]]!.route(to: x)?.ttl == 4 && mesh.tables[ring[2]]!.route(to: x)?.ttl == 3
        }
        XCTAssertLessThanOrEqual(count, 6)
        XCTAssertEqual(mesh.tables[ring[1]]!.nextHopPeer(for: x), ring[2])
        XCTAssertEqual(mesh.tables[ring[2]]!.nextHopPeer(for: x), ring[3])
        XCTAssertLessThanOrEqual(mesh.settle(), 3)
        XCTAssertEqual(mesh.tables[ring[1]]!.route(to: ring[0])?.ttl, 3)
    }
}
