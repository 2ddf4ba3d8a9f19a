import Foundation
import NIOCore
import XCTest

@testable import PTPProtocol

final class FrameWriterTests: XCTestCase {
    private let relayAddress = NodeAddress(id: IDs.guid(IDs.relay), name: "relay")
    private var relay: SenderTag { SenderTag(relayAddress) }
    private let senderRegex = try! NSRegularExpression(
        pattern: "^[A-Za-z0-9]+@[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

    /// Splits `out` into frames, checking that every length prefix matches its JSON and that the
    /// JSON is ASCII and compact; returns the decoded objects.
    private func frames(_ out: ByteBuffer, file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        var objects: [[String: Any]] = []
        var buffer = out
        while buffer.readableBytes > 0 {
            guard let length = buffer.readInteger(as: UInt32.self) else {
                XCTFail("partial length", file: file, line: line)
                break
            }
            guard let body = buffer.readBytes(length: Int(length)) else {
                XCTFail("length \(length) runs past the \(buffer.readableBytes) bytes written", file: file, line: line)
                break
            }
            assertCompactASCII(body, file: file, line: line)
            if let object = jsonObject(body, file: file, line: line) { objects.append(object) }
        }
        return objects
    }

    /// The head every relay frame must have.
    private func assertHead(
        _ object: [String: Any], verb: String, messageID: GUID, ttl: Int, flood: Bool, sender: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(object["msg_type"] as? String, verb, file: file, line: line)
        XCTAssertEqual(object["msg_id"] as? String, messageID.description, file: file, line: line)
        XCTAssertFalse(messageID.isZero, file: file, line: line)
        XCTAssertEqual((object["ttl"] as? NSNumber)?.intValue, ttl, file: file, line: line)
        XCTAssertEqual(object["flood"] as? Bool, flood, file: file, line: line)
        XCTAssertEqual(object["sender_id"] as? String, sender, file: file, line: line)
        let senderText = sender as NSString
        XCTAssertNotNil(
            senderRegex.firstMatch(in: sender, range: NSRange(location: 0, length: senderText.length)),
            "sender_id \(sender) is not name@GUID", file: file, line: line)
        XCTAssertTrue(object.keys.contains("target_id"), "no target_id", file: file, line: line)
        XCTAssertTrue(object["target_id"] is NSNull, "target_id not null", file: file, line: line)
        XCTAssertNotNil(object["msg_data"] as? [String: Any], file: file, line: line)
        XCTAssertEqual(Set(object.keys), ["msg_type", "msg_id", "ttl", "flood", "sender_id", "target_id", "msg_data"], file: file, line: line)
    }

    func testHello() {
        var out = ByteBuffer()
        let id = GUID.random()
        RelayFrames.hello(&out, messageID: id, relay: relay)
        let objects = frames(out)
        XCTAssertEqual(objects.count, 1)
        guard let hello = objects.first else { return }
        assertHead(hello, verb: "HELLO", messageID: id, ttl: 1, flood: false, sender: "relay@\(IDs.relay)")
        let data = hello["msg_data"] as? [String: Any]
        XCTAssertEqual(data?["node_id"] as? String, IDs.relay)
        XCTAssertEqual(data?["version"] as? String, RelayFrames.version)
        XCTAssertEqual((data?["attributes"] as? [String: Any])?["node_type"] as? String, "server")
        // Our own reader sees a server HELLO from the relay.
        var body = out
        body.moveReaderIndex(forwardBy: 4)
        switch readEnvelope(Array(body.readableBytesView)) {
        case .success(let envelope):
            XCTAssertEqual(envelope.verb, .hello)
            XCTAssertTrue(envelope.declaresServer)
            XCTAssertEqual(envelope.sender, relayAddress)
            XCTAssertEqual(envelope.headMessageID, id)
        case .failure(let error):
            XCTFail("\(error)")
        }
    }

    func testUnnamedSenderWrittenAsNode() {
        var out = ByteBuffer()
        let id = GUID.random()
        RelayFrames.hello(&out, messageID: id, relay: SenderTag(NodeAddress(id: IDs.guid(IDs.relay), name: nil)))
        guard let hello = frames(out).first else { return XCTFail("no frame") }
        assertHead(hello, verb: "HELLO", messageID: id, ttl: 1, flood: false, sender: "node@\(IDs.relay)")
    }

    func testLengthPrefixEqualsJSONSize() {
        var out = ByteBuffer()
        out.writeString("junk")  // frames written after other bytes
        out.moveReaderIndex(forwardBy: 4)
        RelayFrames.ack(&out, messageID: GUID.random(), acknowledging: IDs.guid(IDs.message), relay: relay)
        RelayFrames.nack(&out, messageID: GUID.random(), refusing: IDs.guid(IDs.message), reason: .unreachable, stored: false, relay: relay)
        let total = out.readableBytes
        let first = Int(out.getInteger(at: out.readerIndex, as: UInt32.self)!)
        let second = Int(out.getInteger(at: out.readerIndex + 4 + first, as: UInt32.self)!)
        XCTAssertEqual(4 + first + 4 + second, total)
        XCTAssertEqual(out.getBytes(at: out.readerIndex + 4, length: 1), [UInt8(ascii: "{")])
        XCTAssertEqual(out.getBytes(at: out.readerIndex + 4 + first - 1, length: 1), [UInt8(ascii: "}")])
        XCTAssertEqual(frames(out).count, 2)
    }

    func testAck() {
        var out = ByteBuffer()
        let id = GUID.random()
        RelayFrames.ack(&out, messageID: id, acknowledging: IDs.guid(IDs.message), relay: relay)
        guard let ack = frames(out).first else { return XCTFail("no frame") }
        assertHead(ack, verb: "ACK", messageID: id, ttl: 1, flood: false, sender: "relay@\(IDs.relay)")
        let data = ack["msg_data"] as? [String: Any]
        XCTAssertEqual(data?["node_id"] as? String, IDs.relay)
        XCTAssertEqual(data?["msg_id"] as? String, IDs.message)
        XCTAssertEqual(data?.count, 2)
    }

    func testNack() {
        var out = ByteBuffer()
        let id = GUID.random()
        RelayFrames.nack(
            &out, messageID: id, refusing: IDs.guid(IDs.message), reason: .ttlExpired, stored: true,
            recipients: [IDs.guid(IDs.a), IDs.guid(IDs.b)], relay: relay)
        RelayFrames.nack(&out, messageID: id, refusing: IDs.guid(IDs.message), reason: .spoofedSender, stored: false, relay: relay)
        let objects = frames(out)
        XCTAssertEqual(objects.count, 2)
        guard objects.count == 2 else { return }
        assertHead(objects[0], verb: "NACK", messageID: id, ttl: 32, flood: false, sender: "relay@\(IDs.relay)")
        let data = objects[0]["msg_data"] as? [String: Any]
        XCTAssertEqual(data?["node_id"] as? String, IDs.relay)
        XCTAssertEqual(data?["msg_id"] as? String, IDs.message)
        XCTAssertEqual(data?["reason"] as? String, "ttl_expired")
        XCTAssertEqual(data?["stored"] as? Bool, true)
        let recipients = (data?["recipient"] as? [[String: Any]])?.compactMap { $0["node_id"] as? String }
        XCTAssertEqual(recipients, [IDs.a, IDs.b])
        let second = objects[1]["msg_data"] as? [String: Any]
        XCTAssertEqual(second?["reason"] as? String, "spoofed_sender")
        XCTAssertEqual(second?["stored"] as? Bool, false)
        XCTAssertNil(second?["recipient"])
    }

    /// A template's frames are the writer's, byte for byte, for relays with a name, without one and
    /// with the longest one: `write` writes one frame both ways with the same fresh ids.
    private func checkTemplate(
        _ make: (SenderTag) -> FrameTemplate,
        _ write: (FrameTemplate, SenderTag, inout ByteBuffer, inout ByteBuffer) -> Void,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        for relayTag in [relay, SenderTag(NodeAddress(id: IDs.guid(IDs.relay), name: nil)),
                         SenderTag(NodeAddress(id: GUID.random(), name: String(repeating: "r", count: 64)))] {
            let template = make(relayTag)
            var fromTemplate = ByteBuffer()
            var fromWriter = ByteBuffer()
            fromTemplate.writeString("prefix")  // the template writes at the writer index
            fromWriter.writeString("prefix")
            for _ in 0..<5 { write(template, relayTag, &fromTemplate, &fromWriter) }
            XCTAssertEqual(Array(fromTemplate.readableBytesView), Array(fromWriter.readableBytesView), file: file, line: line)
            fromTemplate.moveReaderIndex(forwardBy: 6)
            XCTAssertEqual(frames(fromTemplate).count, 5, file: file, line: line)
        }
    }

    func testAckTemplateMatchesAckWriter() {
        checkTemplate(FrameTemplate.ack) { template, relayTag, fromTemplate, fromWriter in
            let id = GUID.random()
            let acknowledged = GUID.random()
            template.write(&fromTemplate, messageID: id, acknowledging: acknowledged)
            RelayFrames.ack(&fromWriter, messageID: id, acknowledging: acknowledged, relay: relayTag)
        }
    }

    func testHelloTemplateMatchesHelloWriter() {
        checkTemplate(FrameTemplate.hello) { template, relayTag, fromTemplate, fromWriter in
            let id = GUID.random()
            template.write(&fromTemplate, messageID: id)
            MeshFrames.hello(&fromWriter, messageID: id, relay: relayTag, nonce: nil, proof: nil)
        }
    }

    func testEmptyRoutingTemplateMatchesRoutingWriter() {
        checkTemplate(FrameTemplate.emptyRouting) { template, relayTag, fromTemplate, fromWriter in
            let id = GUID.random()
            template.write(&fromTemplate, messageID: id)
            var ids = 0
            RelayFrames.routing(&fromWriter, entries: [], relay: relayTag) {
                ids += 1
                return id
            }
            XCTAssertEqual(ids, 1, "one frame")
        }
    }

    func testNackReasonsAsProfileNamesThem() {
        XCTAssertEqual(
            NackReason.allCases.map(\.rawValue),
            ["unreachable", "ttl_expired", "queue_full", "rate_limited", "invalid", "spoofed_sender", "id_in_use",
             "no_certificate", "not_a_member", "slow_consumer"])
    }

    func testVerbNamesUpperCase() {
        for verb in Verb.allCases {
            var out = ByteBuffer()
            let id = GUID.random()
            FrameWriter.write(&out, verb: verb, messageID: id, ttl: 7, flood: verb.defaultFlood, sender: relay) { $0.writeASCII("{}") }
            guard let object = frames(out).first else { XCTFail("no frame"); continue }
            assertHead(object, verb: verb.name, messageID: id, ttl: 7, flood: verb.defaultFlood, sender: "relay@\(IDs.relay)")
            XCTAssertEqual(verb.name, verb.name.uppercased())
        }
    }

    func testRoutingEmptyIsOneFrame() {
        var out = ByteBuffer()
        var ids: [GUID] = []
        RelayFrames.routing(&out, entries: [], relay: relay) {
            let id = GUID.random()
            ids.append(id)
            return id
        }
        let objects = frames(out)
        XCTAssertEqual(objects.count, 1)
        XCTAssertEqual(ids.count, 1)
        guard let routing = objects.first else { return }
        assertHead(routing, verb: "ROUTING", messageID: ids[0], ttl: 1, flood: false, sender: "relay@\(IDs.relay)")
        let data = routing["msg_data"] as? [String: Any]
        XCTAssertEqual(data?["node_id"] as? String, IDs.relay)
        XCTAssertEqual((data?["nodes"] as? [Any])?.count, 0)
    }

    /// Writes `entries` as ROUTING, checks every chunk and returns the entries read back in order.
    private func roundTripRouting(
        _ entries: [(address: SenderTag, ttl: Int)], maxFrameBytes: Int, file: StaticString = #filePath, line: UInt = #line
    ) -> (entries: [(String, Int)], frames: Int) {
        var out = ByteBuffer()
        var ids: [GUID] = []
        RelayFrames.routing(&out, entries: entries, relay: relay, maxFrameBytes: maxFrameBytes) {
            let id = GUID.random()
            ids.append(id)
            return id
        }
        var buffer = out
        var index = 0
        var read: [(String, Int)] = []
        while buffer.readableBytes > 0 {
            let length = Int(buffer.readInteger(as: UInt32.self)!)
            guard let body = buffer.readBytes(length: length), let object = jsonObject(body, file: file, line: line) else {
                XCTFail("bad chunk", file: file, line: line)
                break
            }
            let nodeCount = ((object["msg_data"] as? [String: Any])?["nodes"] as? [Any])?.count ?? 0
            // Over the limit only when the head and a single entry do not fit in it.
            if nodeCount > 1 || maxFrameBytes >= 8192 {
                XCTAssertLessThanOrEqual(length, maxFrameBytes, "chunk \(index) is \(length) bytes", file: file, line: line)
            }
            XCTAssertTrue(body.allSatisfy { $0 < 0x80 }, file: file, line: line)
            if index < ids.count {
                assertHead(object, verb: "ROUTING", messageID: ids[index], ttl: 1, flood: false, sender: "relay@\(IDs.relay)", file: file, line: line)
            }
            let nodes = ((object["msg_data"] as? [String: Any])?["nodes"] as? [[String: Any]]) ?? []
            if !entries.isEmpty {
                XCTAssertFalse(nodes.isEmpty, "empty chunk \(index)", file: file, line: line)
            }
            for node in nodes {
                read.append((node["node_id"] as? String ?? "?", (node["ttl"] as? NSNumber)?.intValue ?? -1))
            }
            index += 1
        }
        XCTAssertEqual(index, ids.count, "one id per chunk", file: file, line: line)
        XCTAssertEqual(Set(ids).count, ids.count, "chunk ids repeat", file: file, line: line)
        return (read, index)
    }

    func testRoutingChunkedAt8KiB() {
        var generator = FastRandom()
        var entries: [(address: SenderTag, ttl: Int)] = []
        for index in 0..<1000 {
            let name = String(repeating: "n", count: 1 + index % 64)
            entries.append((SenderTag(NodeAddress(id: GUID.random(using: &generator), name: name)), 1 + index % 32))
        }
        let result = roundTripRouting(entries, maxFrameBytes: 8192)
        XCTAssertGreaterThan(result.frames, 1)
        XCTAssertEqual(result.entries.count, entries.count)
        for (written, read) in zip(entries, result.entries) {
            XCTAssertEqual(read.0, written.address.address.description)
            XCTAssertEqual(read.1, written.ttl)
        }
    }

    func testRoutingChunkBoundaries() {
        // Many sizes around the limit (at least the head plus one entry of the longest name): every entry
        // present once, every chunk within the limit.
        var generator = FastRandom()
        for limit in [360, 400, 512, 1000, 2048, 8192] {
            for count in [1, 2, 3, 5, 17, 64, 150] {
                var entries: [(address: SenderTag, ttl: Int)] = []
                for index in 0..<count {
                    let name: String? = index % 5 == 0 ? nil : String(repeating: "x", count: (index * 7) % 64 + 1)
                    entries.append((SenderTag(NodeAddress(id: GUID.random(using: &generator), name: name)), index % 2 == 0 ? 1 : 32))
                }
                let result = roundTripRouting(entries, maxFrameBytes: limit)
                XCTAssertEqual(result.entries.map(\.0), entries.map { $0.address.address.description }, "limit \(limit) count \(count)")
                XCTAssertEqual(result.entries.map(\.1), entries.map(\.ttl), "limit \(limit) count \(count)")
            }
        }
    }

    /// Found by Fuzz/fuzz-message-reader: a flood whose `msg_data.msg_id` is the zero GUID (no id:
    /// the head's counts) went out with the zero id in `msg_data`, where the existing client reads
    /// it. The copy carries the flood id there, once; a real `msg_data.msg_id` is copied as it is.
    func testForwardedFloodCarriesItsIDInMsgData() throws {
        let head = "0fd7b87c-e9bc-4404-9fc9-fe5537f7c8ae"
        for (dataID, expected) in [(IDs.zero, head), ("null", head), (nil, head), (IDs.message, IDs.message)] as [(String?, String)] {
            var data = [("node_id", quoted(IDs.a)), ("channel", "\"c\""), ("channel_id", quoted(IDs.channel))]
            if let dataID { data.insert(("msg_id", dataID == "null" ? "null" : quoted(dataID)), at: 0) }
            let json = frame("JOIN", head: [("msg_id", quoted(head))], data: data)
            var reader = MessageReader()
            var out = ByteBuffer()
            let bytes = Array(json.utf8)
            try bytes.withUnsafeBytes { raw in
                let envelope = try reader.read(raw)
                let floodID = try XCTUnwrap(envelope.floodID)
                XCTAssertEqual(floodID, IDs.guid(expected))
                ForwardedFrames.flood(&out, envelope, from: ReceivedJSON(tape: reader.tape, bytes: raw), floodID: floodID, ttl: 31, sender: relay)
            }
            let copy = try XCTUnwrap(frames(out).first)
            let copied = try XCTUnwrap(copy["msg_data"] as? [String: Any])
            XCTAssertEqual(copied["msg_id"] as? String, expected, "msg_data.msg_id \(String(describing: dataID))")
            let text = String(decoding: splitFrames(out)[0], as: UTF8.self)
            XCTAssertEqual(text.components(separatedBy: "\"msg_id\"").count - 1, 2, "one msg_id in the head, one in msg_data: \(text)")
        }
    }

    func testRecipientsAndCopy() {
        var out = ByteBuffer()
        FrameWriter.writeRecipients(&out, [IDs.guid(IDs.a), IDs.guid(IDs.b)])
        XCTAssertEqual(String(buffer: out), "[{\"node_id\":\"\(IDs.a)\"},{\"node_id\":\"\(IDs.b)\"}]")
        out.clear()
        FrameWriter.writeRecipients(&out, [])
        XCTAssertEqual(String(buffer: out), "[]")

        // copyMembers / copyValue make compact ASCII out of what they copy.
        let source = Array("{ \"a\" : \"é\" , \"skip\" : 1 , \"c\" : [ 1 , 2 ] }".utf8)
        var tape = JSONTape()
        source.withUnsafeBytes { raw in
            do throws(JSONTape.ParseError) { try tape.parse(raw) } catch { XCTFail("\(error)") }
            var members = ByteBuffer()
            let count = FrameWriter.copyMembers(&members, tape: tape.view, bytes: raw, object: 0, leadingComma: false) {
                $0.count == 4 && JSONTape.equals("skip", $0, 0, 4)
            }
            XCTAssertEqual(count, 2)
            XCTAssertEqual(String(buffer: members), #""a":"\u00e9","c":[1,2]"#)
            var value = ByteBuffer()
            FrameWriter.copyValue(&value, tape: tape.view, bytes: raw, token: 0)
            XCTAssertEqual(String(buffer: value), #"{"a":"\u00e9","skip":1,"c":[1,2]}"#)
            var leading = ByteBuffer()
            FrameWriter.copyMembers(&leading, tape: tape.view, bytes: raw, object: 0, leadingComma: true)
            XCTAssertEqual(String(buffer: leading), #","a":"\u00e9","skip":1,"c":[1,2]"#)
            guard let a = tape.member("a", in: 0, of: raw) else { return XCTFail("no a") }
            var string = ByteBuffer()
            FrameWriter.copyValue(&string, tape: tape.view, bytes: raw, token: a)
            XCTAssertEqual(String(buffer: string), #""\u00e9""#)
        }
    }
}
