import Foundation
import NIOCore
@testable import PTPBench
import PTPProtocol
import XCTest

final class BenchFramesTests: XCTestCase {
    private let sender = SenderTag(NodeAddress(id: .random(), name: "bench0"))
    private let recipient = GUID.random()

    private func body(of frame: ByteBuffer) -> ByteBuffer {
        var frame = frame
        let length = frame.readInteger(as: UInt32.self)!
        XCTAssertEqual(Int(length), frame.readableBytes, "the length prefix counts the JSON")
        return frame
    }

    func testMessageTemplateWritesAValidMessageWithIdAndSendTime() throws {
        let template = MessageTemplate(from: sender, to: recipient, channelID: .random(), payload: 64, timestamp: "2026-12-05T17:00:00.000Z")
        let id = BenchMessageID(connection: 7, run: 0xBEEF, sequence: 123_456).guid
        var out = ByteBuffer()
        template.write(&out, id: id, sentAt: 0x0123_4567_89AB_CDEF)
        template.write(&out, id: id, sentAt: 1)
        XCTAssertEqual(out.readableBytes, 2 * template.count)
        let first = body(of: out.getSlice(at: 0, length: template.count)!)

        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(first.readableBytesView)) as? [String: Any])
        XCTAssertEqual(json["msg_type"] as? String, "MESSAGE")
        XCTAssertEqual(json["msg_id"] as? String, id.description)
        let data = try XCTUnwrap(json["msg_data"] as? [String: Any])
        XCTAssertEqual(data["msg_id"] as? String, id.description)
        XCTAssertEqual((data["recipient"] as? [[String: String]])?.first?["node_id"], recipient.description)
        let message = try XCTUnwrap(data["message"] as? String)
        XCTAssertEqual(message.count, 64)
        XCTAssertEqual(String(message.prefix(16)), "0123456789abcdef")
        XCTAssertNotNil(Data(base64Encoded: message), "the text is valid base64")

        let scanned = BenchFrames.scan(first)
        XCTAssertEqual(scanned, ScannedFrame(kind: .message, messageID: id, sentAt: 0x0123_4567_89AB_CDEF))
        XCTAssertEqual(BenchMessageID(scanned.messageID!), BenchMessageID(connection: 7, run: 0xBEEF, sequence: 123_456))
        XCTAssertEqual(BenchFrames.scan(body(of: out.getSlice(at: template.count, length: template.count)!)).sentAt, 1)
    }

    func testAckTemplate() throws {
        let template = AckFrameTemplate(from: sender)
        let acknowledged = GUID.random()
        var out = ByteBuffer()
        template.write(&out, id: GUID(high: 1, low: 2), acknowledging: acknowledged)
        let frame = body(of: out)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(frame.readableBytesView)) as? [String: Any])
        XCTAssertEqual(json["msg_type"] as? String, "ACK")
        XCTAssertEqual((json["msg_data"] as? [String: String])?["node_id"], sender.address.id.description)
        XCTAssertEqual(BenchFrames.scan(frame), ScannedFrame(kind: .ack, messageID: acknowledged))
    }

    /// Keys found by name, in any order and with whitespace; the head's `msg_id` is not the data's.
    func testScanToleratesKeyOrderAndWhitespace() {
        let id = GUID.random()
        let text = """
            { "msg_data" : { "reason" : "unreachable", "stored" : false, "msg_id" : "\(id.description.uppercased())" },
              "msg_id": "\(GUID.random())", "msg_type" : "NACK" }
            """
        let scanned = text.utf8CString.withUnsafeBytes { BenchFrames.scan(UnsafeRawBufferPointer(rebasing: $0.dropLast())) }
        XCTAssertEqual(scanned, ScannedFrame(kind: .nack, messageID: id, reason: "unreachable"))
    }

    /// Hints from one layout never make a frame of another layout read wrong.
    func testHintsFromAnotherLayoutFallBackToTheSearch() throws {
        var hints = ScanHints()
        let template = MessageTemplate(from: sender, to: recipient, channelID: .random(), payload: 32, timestamp: "t")
        let first = BenchMessageID(connection: 1, run: 2, sequence: 3).guid
        var out = ByteBuffer()
        template.write(&out, id: first, sentAt: 77)
        XCTAssertEqual(BenchFrames.scan(body(of: out), hints: &hints), ScannedFrame(kind: .message, messageID: first, sentAt: 77))
        let second = GUID.random()
        let other = """
            {"msg_type":"MESSAGE","msg_data":{"message":"00000000000000ffAAAA","msg_id":"\(second)"},"msg_id":"\(GUID.random())"}
            """
        let scanned = Array(other.utf8).withUnsafeBytes { BenchFrames.scan($0, hints: &hints) }
        XCTAssertEqual(scanned, ScannedFrame(kind: .message, messageID: second, sentAt: 255))
        // And back: the hints follow the layout they last saw.
        XCTAssertEqual(BenchFrames.scan(body(of: out), hints: &hints), ScannedFrame(kind: .message, messageID: first, sentAt: 77))
    }

    func testScanOfOtherFrames() {
        for text in ["{\"msg_type\":\"ROUTING\",\"msg_data\":{}}", "{\"msg_type\":\"HELLO\"}", "{}", "not json", "{\"msg_type\":\"ACK\"}"] {
            let scanned = Array(text.utf8).withUnsafeBytes { BenchFrames.scan($0) }
            switch text {
            case _ where text.contains("ROUTING"): XCTAssertEqual(scanned.kind, .routing)
            case _ where text.contains("ACK"): XCTAssertEqual(scanned, ScannedFrame(kind: .ack))
            default: XCTAssertEqual(scanned.kind, .other, text)
            }
        }
    }

    /// The batch write is byte for byte `count` single writes (both heads, across the sequence
    /// number's wrap), and the scan reads each id and send time back.
    func testBatchWriteEqualsSingleWrites() throws {
        for head in BenchFrameHead.allCases {
            let template = MessageTemplate(from: sender, to: recipient, channelID: .random(), payload: 40, timestamp: "t", head: head)
            let first = BenchMessageID(connection: 0xABCD_EF01, run: 0x1234, sequence: (1 << 60) - 3)
            var batch = ByteBuffer()
            template.write(&batch, first: first, count: 5, sentAt: 0xFEDC_BA98_7654_3210)
            var single = ByteBuffer()
            for offset in 0..<5 {
                let id = BenchMessageID(connection: first.connection, run: first.run, sequence: (first.sequence + UInt64(offset)) & ((1 << 60) - 1))
                template.write(&single, id: id.guid, sentAt: 0xFEDC_BA98_7654_3210)
            }
            XCTAssertEqual(Array(batch.readableBytesView), Array(single.readableBytesView), "\(head)")
            var none = ByteBuffer()
            template.write(&none, first: first, count: 0, sentAt: 1)
            XCTAssertEqual(none.readableBytes, 0)
            let last = body(of: batch.getSlice(at: 4 * template.count, length: template.count)!)
            XCTAssertEqual(
                BenchFrames.scan(last),
                ScannedFrame(kind: .message, messageID: BenchMessageID(connection: 0xABCD_EF01, run: 0x1234, sequence: 1).guid, sentAt: 0xFEDC_BA98_7654_3210))
        }
    }

    /// `spec`: SPEC.md's head alone (the bytes relay-load sends); `client`: also the compat keys.
    func testHeads() throws {
        let id = BenchMessageID(connection: 3, run: 9, sequence: 42).guid
        for head in BenchFrameHead.allCases {
            let message = MessageTemplate(from: sender, to: recipient, channelID: .random(), payload: 16, timestamp: "t", head: head)
            var out = ByteBuffer()
            message.write(&out, id: id, sentAt: 5)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(body(of: out).readableBytesView)) as? [String: Any])
            XCTAssertEqual(json["msg_type"] as? String, "MESSAGE")
            XCTAssertEqual(json["ttl"] as? Int, 32)
            XCTAssertEqual(json["flood"] as? Bool, false)
            XCTAssertEqual((json["msg_data"] as? [String: Any])?["msg_id"] as? String, id.description)
            switch head {
            case .spec: XCTAssertEqual(Set(json.keys), ["msg_type", "ttl", "flood", "msg_data"])
            case .client:
                XCTAssertEqual(Set(json.keys), ["msg_type", "msg_id", "ttl", "flood", "sender_id", "target_id", "msg_data"])
                XCTAssertEqual(json["msg_id"] as? String, id.description)
                XCTAssertEqual(json["sender_id"] as? String, "bench0@\(sender.address.id)")
            }

            let ack = AckFrameTemplate(from: sender, head: head)
            var acks = ByteBuffer()
            ack.write(&acks, id: GUID(high: 7, low: 8), acknowledging: id)
            let ackJSON = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(body(of: acks).readableBytesView)) as? [String: Any])
            XCTAssertEqual(ackJSON["ttl"] as? Int, 1)
            XCTAssertEqual(ackJSON["msg_id"] as? String, head == .client ? GUID(high: 7, low: 8).description : nil)
            XCTAssertEqual((ackJSON["msg_data"] as? [String: String])?["msg_id"], id.description)
        }
    }

    /// The ACK of an id's text as it came is the ACK written from the parsed id (its own id the
    /// node id's high half and the count), upper-case text copied as it is.
    func testAckFromTextEqualsAckFromGUID() throws {
        for head in BenchFrameHead.allCases {
            let template = AckFrameTemplate(from: sender, head: head)
            let acknowledged = GUID.random()
            for text in [acknowledged.description, acknowledged.description.uppercased()] {
                var fromText = ByteBuffer()
                Array(text.utf8).withUnsafeBytes { template.write(&fromText, sequence: 0x0123_4567_89AB_CDEF, acknowledging: $0.baseAddress!) }
                let frame = body(of: fromText)
                XCTAssertEqual(BenchFrames.scan(frame), ScannedFrame(kind: .ack, messageID: acknowledged))
                XCTAssertTrue(String(decoding: frame.readableBytesView, as: UTF8.self).contains("\"msg_id\":\"\(text)\""))
                if text == acknowledged.description {
                    var fromGUID = ByteBuffer()
                    template.write(&fromGUID, id: GUID(high: sender.address.id.high, low: 0x0123_4567_89AB_CDEF), acknowledging: acknowledged)
                    XCTAssertEqual(Array(fromText.readableBytesView), Array(fromGUID.readableBytesView), "\(head)")
                }
            }
        }
    }

    /// A frame as the relay writes it (FrameWriter: `msg_type` first, a head `msg_id` before
    /// `msg_data`): the verb read in place, the data's id found and then hinted, never the head's.
    func testLocateARelayFrameAndItsHints() throws {
        let relayTag = SenderTag(NodeAddress(id: .random(), name: "relay"))
        func relayAck(_ acknowledged: GUID, head: GUID) -> ByteBuffer {
            var out = ByteBuffer()
            RelayFrames.ack(&out, messageID: head, acknowledging: acknowledged, relay: relayTag)
            return body(of: out)
        }
        var hints = ScanHints()
        for _ in 0..<3 {
            let acknowledged = GUID.random()
            let frame = relayAck(acknowledged, head: .random())
            let located = frame.withUnsafeReadableBytes { BenchFrames.locate($0, hints: &hints) }
            XCTAssertEqual(located.kind, .ack)
            XCTAssertEqual(frame.withUnsafeReadableBytes { BenchFrames.id(at: located.messageID, in: $0) }, acknowledged)
            XCTAssertEqual(BenchFrames.scan(frame, hints: &hints), ScannedFrame(kind: .ack, messageID: acknowledged))
        }
        // A frame whose hinted offset holds another key: found by the search.
        let moved = GUID.random()
        let other = "{\"msg_type\":\"ACK\",\"msg_data\":{\"node_id\":\"\(GUID.random())\",\"x\":1,\"msg_id\":\"\(moved)\"},\"pad\":\"\(String(repeating: "y", count: 300))\"}"
        XCTAssertEqual(Array(other.utf8).withUnsafeBytes { BenchFrames.scan($0, hints: &hints) }, ScannedFrame(kind: .ack, messageID: moved))
        // msg_type not first: searched.
        let late = "{\"msg_data\":{\"msg_id\":\"\(moved)\"},\"msg_type\":\"ACK\"}"
        XCTAssertEqual(Array(late.utf8).withUnsafeBytes { BenchFrames.scan($0, hints: &hints) }, ScannedFrame(kind: .ack, messageID: moved))
    }

    /// The verbs read as one word are the bytes of the verb and its closing quote.
    func testVerbWords() {
        XCTAssertEqual(Array("MESSAGE\"".utf8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }, BenchFrames.messageVerbWord)
        XCTAssertEqual(Array("ACK\"".utf8).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }, BenchFrames.ackVerbWord)
        for (text, kind) in [("MESSAGES", ScannedFrame.Kind.other), ("ACKS", .other), ("NACK", .nack), ("ROUTING", .routing)] {
            let frame = "{\"msg_type\":\"\(text)\",\"ttl\":1,\"flood\":false,\"msg_data\":{}}"
            var hints = ScanHints()
            XCTAssertEqual(Array(frame.utf8).withUnsafeBytes { BenchFrames.locate($0, hints: &hints) }.kind, kind, text)
        }
    }

    /// A connection's ids are recognised by their text's first 20 characters and only their
    /// sequence number parsed; another connection's, another run's or a stranger's are not.
    func testTextPrefix() {
        let prefix = BenchMessageID.TextPrefix(connection: 7, run: 3)
        func text(_ id: GUID) -> [UInt8] { Array(id.description.utf8) }
        for sequence: UInt64 in [0, 1, 0xABC, (1 << 60) - 1] {
            let id = BenchMessageID(connection: 7, run: 3, sequence: sequence).guid
            XCTAssertEqual(text(id).withUnsafeBytes { prefix.sequence(of: $0) }, sequence)
        }
        for other in [BenchMessageID(connection: 8, run: 3, sequence: 1).guid, BenchMessageID(connection: 7, run: 4, sequence: 1).guid, GUID.random()] {
            XCTAssertFalse(text(other).withUnsafeBytes { prefix.starts($0) }, other.description)
            XCTAssertNil(text(other).withUnsafeBytes { prefix.sequence(of: $0) })
        }
        var broken = text(BenchMessageID(connection: 7, run: 3, sequence: 5).guid)
        broken[30] = UInt8(ascii: "g")
        XCTAssertTrue(broken.withUnsafeBytes { prefix.starts($0) })
        XCTAssertNil(broken.withUnsafeBytes { prefix.sequence(of: $0) }, "a digit that is not hex")
    }

    func testMessageIDRoundTripAndStrangers() {
        let id = BenchMessageID(connection: 19_999, run: 1, sequence: (1 << 60) - 1)
        XCTAssertEqual(BenchMessageID(id.guid), id)
        XCTAssertEqual(id.guid.description.count, 36)
        XCTAssertNil(BenchMessageID(GUID(high: 0x1234_5678_9ABC_DEF0, low: 0x0FED_CBA9_8765_4321)))
    }
}
