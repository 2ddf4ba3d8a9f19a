import Foundation
import XCTest

/// Base of the integration tests: starts relays and clients for one test and cleans up after it.
/// When a test fails, the tail of each relay's log is printed and its work folder kept (set
/// `PTPCHAT_IT_KEEP=1` to keep them always).
class RelayTestCase: XCTestCase {
    /// Seconds to wait for a frame that must come.
    let expectWithin: Double = 5
    /// Seconds to wait to be confident a frame does not come.
    let quietPeriod: Double = 0.4
    /// Configuration lines for a test that opens more connections from 127.0.0.1 than the per-IP
    /// accept limits allow (64 open, 20/s with a burst of 50): those limits off.
    static let manyConnectionsFromOneAddress = "limits:\n  per_ip_connections: 0\n  per_ip_new_per_second: 0\n"

    private var workDirectory: URL?
    private var relays: [RelayProcess] = []
    private var clients: [TestClient] = []
    private var children: [ChildProcess] = []

    override func setUpWithError() throws {
        try super.setUpWithError()
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("ptpchat-it-\(name.filter { $0.isLetter || $0.isNumber })-\(Ids.make().prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        workDirectory = directory
    }

    override func tearDown() {
        clients.forEach { $0.close() }
        children.forEach { $0.stop() }
        relays.forEach { $0.stop() }
        let failed = (testRun?.failureCount ?? 0) + (testRun?.unexpectedExceptionCount ?? 0) > 0
        if failed {
            for relay in relays {
                print("---- relay \(relay.endpoint) log (last lines), \(relay.directory.path) ----\n\(relay.logTail())\n----")
            }
            for child in children {
                print("---- \(child.name) stdout ----\n\(child.stdout)---- \(child.name) stderr ----\n\(child.stderr)----")
            }
        } else if let workDirectory {
            if ProcessInfo.processInfo.environment["PTPCHAT_IT_KEEP"] == "1" {
                print("kept \(workDirectory.path)")
            } else {
                try? FileManager.default.removeItem(at: workDirectory)
            }
        }
        clients = []
        children = []
        relays = []
        super.tearDown()
    }

    var directory: URL {
        get throws { try XCTUnwrap(workDirectory, "no work directory") }
    }

    // MARK: Relay and clients

    /// Starts a relay (see `RelayProcess`) that is stopped in tearDown. Pass `dataDirectory` and
    /// `nodeID` of an earlier (stopped or killed) relay to restart it on the same store.
    /// `port` restarts a relay where its peers dial it.
    func startRelay(
        config: String? = nil, arguments: [String] = [], dataDirectory: URL? = nil, nodeID: String? = nil, port: UInt16? = nil
    ) throws -> RelayProcess {
        let folder = try directory.appendingPathComponent("relay\(relays.count)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let relay = try RelayProcess(
            config: config, arguments: arguments, in: folder, dataDirectory: dataDirectory, nodeID: nodeID, port: port)
        relays.append(relay)
        return relay
    }

    /// A TCP connection to `relay` (nothing read or sent yet), closed in tearDown. `source`: the
    /// loopback address it comes from (127.0.0.2, …).
    func connect(_ relay: RelayProcess, label: String, source: String? = nil) throws -> TestClient {
        let client = try TestClient(port: relay.port, label: label, source: source)
        clients.append(client)
        return client
    }

    /// Closes `client` in tearDown.
    func track(_ client: TestClient) {
        clients.append(client)
    }

    /// Connects and reads the relay's HELLO.
    func connectAndReadHello(_ relay: RelayProcess, label: String, file: StaticString = #filePath, line: UInt = #line) throws
        -> (TestClient, [String: Any])
    {
        let client = try connect(relay, label: label)
        let hello = try XCTUnwrap(client.receive(timeout: expectWithin), "\(label): no frame from the relay after connecting", file: file, line: line)
        XCTAssertEqual(hello.verb, "HELLO", "\(label): the relay's first frame is not its HELLO: \(hello)", file: file, line: line)
        return (client, hello)
    }

    /// A node bound to `relay`: connects, reads the relay's HELLO, sends a SPEC.md HELLO (head
    /// `sender_id` `name@id` when `name` is given) and waits for the first ROUTING.
    func bind(
        _ relay: RelayProcess, name: String?, id: String = Ids.make(), file: StaticString = #filePath, line: UInt = #line
    ) throws -> Node {
        let label = name ?? "node-\(id.prefix(8))"
        let (client, _) = try connectAndReadHello(relay, label: label, file: file, line: line)
        client.send(json: Frames.hello(id: id, name: name))
        _ = try XCTUnwrap(
            client.receive(verb: "ROUTING", timeout: expectWithin),
            "\(label): no ROUTING after its HELLO (\(client.closeReason ?? "connection open"))", file: file, line: line)
        return Node(client: client, id: id, name: name)
    }

    /// A node speaking as the existing C# client: its HELLO (id only in head `sender_id`).
    func bindLegacy(_ relay: RelayProcess, id: String = Ids.make(), file: StaticString = #filePath, line: UInt = #line) throws -> Node {
        let (client, _) = try connectAndReadHello(relay, label: "legacy", file: file, line: line)
        client.send(text: LegacyFrames.hello(id: id))
        _ = try XCTUnwrap(
            client.receive(verb: "ROUTING", timeout: expectWithin),
            "legacy: no ROUTING after the existing client's HELLO (\(client.closeReason ?? "connection open"))", file: file, line: line)
        return Node(client: client, id: id, name: "LocalNode")
    }

    /// Starts the `ptpchat` command-line client (with `input` on its stdin, else /dev/null); stopped in tearDown.
    func startPtpchat(_ arguments: [String], input: String? = nil, name: String) throws -> ChildProcess {
        let child = try ChildProcess(
            executable: try Binaries.path("ptpchat"), arguments: arguments, input: input, directory: try directory, name: name)
        children.append(child)
        return child
    }

    /// Runs the relay binary with `arguments` as given (no defaults), for start-up failures and
    /// its other commands; `environment` replaces the inherited one when given.
    func runRelayBinary(_ arguments: [String], environment: [String: String]? = nil, name: String) throws -> ChildProcess {
        let child = try ChildProcess(
            executable: try Binaries.path("ptpchat-relay"), arguments: arguments, environment: environment, directory: try directory,
            name: name)
        children.append(child)
        return child
    }

    // MARK: Assertions

    /// The head as PROFILE.md section 2 says the relay writes it: `msg_type` upper case, a non-zero
    /// GUID `msg_id`, integer `ttl`, boolean `flood`, `sender_id` `name@GUID`, `target_id` null.
    func assertRelayHead(
        _ frame: [String: Any]?, verb: String, ttl: Int? = nil, flood: Bool, sender: String? = nil,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        guard let frame else {
            XCTFail("expected a \(verb) frame, got none", file: file, line: line)
            return
        }
        XCTAssertEqual(frame["msg_type"] as? String, verb, "msg_type in \(frame)", file: file, line: line)
        XCTAssertTrue(Ids.isNonZeroGUID(frame["msg_id"] as? String), "head msg_id must be a non-zero GUID: \(frame)", file: file, line: line)
        if let ttl {
            XCTAssertEqual(frame["ttl"] as? Int, ttl, "ttl in \(frame)", file: file, line: line)
        } else {
            let value = frame["ttl"] as? Int
            XCTAssertTrue(value.map { (1...32).contains($0) } ?? false, "ttl must be an integer in 1...32: \(frame)", file: file, line: line)
        }
        XCTAssertEqual(frame["flood"] as? Bool, flood, "flood in \(frame)", file: file, line: line)
        if let sender {
            XCTAssertEqual((frame["sender_id"] as? String)?.lowercased(), sender.lowercased(), "sender_id in \(frame)", file: file, line: line)
        }
        XCTAssertTrue(Ids.isAddress(frame["sender_id"] as? String), "sender_id must be name@GUID: \(frame)", file: file, line: line)
        XCTAssertTrue(frame.keys.contains("target_id") && frame["target_id"] is NSNull, "target_id must be null: \(frame)", file: file, line: line)
        XCTAssertNotNil(frame["msg_data"] as? [String: Any], "msg_data must be an object: \(frame)", file: file, line: line)
    }

    /// A NACK from the relay refusing `messageID` for `reason`.
    func assertNack(
        _ frame: [String: Any]?, for messageID: String, reason: String, relay: RelayProcess,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        assertRelayHead(frame, verb: "NACK", flood: false, sender: relay.address, file: file, line: line)
        guard let data = frame?.data else { return }
        XCTAssertEqual((data["msg_id"] as? String)?.lowercased(), messageID, "NACK msg_data.msg_id: \(frame!)", file: file, line: line)
        XCTAssertEqual(data["reason"] as? String, reason, "NACK reason: \(frame!)", file: file, line: line)
        XCTAssertEqual((data["node_id"] as? String)?.lowercased(), relay.nodeID, "NACK node_id: \(frame!)", file: file, line: line)
        XCTAssertNotNil(data["stored"] as? Bool, "NACK stored must be a boolean: \(frame!)", file: file, line: line)
    }

    /// An ACK or NACK for `messageID`.
    func isAnswer(_ frame: [String: Any], to messageID: String) -> Bool {
        (frame.verb == "ACK" || frame.verb == "NACK") && frame.dataMessageID?.lowercased() == messageID
    }
}
