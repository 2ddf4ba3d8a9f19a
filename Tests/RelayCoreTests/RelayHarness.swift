import Foundation
import Logging
import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import RelayMesh
import Synchronization
import XCTest

@testable import RelayCore
import RelayStore

/// Node ids used by the relay tests.
enum Node {
    static let relay = "9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4"
    static let a = "0b370041-cd1e-40ac-ac59-0136bba850fe"
    static let b = "5f715c17-4a41-482a-ab1f-45fa2cdd702b"
    static let c = "11111111-1111-4111-8111-111111111111"
    static let x = "22222222-2222-4222-8222-222222222222"
    static let channel = "82ae2035-55b8-4223-af24-c538731d6119"
    static let zero = "00000000-0000-0000-0000-000000000000"

    static func guid(_ text: String) -> GUID { GUID(text)! }

    /// A fresh message id, lower case.
    static func newID() -> String { GUID.random().description }
}

// MARK: Log capture

struct LogLine: Sendable {
    var level: Logger.Level
    var message: String
    var metadata: [String: String]
}

final class LogStore: Sendable {
    private let lines = Mutex<[LogLine]>([])

    func append(_ line: LogLine) { lines.withLock { $0.append(line) } }

    var all: [LogLine] { lines.withLock { $0 } }

    /// Lines at `level` whose message contains `text`.
    func count(_ level: Logger.Level, _ text: String) -> Int {
        all.filter { $0.level == level && $0.message.contains(text) }.count
    }
}

struct CapturingLogHandler: LogHandler {
    let store: LogStore
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged: [String: String] = [:]
        for (key, value) in metadata { merged[key] = "\(value)" }
        for (key, value) in event.metadata ?? [:] { merged[key] = "\(value)" }
        store.append(LogLine(level: event.level, message: event.message.description, metadata: merged))
    }
}

// MARK: Frames read back

/// One frame the relay wrote, decoded.
struct Frame {
    let bytes: [UInt8]
    let object: [String: Any]

    var type: String? { object["msg_type"] as? String }
    var data: [String: Any] { object["msg_data"] as? [String: Any] ?? [:] }
    var ttl: Int? { (object["ttl"] as? NSNumber)?.intValue }
    var flood: Bool? { object["flood"] as? Bool }
    var msgID: String? { object["msg_id"] as? String }
    var sender: String? { object["sender_id"] as? String }
    var dataMsgID: String? { data["msg_id"] as? String }
    var reason: String? { data["reason"] as? String }
    var recipients: [String]? {
        (data["recipient"] as? [[String: Any]])?.map { $0["node_id"] as? String ?? "?" }
    }
    var routingNodes: [(String, Int)] {
        ((data["nodes"] as? [[String: Any]]) ?? []).map {
            ($0["node_id"] as? String ?? "?", ($0["ttl"] as? NSNumber)?.intValue ?? -1)
        }
    }
    var text: String { String(decoding: bytes, as: UTF8.self) }
}

private let senderPattern = try! NSRegularExpression(
    pattern: "^[A-Za-z0-9]+@[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
private let guidPattern = try! NSRegularExpression(
    pattern: "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

func matches(_ regex: NSRegularExpression, _ text: String) -> Bool {
    regex.firstMatch(in: text, range: NSRange(location: 0, length: (text as NSString).length)) != nil
}

// MARK: A connection to the relay

final class Peer {
    let channel: EmbeddedChannel
    let label: String
    private var inbox = ByteBuffer()
    /// Keepalive frames received so far.
    private(set) var keepalives = 0

    init(channel: EmbeddedChannel, label: String) {
        self.channel = channel
        self.label = label
    }

    var isActive: Bool { channel.isActive }

    func send(_ json: String, file: StaticString = #filePath, line: UInt = #line) {
        send(bytes: frameBytes(json), file: file, line: line)
    }

    func send(bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNoThrow(try channel.writeInbound(ByteBuffer(bytes: bytes)), file: file, line: line)
    }

    /// Sends `count` MESSAGEs from `sender` to `recipient`, each with a new id; returns the ids in
    /// the order sent.
    @discardableResult
    func sendMessages(
        _ count: Int, from sender: String, to recipient: String, text: String = "aGk=",
        file: StaticString = #filePath, line: UInt = #line
    ) -> [String] {
        let ids = (0..<count).map { _ in Node.newID() }
        for id in ids { send(Frames.message(from: sender, to: [recipient], id: id, text: text), file: file, line: line) }
        return ids
    }

    /// Every frame the relay wrote to this peer since the last call, each checked against the head
    /// rules of PROFILE.md section 2 (ASCII, compact, exact head).
    func receive(file: StaticString = #filePath, line: UInt = #line) -> [Frame] {
        // Writes may be flushed by a task on the loop (once per tick): run what is due now.
        channel.embeddedEventLoop.run()
        while let buffer = try? channel.readOutbound(as: ByteBuffer.self) {
            // PROFILE.md section 1: a frame is never split across writes.
            var check = buffer
            while check.readableBytes >= 4, let length = check.getInteger(at: check.readerIndex, as: UInt32.self),
                check.readableBytes >= 4 + Int(length)
            {
                check.moveReaderIndex(forwardBy: 4 + Int(length))
            }
            XCTAssertEqual(check.readableBytes, 0, "\(label): a write ends inside a frame", file: file, line: line)
            var buffer = buffer
            inbox.writeBuffer(&buffer)
        }
        var frames: [Frame] = []
        while inbox.readableBytes >= 4 {
            let length = Int(inbox.getInteger(at: inbox.readerIndex, as: UInt32.self)!)
            guard inbox.readableBytes >= 4 + length else { break }
            inbox.moveReaderIndex(forwardBy: 4)
            let bytes = inbox.readBytes(length: length)!
            if length == 0 {
                keepalives += 1
                continue
            }
            let text = String(decoding: bytes, as: UTF8.self)
            XCTAssertTrue(bytes.allSatisfy { $0 < 0x80 }, "\(label): frame not ASCII: \(text)", file: file, line: line)
            guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
                XCTFail("\(label): frame not a JSON object: \(text)", file: file, line: line)
                continue
            }
            let frame = Frame(bytes: bytes, object: object)
            checkHead(frame, file: file, line: line)
            frames.append(frame)
        }
        XCTAssertEqual(inbox.readableBytes, 0, "\(label): partial frame written", file: file, line: line)
        inbox.discardReadBytes()
        return frames
    }

    private func checkHead(_ frame: Frame, file: StaticString, line: UInt) {
        let text = frame.text
        guard let type = frame.type, type == type.uppercased(), Verb.allCases.contains(where: { $0.name == type }) else {
            return XCTFail("\(label): msg_type not an upper-case verb: \(text)", file: file, line: line)
        }
        XCTAssertTrue(frame.text.hasPrefix("{\"msg_type\":"), "\(label): not compact: \(text)", file: file, line: line)
        XCTAssertFalse(text.contains("\": ") || text.contains(", \""), "\(label): not compact: \(text)", file: file, line: line)
        if let id = frame.msgID {
            XCTAssertTrue(matches(guidPattern, id), "\(label): msg_id \(id)", file: file, line: line)
            XCTAssertNotEqual(id, Node.zero, "\(label): zero msg_id: \(text)", file: file, line: line)
        } else {
            XCTFail("\(label): no head msg_id: \(text)", file: file, line: line)
        }
        if let ttl = frame.ttl {
            XCTAssertTrue((1...32).contains(ttl), "\(label): ttl \(ttl): \(text)", file: file, line: line)
        } else {
            XCTFail("\(label): no integer ttl: \(text)", file: file, line: line)
        }
        XCTAssertNotNil(frame.flood, "\(label): no boolean flood: \(text)", file: file, line: line)
        if let sender = frame.sender {
            XCTAssertTrue(matches(senderPattern, sender), "\(label): sender_id \(sender)", file: file, line: line)
        } else {
            XCTFail("\(label): no sender_id: \(text)", file: file, line: line)
        }
        XCTAssertTrue(frame.object["target_id"] is NSNull, "\(label): target_id not null: \(text)", file: file, line: line)
        XCTAssertNotNil(frame.object["msg_data"] as? [String: Any], "\(label): no msg_data: \(text)", file: file, line: line)
    }

    /// Frames received, which must be exactly one.
    func receiveOne(file: StaticString = #filePath, line: UInt = #line) -> Frame? {
        let frames = receive(file: file, line: line)
        XCTAssertEqual(frames.count, 1, "\(label): expected one frame, got \(frames.map(\.text))", file: file, line: line)
        return frames.count == 1 ? frames[0] : nil
    }

    /// The next frame is the relay's ACK for `id`.
    func expectAck(_ id: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let ack = receiveOne(file: file, line: line) else { return }
        XCTAssertEqual(ack.type, "ACK", "\(label): \(ack.text)", file: file, line: line)
        XCTAssertEqual(ack.dataMsgID, id, file: file, line: line)
    }

    func expectNothing(file: StaticString = #filePath, line: UInt = #line) {
        let frames = receive(file: file, line: line)
        XCTAssertTrue(frames.isEmpty, "\(label): expected nothing, got \(frames.map(\.text))", file: file, line: line)
    }

    func close() {
        channel.close(promise: nil)
    }
}

// MARK: The relay under test

final class TestRelay {
    /// One event loop per shard, each driven by hand (`loop` is shard 0's).
    let loops: [EmbeddedEventLoop]
    var loop: EmbeddedEventLoop { loops[0] }
    let configuration: RelayConfiguration
    /// The relay's id and name: `relay.node_id` and `relay.name` (`Node.relay`, "relay" unless the
    /// test configures others).
    let identity: NodeAddress
    let logs = LogStore()
    let context: RelayContext
    let shards: [RelayShard]
    var shard: RelayShard { shards[0] }
    let offline = InMemoryStore()
    private var peers: [Peer] = []
    private var nextPort = 50000

    /// A relay with `shardCount` shards, each on its own embedded loop: what one shard hands to
    /// another runs only when the test runs the target's loop (`runLoops`), so cross-shard paths
    /// are driven step by step.
    init(shards shardCount: Int = 1, _ configure: (inout RelayConfiguration) -> Void = { _ in }) {
        var configuration = RelayConfiguration()
        configuration.relay.name = "relay"
        configuration.relay.nodeID = Node.relay
        // The suites written before PROFILE.md section 4a use the existing client's frame shapes to
        // test other rules; its compatibility rules (introductions, delivery on write) are on only
        // where a test asks for them (LegacyCompatibilityTests).
        configuration.compat.legacyClients = false
        // The same for the ROUTING view: the suites written before `routing.to_clients: channels`
        // became the default test the whole view; ClientRoutingViewTests tests `channels`.
        configuration.routing.clientView = .all
        configure(&configuration)
        self.configuration = configuration
        identity = NodeAddress(id: GUID(configuration.relay.nodeID ?? Node.relay)!, name: configuration.relay.name)
        let store = logs
        var logger = Logger(label: "relay-test") { _ in CapturingLogHandler(store: store) }
        logger.logLevel = .trace
        offline.settings = StoreSettings(configuration.store)
        context = RelayContext(configuration: configuration, identity: identity, logger: logger, store: offline)
        loops = (0..<shardCount).map { _ in EmbeddedEventLoop() }
        let context = self.context
        shards = loops.enumerated().map { RelayShard(index: $0.offset, eventLoop: $0.element, context: context) }
        for shard in shards { shard.shards = shards }
    }

    /// Runs every shard's loop in turn, enough rounds for a batch to go to another shard, be
    /// answered and the answer come back (each round runs everything queued so far).
    func runLoops() {
        for _ in 0..<8 {
            for loop in loops { loop.run() }
        }
    }

    var counters: RelayCounters { shard.counters }

    /// Past every ACK deadline of the default `timeouts.ack` (10 s), then what that set off.
    func passAckDeadlines() {
        shard.expireAcks(now: .now() + .seconds(11))
        shard.flushAll()
        loop.run()
    }

    /// A new connection from `ip`, activated (the relay's HELLO is waiting in it).
    func connect(
        label: String, ip: String = "192.0.2.10", port: Int? = nil, maxFrameBytes: Int? = nil, shard index: Int = 0,
        file: StaticString = #filePath, line: UInt = #line
    ) -> Peer {
        let shard = shards[index]
        let loop = loops[index]
        // As the server's pipeline (idle and keepalive are the shard's sweep: `sweepIdle(now:)`).
        // With `maxFrameBytes` the frame cap is fixed; without it the shard sets it (the HELLO cap
        // first) as in the server.
        let handlers: [ChannelHandler] = [
            ConnectionHandler(shard: shard, maxFrameBytes: maxFrameBytes ?? 0, shardSetsCap: maxFrameBytes == nil)
        ]
        let channel = EmbeddedChannel(handlers: handlers, loop: loop)
        nextPort += 1
        do {
            let address = try SocketAddress(ipAddress: ip, port: port ?? nextPort)
            channel.remoteAddress = address
            try channel.connect(to: address).wait()
        } catch {
            XCTFail("connect: \(error)", file: file, line: line)
        }
        let peer = Peer(channel: channel, label: label)
        peers.append(peer)
        return peer
    }

    /// A connection that has sent its HELLO and read the relay's HELLO and ROUTING.
    func client(
        _ id: String, name: String? = nil, ip: String = "192.0.2.10", existingClientStyle: Bool = false, shard: Int = 0,
        file: StaticString = #filePath, line: UInt = #line
    ) -> Peer {
        let peer = connect(label: name ?? id, ip: ip, shard: shard, file: file, line: line)
        let greeting = peer.receive(file: file, line: line)
        XCTAssertEqual(greeting.map(\.type), ["HELLO"], file: file, line: line)
        peer.send(existingClientStyle ? Frames.clientHello(id, name: name ?? "LocalNode") : Frames.hello(id, name: name), file: file, line: line)
        let welcome = peer.receive(file: file, line: line)
        XCTAssertEqual(welcome.first?.type, "ROUTING", "welcome: \(welcome.map(\.text))", file: file, line: line)
        XCTAssertTrue(peer.isActive, file: file, line: line)
        return peer
    }

    func shutdown() {
        for shard in shards { shard.stopTimers() }
        for peer in peers {
            _ = try? peer.channel.finish(acceptAlreadyClosed: true)
        }
        for loop in loops { try? loop.syncShutdownGracefully() }
    }
}

// MARK: Frame builders

enum Frames {
    /// SPEC.md HELLO: the id in `msg_data.node_id` (`name@GUID` when a name is given).
    static func hello(_ id: String, name: String? = nil, msgID: String = Node.newID()) -> String {
        let node = name.map { "\($0)@\(id)" } ?? id
        return #"{"ttl":1,"flood":false,"msg_type":"HELLO","msg_id":"\#(msgID)","msg_data":{"node_id":"\#(node)","version":"test 1.0","attributes":{"node_type":"client"}}}"#
    }

    /// The existing client's HELLO: the id in the head `sender_id`.
    static func clientHello(_ id: String, name: String = "LocalNode", msgID: String = Node.newID()) -> String {
        #"{"msg_type":"HELLO","msg_data":{"version":"ptpchat-client; 0.0","attributes":{"node_type":"string"}},"flood":false,"msg_id":"\#(msgID)","ttl":1,"sender_id":"\#(name)@\#(id)","target_id":null}"#
    }

    static func message(
        from sender: String, to recipients: [String], id: String, ttl: Int = 32, text: String = "aGk=",
        senderID: String? = nil
    ) -> String {
        let list = recipients.map { #"{"node_id":"\#($0)"}"# }.joined(separator: ",")
        let head = senderID.map { #","sender_id":"\#($0)""# } ?? ""
        return #"{"msg_type":"MESSAGE","ttl":\#(ttl),"flood":false\#(head),"msg_data":{"msg_id":"\#(id)","node_id":"\#(sender)","recipient":[\#(list)],"timestamp":"2016-05-04T13:23:29+01:00","channel":"general","channel_id":"\#(Node.channel)","message":"\#(text)","attachment":[]}}"#
    }

    /// The existing client's chat frame: a HELLO with `ttl` 0 and a zero head id.
    static func labelledChat(from sender: String, to recipients: [String], id: String) -> String {
        let list = recipients.map { #"{"node_id":"\#($0)"}"# }.joined(separator: ",")
        return #"{"msg_data":{"attachment":null,"channel":"Test Channel","channel_id":"\#(Node.channel)","message":"hi from client","msg_id":"\#(id)","recipient":[\#(list)],"timestamp":"2016-05-04T13:23:29.123456+01:00"},"flood":false,"msg_type":"HELLO","msg_id":"\#(Node.zero)","ttl":0,"sender_id":"LocalNode@\#(sender)","target_id":null}"#
    }

    /// The existing client's ACK: no node_id, sender null.
    static func ack(_ id: String) -> String {
        #"{"msg_data":{"msg_id":"\#(id)"},"msg_type":"ACK","flood":false,"msg_id":"\#(Node.zero)","ttl":1,"sender_id":null,"target_id":null}"#
    }

    static func nack(from sender: String, refusing id: String, reason: String) -> String {
        #"{"msg_type":"NACK","ttl":32,"flood":false,"msg_data":{"node_id":"\#(sender)","msg_id":"\#(id)","reason":"\#(reason)"}}"#
    }

    /// The existing client's JOIN (`msg_data.msg_id` and a head id).
    static func join(from sender: String, dataID: String?, headID: String = Node.zero, ttl: Int = 32) -> String {
        let dataIDMember = dataID.map { #","msg_id":"\#($0)""# } ?? ""
        return #"{"msg_data":{"channel":"Test Channel","channel_id":"\#(Node.channel)"\#(dataIDMember)},"flood":true,"msg_type":"JOIN","msg_id":"\#(headID)","ttl":\#(ttl),"sender_id":"LocalNode@\#(sender)","target_id":null}"#
    }

    static func channel(from sender: String, id: String, channelID: String = Node.channel, name: String = "Test Channel") -> String {
        #"{"msg_type":"CHANNEL","msg_data":{"channel":"\#(name)","channel_id":"\#(channelID)","closed":false,"members":[{"node_id":"\#(sender)"}],"msg_id":"\#(id)"},"flood":true,"msg_id":"\#(Node.zero)","ttl":32,"sender_id":"LocalNode@\#(sender)","target_id":null}"#
    }

    static func connect(src: String?, dst: String?, srcNode: String, dstNode: String, msgID: String = Node.zero) -> String {
        func value(_ text: String?) -> String { text.map { "\"\($0)\"" } ?? "null" }
        return #"{"msg_type":"CONNECT","msg_data":{"dst":\#(value(dst)),"dst_node_id":"\#(dstNode)","src":\#(value(src)),"src_node_id":"\#(srcNode)"},"flood":false,"msg_id":"\#(msgID)","ttl":32,"sender_id":null,"target_id":null}"#
    }
}

func frameBytes(_ json: String) -> [UInt8] {
    let body = Array(json.utf8)
    let length = UInt32(body.count)
    return [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)] + body
}

/// `msg_data` of a frame without the keys the relay rewrites, as sorted JSON text, for comparing.
func canonical(_ object: [String: Any], removing keys: Set<String> = []) -> String {
    let filtered = object.filter { !keys.contains($0.key) }
    let data = (try? JSONSerialization.data(withJSONObject: filtered, options: [.sortedKeys])) ?? Data()
    return String(decoding: data, as: UTF8.self)
}

func jsonObject(_ text: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
}

// MARK: A peer relay

extension TestRelay {
    static let peerKey = "unit-test-mesh-key-0123456789"
    static let peerID = "66666666-6666-4666-8666-666666666666"
    /// The nonce the test peer sends in its HELLO, for the relay's proof back.
    static let peerNonce = String(repeating: "ab", count: 16)

    /// A connection that answers the relay's HELLO with the peering proof of relay `id` under `key`
    /// (the relay runs with that `mesh.key`). The relay's answer is left for the caller to read.
    func provenPeer(key: String = TestRelay.peerKey, id: String = TestRelay.peerID) throws -> Peer {
        let peer = connect(label: "peer relay")
        let hello = try XCTUnwrap(peer.receiveOne())
        let nonce = try XCTUnwrap((hello.data["attributes"] as? [String: Any])?["mesh_nonce"] as? String, "\(hello.text)")
        let proof = try MeshKey(key).proof(nonce: nonce, prover: Node.guid(id))
        peer.send(
            #"{"msg_type":"HELLO","ttl":1,"flood":false,"msg_id":"\#(Node.newID())","sender_id":"peer@\#(id)","msg_data":{"node_id":"\#(id)","version":"t","attributes":{"node_type":"server","mesh_nonce":"\#(Self.peerNonce)","mesh_proof":"\#(proof)"}}}"#)
        return peer
    }
}
