#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import XCTest

/// Base of the operations tests: relays started with a chosen environment (`LaunchedRelay`),
/// other launched processes (systemd-socket-activate), notification sockets and clients, all
/// stopped and closed after the test; on a failure their output and the notifications are printed.
class OpsTestCase: RelayTestCase {
    private var launched: [ChildProcess] = []
    private var opsClients: [TestClient] = []
    private var notifySockets: [NotifySocket] = []

    override func tearDown() {
        opsClients.forEach { $0.close() }
        launched.forEach { $0.stop() }
        let failed = (testRun?.failureCount ?? 0) + (testRun?.unexpectedExceptionCount ?? 0) > 0
        if failed {
            for child in launched {
                print("---- \(child.name) (\(child.ending ?? "running")) \(child.stderrURL.deletingLastPathComponent().path) ----\n\(child.outputTail())\n----")
            }
            for socket in notifySockets {
                print("---- notifications on \(socket.path) ----\n\(socket.transcript)\n----")
            }
        }
        notifySockets.forEach { $0.close() }
        launched = []
        opsClients = []
        notifySockets = []
        super.tearDown()
    }

    /// A fresh folder in the test's work directory.
    func folder(_ name: String) throws -> URL {
        let url = try directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A notification socket closed after the test.
    func makeNotifySocket() throws -> NotifySocket {
        let socket = try NotifySocket()
        notifySockets.append(socket)
        return socket
    }

    /// Starts a relay (see `LaunchedRelay`) stopped after the test. Returns at once.
    func launchRelay(
        config: String = "", logLevel: String? = "debug", stats: Bool = false, arguments: [String] = [],
        environment: [String: String] = [:], dataDirectory: URL? = nil, nodeID: String? = nil
    ) throws -> LaunchedRelay {
        let relay = try LaunchedRelay(
            in: try folder("relay\(launched.count)"), config: config, logLevel: logLevel, stats: stats, arguments: arguments,
            environment: environment, dataDirectory: dataDirectory, nodeID: nodeID)
        launched.append(relay.child)
        return relay
    }

    /// Starts any executable with `environment` (over `ChildProcess.baseEnvironment`).
    func launch(_ executable: URL, _ arguments: [String], environment: [String: String] = [:], name: String) throws -> ChildProcess {
        let child = try ChildProcess(
            executable: executable, arguments: arguments, environment: environment, directory: try folder(name), name: name)
        launched.append(child)
        return child
    }

    /// A TCP connection to `port`, closed after the test.
    func connect(port: UInt16, label: String) throws -> TestClient {
        let client = try TestClient(port: port, label: label)
        opsClients.append(client)
        return client
    }

    /// A node bound to the relay on `port`: connects, reads the relay's HELLO, sends its own and
    /// waits for the first ROUTING.
    func bind(port: UInt16, name: String, id: String = Ids.make(), file: StaticString = #filePath, line: UInt = #line) throws -> Node {
        let client = try connect(port: port, label: name)
        let hello = client.receive(timeout: expectWithin)
        XCTAssertEqual(hello?.verb, "HELLO", "\(name): the relay's first frame is not its HELLO: \(String(describing: hello))", file: file, line: line)
        client.send(json: Frames.hello(id: id, name: name))
        _ = try XCTUnwrap(
            client.receive(verb: "ROUTING", timeout: expectWithin),
            "\(name): no ROUTING after its HELLO (\(client.closeReason ?? "connection open"))", file: file, line: line)
        return Node(client: client, id: id, name: name)
    }

    /// `from` sends a MESSAGE to `to`, `to` gets it and ACKs, `from` gets the relay's ACK.
    func exchange(_ from: Node, _ to: Node, text: String = "hello", file: StaticString = #filePath, line: UInt = #line) {
        let id = Ids.make()
        XCTAssertTrue(from.client.send(json: Frames.message(from: from, to: [to.id], id: id, text: text)),
            "\(from.label): cannot send (\(from.client.closeReason ?? "?"))", file: file, line: line)
        let delivered = to.client.receive(timeout: expectWithin) { $0.verb == "MESSAGE" && $0.dataMessageID?.lowercased() == id }
        XCTAssertNotNil(delivered, "\(to.label): the MESSAGE from \(from.label) did not arrive (\(to.client.closeReason ?? "connection open"))",
            file: file, line: line)
        to.client.send(json: Frames.ack(from: to, acknowledging: id))
        let answer = from.client.receive(timeout: expectWithin) { self.isAnswer($0, to: id) }
        XCTAssertEqual(answer?.verb, "ACK", "\(from.label): no ACK for its MESSAGE to \(to.label): \(String(describing: answer)) "
            + "(\(from.client.closeReason ?? "connection open"))", file: file, line: line)
    }

    /// `CLOCK_MONOTONIC` in microseconds (what `MONOTONIC_USEC=` carries).
    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }
}
