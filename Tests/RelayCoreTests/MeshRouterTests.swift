import NIOCore
import PTPProtocol
import RelayMesh
import XCTest

@testable import RelayCore

/// The relay's shared mesh state (MeshRouter): the batching of ROUTING per peer, one connection per
/// pair of relays, and what it tells the shards.
final class MeshRouterTests: XCTestCase {
    let me = NodeAddress(id: GUID("00000000-0000-4000-8000-0000000000a0")!, name: "me")
    let small = NodeAddress(id: GUID("00000000-0000-4000-8000-000000000001")!, name: "small")
    let large = NodeAddress(id: GUID("ffffffff-0000-4000-8000-0000000000ff")!, name: "large")
    let interval = TimeAmount.milliseconds(250)

    private func client(_ n: Int) -> NodeAddress {
        NodeAddress(id: GUID(high: 0x1000_0000_0000_4000, low: 0x8000_0000_0000_0000 | UInt64(n)), name: "c\(n)")
    }

    func testAChangeGoesAtOnceThenChangesWaitForTheIntervalAndGoAsOneBatch() {
        let router = MeshRouter(identity: me, registry: NodeRegistry())
        XCTAssertEqual(router.peerProven(small, at: NodeLocation(shard: 0, connection: 1), dialedAddress: nil, remoteAddress: nil), .admitted)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = router.fullTables(for: small.id)
        router.localBound(client(1), legacy: false)
        let first = router.dueDeltas(now: start, interval: interval)
        XCTAssertEqual(first.count, 1, "nothing went to the peer during the last interval: at once")
        XCTAssertTrue(first[0].entries.contains { $0.node.id == client(1).id && $0.ttl == 1 })

        for n in 2...500 { router.localBound(client(n), legacy: false) }
        XCTAssertTrue(router.dueDeltas(now: start + .milliseconds(100), interval: interval).isEmpty, "held back by the interval")
        let second = router.dueDeltas(now: start + interval, interval: interval)
        XCTAssertEqual(second.count, 1)
        XCTAssertEqual(second[0].entries.filter { $0.ttl == 1 }.count, 499, "every change of the interval in one batch")
        // One batch of 499 entries is a handful of 8 KiB frames.
        var frames = ByteBufferAllocator().buffer(capacity: 0)
        var count = 0
        MeshFrames.routing(&frames, entries: second[0].entries, relay: SenderTag(me)) {
            count += 1
            return GUID.random()
        }
        XCTAssertLessThanOrEqual(count, 8, "\(count) frames for 499 entries")
        XCTAssertTrue(router.dueDeltas(now: start + interval * 3, interval: interval).isEmpty, "nothing left")
    }

    func testAWithdrawalIsUrgentAndGoesAfterAnEighthOfTheInterval() {
        let router = MeshRouter(identity: me, registry: NodeRegistry())
        _ = router.peerProven(small, at: NodeLocation(shard: 0, connection: 1), dialedAddress: nil, remoteAddress: nil)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        router.localBound(client(1), legacy: false)
        XCTAssertEqual(router.dueDeltas(now: start, interval: interval).count, 1)
        router.localUnbound(client(1).id)
        XCTAssertTrue(router.dueDeltas(now: start + .milliseconds(20), interval: interval).isEmpty, "not before an eighth")
        let withdrawal = router.dueDeltas(now: start + .milliseconds(32), interval: interval)
        XCTAssertEqual(withdrawal.first?.entries.first { $0.node.id == client(1).id }?.ttl, 32, "urgent: it goes after 31.25 ms")
        // A new client is not urgent: it waits for the whole interval.
        router.localBound(client(2), legacy: false)
        XCTAssertTrue(router.dueDeltas(now: start + .milliseconds(100), interval: interval).isEmpty)
        XCTAssertEqual(router.dueDeltas(now: start + .milliseconds(282), interval: interval).count, 1)
    }

    func testOneConnectionPerPairTheOneDialedByTheSmallerIDStays() {
        // Seen from `me`: `small` < me < `large` as bare lowercase strings.
        let router = MeshRouter(identity: me, registry: NodeRegistry())
        let accepted = NodeLocation(shard: 0, connection: 1)
        let dialed = NodeLocation(shard: 1, connection: 2)
        XCTAssertEqual(router.peerProven(small, at: accepted, dialedAddress: nil, remoteAddress: nil), .admitted)
        // The second connection to `small` is the one this relay dialed: `small` dialed the first,
        // and its id is smaller, so the first stays.
        XCTAssertEqual(router.peerProven(small, at: dialed, dialedAddress: "small:9001", remoteAddress: nil), .duplicate)
        XCTAssertEqual(router.nextHop(for: small.id)?.location, nil, "no route before its ROUTING")

        XCTAssertEqual(router.peerProven(large, at: accepted, dialedAddress: nil, remoteAddress: nil), .admitted)
        // With `large`, this relay has the smaller id: its own dial replaces the accepted one.
        XCTAssertEqual(router.peerProven(large, at: dialed, dialedAddress: "large:9001", remoteAddress: nil), .replaces(accepted))
        XCTAssertEqual(router.relay(dialedAt: "large:9001"), large.id)
        XCTAssertTrue(router.isConnected(large.id))
        // The replaced connection closing later does not take the peer down.
        router.peerLost(large.id, at: accepted)
        XCTAssertTrue(router.isConnected(large.id))
        router.peerLost(large.id, at: dialed)
        XCTAssertFalse(router.isConnected(large.id))
    }

    func testRoutesLearnedFromAPeerReachTheShardsAndGoWithIt() {
        let router = MeshRouter(identity: me, registry: NodeRegistry())
        let location = NodeLocation(shard: 1, connection: 7)
        _ = router.peerProven(small, at: location, dialedAddress: nil, remoteAddress: nil)
        _ = router.takeRemoteChanges()
        let remote = client(9)
        let result = router.receive(
            [MeshRouteEntry(node: small, ttl: 1, seq: 2), MeshRouteEntry(node: remote, ttl: 1, seq: 4)], from: small.id,
            frameBytes: 200, malformed: 0)
        XCTAssertEqual(result.invalid, 0)
        XCTAssertEqual(router.nextHop(for: remote.id)?.location, location)
        XCTAssertTrue(router.routesElsewhere(remote.id), "a HELLO for it here is an id collision")
        let changed = router.takeRemoteChanges()
        XCTAssertTrue(changed.contains(remote.id))
        let route = router.remoteNodes([remote.id]).first?.node
        XCTAssertEqual(route?.ttl, 2)
        XCTAssertEqual(route?.location, location)

        router.peerLost(small.id, at: location)
        XCTAssertNil(router.nextHop(for: remote.id), "routes through a lost peer go at once")
        XCTAssertTrue(router.takeRemoteChanges().contains(remote.id), "the shards hear of it")
        XCTAssertEqual(router.remoteNodes([remote.id]).map(\.id), [remote.id])
        XCTAssertNil(router.remoteNodes([remote.id]).first?.node, "as no longer reached through a peer")
        XCTAssertEqual(router.snapshot().peers.count, 0)
    }

    func testTheShardsHearOnlyOfNodesReachedThroughAPeerOrThatWere() {
        let router = MeshRouter(identity: me, registry: NodeRegistry())
        // A client of this relay binding and leaving concerns no shard's remote routes.
        router.localBound(client(1), legacy: false)
        router.localUnbound(client(1).id)
        XCTAssertEqual(router.takeRemoteChanges(), [], "a relay with no peers told its shards of its own clients")

        let location = NodeLocation(shard: 0, connection: 3)
        _ = router.peerProven(small, at: location, dialedAddress: nil, remoteAddress: nil)
        _ = router.receive([MeshRouteEntry(node: small, ttl: 1, seq: 2), MeshRouteEntry(node: client(2), ttl: 1, seq: 4)], from: small.id, frameBytes: 100, malformed: 0)
        XCTAssertEqual(Set(router.takeRemoteChanges()), [small.id, client(2).id])
        // The remote node moves here: the shards must drop its remote route, once.
        router.localBound(client(2), legacy: false)
        XCTAssertEqual(router.takeRemoteChanges(), [client(2).id])
        XCTAssertNil(router.remoteNodes([client(2).id]).first?.node)
        router.localUnbound(client(2).id)
        XCTAssertEqual(router.takeRemoteChanges(), [], "no longer held by the shards as remote: nothing to tell them")
    }

    func testClientsBoundBeforeTheFirstPeerAreTakenFromTheRegistryWhenItComes() {
        let registry = NodeRegistry()
        let router = MeshRouter(identity: me, registry: registry)
        let here = NodeLocation(shard: 0, connection: 10)
        // Bound before any peer: the registry has them, the table does not need them yet.
        for n in 1...3 {
            XCTAssertTrue(registry.bind(client(n).id, to: here, tag: SenderTag(client(n)), legacy: n == 2))
            router.localBound(client(n), legacy: n == 2)
        }
        registry.unbind(client(3).id, from: here)
        router.localUnbound(client(3).id)
        XCTAssertEqual(router.routes().map(\.node.id), [client(1).id, client(2).id], "the operator sees them all the same")
        XCTAssertEqual(router.routes().map(\.nextHop), [.local, .local])
        XCTAssertEqual(router.routes().map(\.legacy), [false, true])
        XCTAssertEqual(router.snapshot().routes, 2)
        XCTAssertEqual(router.takeRemoteChanges(), [])

        _ = router.peerProven(small, at: NodeLocation(shard: 0, connection: 1), dialedAddress: nil, remoteAddress: nil)
        let full = router.fullTables(for: small.id)
        let entries = full.first?.entries ?? []
        XCTAssertEqual(entries.filter { $0.node.id == client(1).id }.map(\.ttl), [1], "in the peer's first table")
        XCTAssertEqual(entries.filter { $0.node.id == client(2).id }.map(\.legacy), [true])
        XCTAssertFalse(entries.contains { $0.node.id == client(3).id }, "gone before any peer: not even a withdrawal")
        XCTAssertEqual(router.snapshot().routes, 2, "counted once, from the table now")
        XCTAssertEqual(router.routes().map(\.node.id), [client(1).id, client(2).id])

        // From now on the table follows every bind and close itself.
        XCTAssertTrue(registry.bind(client(4).id, to: here, tag: SenderTag(client(4))))
        router.localBound(client(4), legacy: false)
        router.localBound(client(1), legacy: false)  // a late duplicate of one taken from the registry
        registry.unbind(client(1).id, from: here)
        router.localUnbound(client(1).id)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let delta = router.dueDeltas(now: start, interval: interval).first?.entries ?? []
        XCTAssertEqual(delta.first { $0.node.id == client(4).id }?.ttl, 1)
        XCTAssertEqual(delta.first { $0.node.id == client(1).id }?.ttl, 32, "a client the peer heard of is withdrawn")
        XCTAssertEqual(router.routes().map(\.node.id), [client(2).id, client(4).id])
    }

    func testTheAllZeroIDIsNotListedBeforeTheFirstPeerAsTheTableNeverListsIt() {
        let registry = NodeRegistry()
        let router = MeshRouter(identity: me, registry: registry)
        let here = NodeLocation(shard: 0, connection: 1)
        XCTAssertTrue(registry.bind(GUID.zero, to: here, tag: SenderTag(NodeAddress(id: .zero, name: "zero"))))
        XCTAssertTrue(registry.bind(client(1).id, to: NodeLocation(shard: 0, connection: 2), tag: SenderTag(client(1))))
        XCTAssertEqual(router.routes().map(\.node.id), [client(1).id])
        XCTAssertEqual(router.snapshot().routes, 1)
        _ = router.peerProven(small, at: NodeLocation(shard: 1, connection: 3), dialedAddress: nil, remoteAddress: nil)
        XCTAssertEqual(router.routes().map(\.node.id), [client(1).id], "the same after the first peer")
        XCTAssertEqual(router.snapshot().routes, 1)
    }

    func testALateCloseDoesNotWithdrawAClientThatReconnectedOnAnotherShard() {
        let registry = NodeRegistry()
        let router = MeshRouter(identity: me, registry: registry)
        _ = router.peerProven(small, at: NodeLocation(shard: 0, connection: 1), dialedAddress: nil, remoteAddress: nil)
        let old = NodeLocation(shard: 0, connection: 10), new = NodeLocation(shard: 1, connection: 11)
        XCTAssertTrue(registry.bind(client(1).id, to: old, tag: SenderTag(client(1))))
        router.localBound(client(1), legacy: false)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = router.dueDeltas(now: start, interval: interval)
        // Shard 0 unbinds the old connection; shard 1 binds the new one and tells the router first.
        XCTAssertTrue(registry.unbind(client(1).id, from: old))
        XCTAssertTrue(registry.bind(client(1).id, to: new, tag: SenderTag(client(1))))
        router.localBound(client(1), legacy: false)
        router.localUnbound(client(1).id)
        XCTAssertEqual(router.routes().map(\.node.id), [client(1).id], "still connected here")
        let later = router.dueDeltas(now: start + interval, interval: interval)
        XCTAssertFalse(later.contains { $0.entries.contains { $0.node.id == client(1).id && $0.ttl == 32 } }, "no withdrawal")
    }
}
