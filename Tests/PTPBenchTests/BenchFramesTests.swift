import Foundation
import NIOCore
import PTPBench
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

    func testMessageIDRoundTripAndStrangers() {
        let id = BenchMessageID(connection: 19_999, run: 1, sequence: (1 << 60) - 1)
        XCTAssertEqual(BenchMessageID(id.guid), id)
        XCTAssertEqual(id.guid.description.count, 36)
        XCTAssertNil(BenchMessageID(GUID(high: 0x1234_5678_9ABC_DEF0, low: 0x0FED_CBA9_8765_4321)))
    }
}
