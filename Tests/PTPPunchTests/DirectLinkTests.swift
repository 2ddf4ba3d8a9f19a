import NIOCore
import NIOPosix
import PTPProtocol
import XCTest

@testable import PTPPunch

/// Direct links and the simultaneous-open dialer on loopback sockets.
final class DirectLinkTests: XCTestCase {
    let a = SenderTag(NodeAddress(id: GUID("0b370041-cd1e-40ac-ac59-0136bba850fe")!, name: "alice"))
    let b = SenderTag(NodeAddress(id: GUID("5f715c17-4a41-482a-ab1f-45fa2cdd702b")!, name: "bob"))

    /// A port the kernel hands out, freed again (the punching socket binds it with SO_REUSEPORT).
    func freePort() throws -> Int {
        let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).wait()
        defer { try? channel.close().wait() }
        return try XCTUnwrap(channel.localAddress?.port)
    }

    func testRendezvousWaitsForTheValueOrItsDeadline() async {
        let rendezvous = Rendezvous<Int, String>()
        let start = ContinuousClock.now
        let none = await rendezvous.wait(for: 1, until: .now + .milliseconds(50))
        XCTAssertNil(none)
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(50))

        async let later = rendezvous.wait(for: 2, until: .now + .seconds(10))
        try? await Task.sleep(for: .milliseconds(20))
        XCTAssertTrue(rendezvous.publish("two", for: 2))
        XCTAssertFalse(rendezvous.publish("again", for: 2), "the first value stays")
        let value = await later
        XCTAssertEqual(value, "two")
        let ready = await rendezvous.wait(for: 2, until: .now)
        XCTAssertEqual(ready, "two")
    }

    func testBothSidesDialingAndListeningGetALinkAndAMessageIsAcked() async throws {
        let portA = try freePort()
        let portB = try freePort()
        let received = Rendezvous<GUID, String>()
        let linksA = DirectLinks(identity: a)
        let linksB = DirectLinks(
            identity: b, onMessage: { frame, link in received.publish(frame.message ?? "", for: link.peer) })
        linksA.admit(b.address.id)
        linksB.admit(a.address.id)
        defer {
            linksA.close()
            linksB.close()
        }
        let localA = try SocketAddress(ipAddress: "0.0.0.0", port: portA)
        let localB = try SocketAddress(ipAddress: "0.0.0.0", port: portB)
        try await linksA.listen(on: localA)
        try await linksB.listen(on: localB)
        let deadline = ContinuousClock.now + .seconds(5)
        let dialerA = SimultaneousOpen(local: localA, peerAddress: try SocketAddress(ipAddress: "127.0.0.1", port: portB), peer: b.address.id)
        let dialerB = SimultaneousOpen(local: localB, peerAddress: try SocketAddress(ipAddress: "127.0.0.1", port: portA), peer: a.address.id)
        async let outcomeA = dialerA.run(links: linksA, until: deadline)
        async let outcomeB = dialerB.run(links: linksB, until: deadline)
        let (resultA, resultB) = await (outcomeA, outcomeB)
        let link = try XCTUnwrap(resultA.link, "A has no link: \(resultA.lastError ?? "")")
        XCTAssertNotNil(resultB.link, "B has no link: \(resultB.lastError ?? "")")
        XCTAssertGreaterThanOrEqual(resultA.attempts, 1)
        XCTAssertEqual(link.peer, b.address.id)

        let id = GUID.random()
        try await link.send(ClientFrames.message("over the hole", id: id, to: [b.address.id], channelID: .random(), from: a))
        let acked = await linksA.waitForAck(of: id, until: .now + .seconds(5))
        XCTAssertTrue(acked)
        let text = await received.wait(for: a.address.id, until: .now + .seconds(1))
        XCTAssertEqual(text.flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) }, "over the hole")
    }

    func testAClosedPortIsDialedAgainUntilTheDeadline() async throws {
        let portA = try freePort()
        let closed = try freePort()
        let links = DirectLinks(identity: a)
        links.admit(b.address.id)
        let local = try SocketAddress(ipAddress: "0.0.0.0", port: portA)
        let start = ContinuousClock.now
        var dialer = SimultaneousOpen(local: local, peerAddress: try SocketAddress(ipAddress: "127.0.0.1", port: closed), peer: b.address.id)
        dialer.retryInterval = .milliseconds(50)
        let outcome = await dialer.run(links: links, until: start + .milliseconds(600))
        let elapsed = ContinuousClock.now - start
        XCTAssertNil(outcome.link)
        XCTAssertGreaterThan(outcome.attempts, 2, "a refused dial is tried again")
        XCTAssertNotNil(outcome.lastError)
        XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(600))
        XCTAssertLessThan(elapsed, .seconds(3), "the deadline holds")
    }

    func testALinkFromANodeNotPunchingIsClosed() async throws {
        let portB = try freePort()
        let refused = Rendezvous<Int, String>()
        let linksB = DirectLinks(identity: b, onRefused: { refused.publish($0, for: 0) })
        defer { linksB.close() }
        try await linksB.listen(on: try SocketAddress(ipAddress: "0.0.0.0", port: portB))
        // A dials without being admitted at B: B closes it after A's HELLO.
        let linksA = DirectLinks(identity: a)
        linksA.admit(b.address.id)
        let outcome = await SimultaneousOpen(
            local: try SocketAddress(ipAddress: "0.0.0.0", port: try freePort()), peerAddress: try SocketAddress(ipAddress: "127.0.0.1", port: portB),
            peer: b.address.id
        ).run(links: linksA, until: .now + .milliseconds(800))
        let why = await refused.wait(for: 0, until: .now + .seconds(2))
        XCTAssertTrue(why?.contains("not a HELLO from a node punching with this one") == true, why ?? "nil")
        // A may have seen B's HELLO before the close: what matters is that B never took A.
        _ = outcome
        let linkAtB = await linksB.link(to: a.address.id, until: .now)
        XCTAssertNil(linkAtB)
    }
}
