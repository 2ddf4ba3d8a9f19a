import Foundation
import NIOCore
import XCTest

@testable import PTPProtocol

final class MeshFramesTests: XCTestCase {
    private let relayAddress = NodeAddress(id: IDs.guid(IDs.relay), name: "relay")
    private var relay: SenderTag { SenderTag(relayAddress) }
    private let nonce = "00112233445566778899aabbccddeeff"
    private let proof = "412b9c17b7cd63777d5e43c04cbed2add75de7d03338b436acd938e9aa79ebc9"

    /// The bodies of the length-prefixed frames in `out`; each must be ASCII and parse compact.
    private func bodies(_ out: ByteBuffer, file: StaticString = #filePath, line: UInt = #line) -> [[UInt8]] {
        let frames = splitFrames(out, file: file, line: line)
        for body in frames { assertCompactASCII(body, file: file, line: line) }
        return frames
    }

    /// Reads one frame through `MessageReader`, then its entries with `MeshRouting.entries`.
    private func readRouting(_ body: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> MeshRouting? {
        var reader = MessageReader()
        return body.withUnsafeBytes { raw -> MeshRouting? in
            do throws(InvalidMessage) {
                let envelope = try reader.read(raw)
                XCTAssertEqual(envelope.verb, .routing, file: file, line: line)
                return try MeshRouting.entries(tape: reader.tape, bytes: raw, data: envelope.data)
            } catch {
                XCTFail("refused: \(error) in \(body.text)", file: file, line: line)
                return nil
            }
        }
    }

    /// Parses `json` with a bare tape (not `MessageReader`, which refuses a ROUTING frame with
    /// some kinds of bad entry outright) and reads its entries.
    private func parseRouting(_ json: String) -> Result<MeshRouting, InvalidMessage> {
        let bytes = Array(json.utf8)
        var tape = JSONTape()
        return bytes.withUnsafeBytes { raw in
            do {
                try tape.parse(raw)
            } catch {
                return .failure(InvalidMessage("\(error)"))
            }
            do throws(InvalidMessage) {
                return .success(try MeshRouting.entries(tape: tape, bytes: raw))
            } catch {
                return .failure(error)
            }
        }
    }

    /// An entry as it reads back: a node without a name is written, so read, as `node@GUID`.
    private func asRead(_ entry: MeshRouteEntry) -> MeshRouteEntry {
        var entry = entry
        if entry.node.name == nil { entry.node.name = "node" }
        return entry
    }

    private func node(_ index: Int, name: String? = nil) -> NodeAddress {
        NodeAddress(id: GUID(high: 0x1111_2222_3333_4444, low: UInt64(index) | 0x8000_0000_0000_0000), name: name)
    }

    // MARK: HELLO

    func testHelloWithNonceAndProofReadBack() {
        var out = ByteBuffer()
        let id = GUID.random()
        MeshFrames.hello(&out, messageID: id, relay: relay, nonce: nonce, proof: proof)
        let frames = bodies(out)
        XCTAssertEqual(frames.count, 1)
        guard let body = frames.first, let object = jsonObject(body) else { return }
        XCTAssertEqual(object["msg_type"] as? String, "HELLO")
        XCTAssertEqual(object["msg_id"] as? String, id.description)
        XCTAssertEqual((object["ttl"] as? NSNumber)?.intValue, 1)
        XCTAssertEqual(object["flood"] as? Bool, false)
        XCTAssertEqual(object["sender_id"] as? String, "relay@\(IDs.relay)")
        XCTAssertTrue(object["target_id"] is NSNull)
        let data = object["msg_data"] as? [String: Any]
        XCTAssertEqual(data?["node_id"] as? String, IDs.relay)
        XCTAssertEqual(data?["version"] as? String, RelayFrames.version)
        let attributes = data?["attributes"] as? [String: Any]
        XCTAssertEqual(attributes?["node_type"] as? String, "server")
        XCTAssertEqual(attributes?["mesh_nonce"] as? String, nonce)
        XCTAssertEqual(attributes?["mesh_proof"] as? String, proof)

        switch readEnvelope(body, handshakeDone: false) {
        case .success(let envelope):
            XCTAssertEqual(envelope.verb, .hello)
            XCTAssertTrue(envelope.declaresServer)
            XCTAssertFalse(envelope.declaresLegacyClient)
            XCTAssertEqual(envelope.origin?.id, relayAddress.id)
            XCTAssertEqual(envelope.meshNonce, nonce)
            XCTAssertEqual(envelope.meshProof, proof)
        case .failure(let error):
            XCTFail("\(error)")
        }
    }

    func testHelloWithOneAttribute() {
        for (nonce, proof) in [(nonce, nil), (nil, proof)] as [(String?, String?)] {
            var out = ByteBuffer()
            MeshFrames.hello(&out, messageID: GUID.random(), relay: relay, nonce: nonce, proof: proof)
            guard let body = bodies(out).first else { return XCTFail("no frame") }
            guard case .success(let envelope) = readEnvelope(body) else { return XCTFail("refused") }
            XCTAssertEqual(envelope.meshNonce, nonce)
            XCTAssertEqual(envelope.meshProof, proof)
            let attributes = (jsonObject(body)?["msg_data"] as? [String: Any])?["attributes"] as? [String: Any]
            XCTAssertEqual(attributes?.count, 2)
        }
    }

    /// Without attributes it is the plain relay HELLO, byte for byte.
    func testHelloWithoutAttributesIsRelayHello() {
        let id = GUID.random()
        var mesh = ByteBuffer()
        MeshFrames.hello(&mesh, messageID: id, relay: relay, nonce: nil, proof: nil)
        var plain = ByteBuffer()
        RelayFrames.hello(&plain, messageID: id, relay: relay)
        XCTAssertEqual(Array(mesh.readableBytesView), Array(plain.readableBytesView))
    }

    func testPlainHelloHasNoMeshAttributes() {
        let json = frame("HELLO", head: [("sender_id", quoted("x@\(IDs.a)"))], data: [("attributes", #"{"node_type":"server"}"#)])
        guard let envelope = expectValid(json) else { return }
        XCTAssertTrue(envelope.declaresServer)
        XCTAssertNil(envelope.meshNonce)
        XCTAssertNil(envelope.meshProof)
    }

    /// A mesh attribute that is not a string reads as absent; the HELLO stays valid.
    func testHelloMeshAttributesNotStringsAreNil() {
        for value in ["5", "null", "true", "[]", "{}"] {
            let attributes = #"{"node_type":"server","mesh_nonce":\#(value),"mesh_proof":\#(value)}"#
            let json = frame("HELLO", data: [("node_id", quoted(IDs.a)), ("attributes", attributes)])
            guard let envelope = expectValid(json) else { continue }
            XCTAssertNil(envelope.meshNonce, value)
            XCTAssertNil(envelope.meshProof, value)
            XCTAssertTrue(envelope.declaresServer)
        }
    }

    func testHelloMeshAttributesEscapedAreDecoded() {
        let attributes = #"{"node_type":"server","mesh_nonce":"\u0061bc","mesh_proof":"d\u0065f"}"#
        guard let envelope = expectValid(frame("HELLO", data: [("node_id", quoted(IDs.a)), ("attributes", attributes)])) else { return }
        XCTAssertEqual(envelope.meshNonce, "abc")
        XCTAssertEqual(envelope.meshProof, "def")
    }

    // MARK: ROUTING writer

    func testRoutingRoundTrip() {
        let entries = [
            MeshRouteEntry(node: node(1, name: "alice"), ttl: 1),
            MeshRouteEntry(node: node(2), ttl: 2, seq: 0),
            MeshRouteEntry(node: node(3, name: "Bob7"), ttl: 31, seq: UInt32.max, legacy: true),
            MeshRouteEntry(node: node(4, name: "carol"), ttl: 32, legacy: true),
        ]
        var out = ByteBuffer()
        var ids: [GUID] = []
        MeshFrames.routing(&out, entries: entries, relay: relay) {
            ids.append(GUID.random())
            return ids.last!
        }
        let frames = bodies(out)
        XCTAssertEqual(frames.count, 1)
        XCTAssertEqual(ids.count, 1)
        guard let body = frames.first else { return }
        guard let object = jsonObject(body) else { return }
        XCTAssertEqual(object["msg_type"] as? String, "ROUTING")
        XCTAssertEqual(object["msg_id"] as? String, ids[0].description)
        XCTAssertEqual((object["ttl"] as? NSNumber)?.intValue, 1)
        XCTAssertEqual(object["flood"] as? Bool, false)
        XCTAssertEqual(object["sender_id"] as? String, "relay@\(IDs.relay)")
        XCTAssertTrue(object["target_id"] is NSNull)
        let data = object["msg_data"] as? [String: Any]
        XCTAssertEqual(data?["node_id"] as? String, IDs.relay, "bare GUID, as RelayFrames.routing writes it")
        let nodes = data?["nodes"] as? [[String: Any]] ?? []
        XCTAssertEqual(nodes.count, 4)
        // seq only when set, legacy only when true.
        XCTAssertEqual(nodes.map { Set($0.keys) }, [
            ["node_id", "ttl"], ["node_id", "ttl", "seq"], ["node_id", "ttl", "seq", "legacy"], ["node_id", "ttl", "legacy"],
        ])
        XCTAssertEqual(nodes[0]["node_id"] as? String, "alice@\(node(1).id)")
        XCTAssertEqual(nodes[1]["node_id"] as? String, "node@\(node(2).id)")
        XCTAssertEqual((nodes[2]["seq"] as? NSNumber)?.uint32Value, UInt32.max)
        XCTAssertTrue(body.text.contains(#""seq":4294967295,"legacy":true}"#), body.text)

        let read = readRouting(body)
        XCTAssertEqual(read, MeshRouting(relay: relayAddress.id, entries: entries.map(asRead), malformed: 0))
    }

    func testRoutingEmptyIsOneFrame() {
        var out = ByteBuffer()
        var calls = 0
        MeshFrames.routing(&out, entries: [], relay: relay) {
            calls += 1
            return GUID.random()
        }
        let frames = bodies(out)
        XCTAssertEqual(frames.count, 1)
        XCTAssertEqual(calls, 1)
        guard let body = frames.first else { return }
        XCTAssertTrue(body.text.hasSuffix(#""msg_data":{"node_id":"\#(IDs.relay)","nodes":[]}}"#), body.text)
        XCTAssertEqual(readRouting(body), MeshRouting(relay: relayAddress.id, entries: [], malformed: 0))
    }

    /// 2,000 entries, names up to 64 characters: every frame, its length prefix included, is at
    /// most 8 KiB; every entry comes back exactly once, in order; one fresh id per frame.
    func testRoutingChunkedAt8KiBWithPrefix() {
        var generator = FastRandom()
        var entries: [MeshRouteEntry] = []
        for index in 0..<2000 {
            let name = String(repeating: "n", count: 1 + index % 64)
            entries.append(MeshRouteEntry(
                node: NodeAddress(id: GUID.random(using: &generator), name: index % 7 == 0 ? nil : name),
                ttl: 1 + index % 32,
                seq: index % 3 == 0 ? nil : UInt32.max - UInt32(index),
                legacy: index % 5 == 0))
        }
        var out = ByteBuffer()
        var ids: [GUID] = []
        MeshFrames.routing(&out, entries: entries, relay: relay) {
            ids.append(GUID.random())
            return ids.last!
        }

        // Walk the prefixes by hand: the bound is on prefix + body.
        var buffer = out
        var sizes: [Int] = []
        while buffer.readableBytes > 0 {
            guard let length = buffer.readInteger(as: UInt32.self), buffer.readableBytes >= Int(length) else {
                return XCTFail("truncated")
            }
            buffer.moveReaderIndex(forwardBy: Int(length))
            sizes.append(4 + Int(length))
        }
        XCTAssertGreaterThan(sizes.count, 10)
        XCTAssertLessThanOrEqual(sizes.max() ?? 0, 8192)
        XCTAssertGreaterThan(sizes.dropLast().min() ?? 0, 8192 - 300, "frames are filled")
        XCTAssertEqual(sizes.count, ids.count, "one id per frame")
        XCTAssertEqual(Set(ids).count, ids.count, "ids repeat")

        var read: [MeshRouteEntry] = []
        for (index, body) in bodies(out).enumerated() {
            guard let routing = readRouting(body) else { return }
            XCTAssertEqual(routing.relay, relayAddress.id)
            XCTAssertEqual(routing.malformed, 0)
            XCTAssertFalse(routing.entries.isEmpty, "empty chunk \(index)")
            XCTAssertEqual(jsonObject(body)?["msg_id"] as? String, ids[index].description)
            read.append(contentsOf: routing.entries)
        }
        XCTAssertEqual(read, entries.map(asRead))
        XCTAssertEqual(Set(read.map(\.node.id)).count, 2000)
    }

    /// Writes `count` entries at `maxFrameBytes` and checks the bound, including exactly full.
    func testRoutingChunkBoundIsExact() {
        let entries = (0..<200).map { MeshRouteEntry(node: node($0, name: "n\($0)"), ttl: 5, seq: UInt32($0)) }
        for maxFrameBytes in [600, 700, 1000, 1001, 4096] {
            var out = ByteBuffer()
            MeshFrames.routing(&out, entries: entries, relay: relay, maxFrameBytes: maxFrameBytes) { GUID.random() }
            var total = 0
            for body in bodies(out) {
                XCTAssertLessThanOrEqual(body.count + 4, maxFrameBytes)
                total += readRouting(body)?.entries.count ?? 0
            }
            XCTAssertEqual(total, entries.count)
        }
    }

    /// Names the relay will not write (not letters and digits) go out as `node`; output is ASCII.
    func testRoutingNonASCIINameWrittenAsNode() {
        var address = node(9)
        address.name = "Zo\u{eb}"  // set past NodeAddress's check
        var out = ByteBuffer()
        MeshFrames.routing(&out, entries: [MeshRouteEntry(node: address, ttl: 3)], relay: relay) { GUID.random() }
        guard let body = bodies(out).first else { return XCTFail("no frame") }
        XCTAssertTrue(body.text.contains(#"{"node_id":"node@\#(address.id)","ttl":3}"#), body.text)
        XCTAssertEqual(readRouting(body)?.entries, [MeshRouteEntry(node: NodeAddress(id: address.id, name: "node"), ttl: 3)])
    }

    func testRoutingTTLClampedOnWrite() {
        var out = ByteBuffer()
        let entries = [MeshRouteEntry(node: node(1), ttl: 0), MeshRouteEntry(node: node(2), ttl: 99)]
        MeshFrames.routing(&out, entries: entries, relay: relay) { GUID.random() }
        guard let body = bodies(out).first else { return XCTFail("no frame") }
        XCTAssertEqual(readRouting(body)?.entries.map(\.ttl), [1, 32])
    }

    // MARK: ROUTING reader

    private func routingJSON(nodes: String, nodeID: String? = quoted(IDs.relay)) -> String {
        var data: [(String, String)] = []
        if let nodeID { data.append(("node_id", nodeID)) }
        data.append(("nodes", nodes))
        return frame("ROUTING", head: [("ttl", "1"), ("flood", "false"), ("msg_id", quoted(IDs.head))], data: data)
    }

    func testMalformedEntriesSkippedAndCounted() {
        let good = #"{"node_id":"a@\#(IDs.a)","ttl":2}"#
        let malformed = [
            #""not an object""#, "7", "null", "[]",
            #"{"ttl":2}"#,  // no node_id
            #"{"node_id":"not-a-guid","ttl":2}"#,
            #"{"node_id":5,"ttl":2}"#,
            #"{"node_id":"b@\#(IDs.b)"}"#,  // no ttl
            #"{"node_id":"b@\#(IDs.b)","ttl":null}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":2.5}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":0}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":33}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":-1}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":true}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":"x"}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":2,"seq":-1}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":2,"seq":4294967296}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":2,"seq":1.5}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":2,"seq":"7"}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":2,"legacy":"true"}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":2,"legacy":1}"#,
        ]
        let nodes = "[" + ([good] + malformed + [good]).joined(separator: ",") + "]"
        switch parseRouting(routingJSON(nodes: nodes)) {
        case .success(let routing):
            XCTAssertEqual(routing.malformed, malformed.count)
            XCTAssertEqual(routing.entries, [MeshRouteEntry(node: NodeAddress("a@\(IDs.a)")!, ttl: 2),
                                             MeshRouteEntry(node: NodeAddress("a@\(IDs.a)")!, ttl: 2)])
            XCTAssertEqual(routing.relay, IDs.guid(IDs.relay))
        case .failure(let error):
            XCTFail("\(error)")
        }
    }

    /// The entries MessageReader lets through (it refuses a frame whose entry lacks a node id or
    /// an integer ttl) are still counted when read after it.
    func testMalformedEntriesCountedAfterMessageReader() {
        let nodes = "[" + [
            #"{"node_id":"a@\#(IDs.a)","ttl":2,"seq":7,"legacy":false}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":40}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":2,"seq":-3}"#,
            #"{"node_id":"b@\#(IDs.b)","ttl":2,"legacy":"yes"}"#,
        ].joined(separator: ",") + "]"
        let routing = readRouting(Array(routingJSON(nodes: nodes).utf8))
        XCTAssertEqual(routing?.entries, [MeshRouteEntry(node: NodeAddress("a@\(IDs.a)")!, ttl: 2, seq: 7)])
        XCTAssertEqual(routing?.malformed, 3)
    }

    func testLenientEntries() {
        let nodes = "[" + [
            #"{"node_id":"\#(IDs.a.uppercased())","ttl":"4"}"#,  // bare upper-case id, string ttl (SPEC.md)
            #"{"node_id":"b@\#(IDs.b)","ttl":2,"seq":null,"legacy":null,"extra":{"x":[1]}}"#,
            #"{"node_id":"\u0062@\#(IDs.b)","ttl":32,"seq":0,"legacy":true}"#,  // escaped
        ].joined(separator: ",") + "]"
        guard case .success(let routing) = parseRouting(routingJSON(nodes: nodes, nodeID: quoted("r@" + IDs.relay))) else {
            return XCTFail("refused")
        }
        XCTAssertEqual(routing.malformed, 0)
        XCTAssertEqual(routing.relay, IDs.guid(IDs.relay))
        XCTAssertEqual(routing.entries, [
            MeshRouteEntry(node: NodeAddress(id: IDs.guid(IDs.a), name: nil), ttl: 4),
            MeshRouteEntry(node: NodeAddress(id: IDs.guid(IDs.b), name: "b"), ttl: 2),
            MeshRouteEntry(node: NodeAddress(id: IDs.guid(IDs.b), name: "b"), ttl: 32, seq: 0, legacy: true),
        ])
    }

    func testRoutingWithoutRelayID() {
        guard case .success(let routing) = parseRouting(ClientFrames.routing) else { return XCTFail("refused") }
        XCTAssertNil(routing.relay)
        XCTAssertEqual(routing.entries.count, 1)
        guard case .success(let nullID) = parseRouting(routingJSON(nodes: "[]", nodeID: "null")) else { return XCTFail("refused") }
        XCTAssertNil(nullID.relay)
    }

    func testMissingOrNonArrayNodesThrows() {
        let cases: [(String, String)] = [
            (frame("ROUTING", data: [("node_id", quoted(IDs.relay))]), "msg_data.nodes is missing"),
            (routingJSON(nodes: "null"), "msg_data.nodes is missing"),
            (routingJSON(nodes: "{}"), "msg_data.nodes is not an array"),
            (routingJSON(nodes: #""[]""#), "msg_data.nodes is not an array"),
            (routingJSON(nodes: "[]", nodeID: quoted("nope")), "msg_data.node_id is not a node id"),
            (routingJSON(nodes: "[]", nodeID: "7"), "msg_data.node_id is not a node id"),
            (#"{"msg_type":"ROUTING","msg_data":[]}"#, "msg_data is not an object"),
            (#"{"msg_type":"ROUTING"}"#, "msg_data is not an object"),
            ("[]", "frame is not a JSON object"),
        ]
        for (json, reason) in cases {
            switch parseRouting(json) {
            case .success: XCTFail("accepted \(json)")
            case .failure(let error): XCTAssertEqual(error.reason, reason, json)
            }
        }
    }
}
