import NIOCore
import PTPProtocol
import XCTest

@testable import RelayCore

/// Every HELLO asks the store whether it holds anything for the node (`mayHoldMessages`, the
/// in-memory `StoredRecipients` of the SQLite store) and reads it only then.
final class HelloStoreReadTests: XCTestCase {
    func testHelloWithNothingStoredReadsNothing() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        _ = relay.client(Node.a, name: "alice")
        _ = relay.client(Node.b, name: "bob")
        XCTAssertEqual(relay.offline.dueReads, 0, "no row for either: no read")
    }

    func testHelloWithMessagesStoredReadsAndDeliversThem() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: id))
        XCTAssertEqual(alice.receive().map(\.type), ["NACK"], "stored: NACK stored true")
        XCTAssertEqual(relay.offline.dueReads, 0)

        let xena = relay.connect(label: "xena")
        XCTAssertEqual(xena.receive().map(\.type), ["HELLO"])
        xena.send(Frames.hello(Node.x, name: "xena"))
        let welcome = xena.receive()
        XCTAssertEqual(welcome.map(\.type), ["ROUTING", "MESSAGE"], "\(welcome.map(\.text))")
        XCTAssertEqual(welcome.last?.msgID, id)
        XCTAssertEqual(relay.offline.dueReads, 1, "one read, for the node the store lists")

        // Once ACKed nothing is left: the next HELLO of Xena reads nothing.
        xena.send(Frames.ack(id))
        XCTAssertTrue(relay.offline.messages.isEmpty)
        xena.close()
        relay.loop.run()
        _ = relay.client(Node.x, name: "xena")
        XCTAssertEqual(relay.offline.dueReads, 1)
    }

    /// A message whose insert the store had not reached when the HELLO asked (not listed, no
    /// read) still reaches the node: its commit announces it to the node's connection, and the
    /// retry round reads it.
    func testMessageListedOnlyAfterTheHelloArrivesWithTheRetryRound() {
        let relay = TestRelay()
        defer { relay.shutdown() }
        let alice = relay.client(Node.a, name: "alice")
        relay.offline.holdCommits = true
        let id = Node.newID()
        alice.send(Frames.message(from: Node.a, to: [Node.x], id: id))
        let xena = relay.client(Node.x, name: "xena")
        XCTAssertEqual(relay.offline.dueReads, 0, "not listed when Xena said HELLO: no read")
        xena.expectNothing()

        relay.offline.commit()
        relay.loop.run()
        relay.offline.makeAllDue()
        relay.shard.retryStored()
        relay.loop.run()
        let frames = xena.receive()
        XCTAssertEqual(frames.map(\.type), ["MESSAGE"], "\(frames.map(\.text))")
        XCTAssertEqual(frames.first?.msgID, id)
        XCTAssertEqual(relay.offline.dueReads, 1)
    }
}
