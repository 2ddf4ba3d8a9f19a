import Foundation
import NIOCore
import PTPProtocol
import XCTest

@testable import PTPPunch

/// The JSON object and the human line of a punch, and the CONNECT frames read and written.
final class PunchReportTests: XCTestCase {
    let a = GUID("0b370041-cd1e-40ac-ac59-0136bba850fe")!
    let b = GUID("5f715c17-4a41-482a-ab1f-45fa2cdd702b")!
    let relay = GUID("9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4")!

    func object(_ report: PunchReport) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
    }

    func testADirectInitiatorReportHasEveryField() throws {
        var report = PunchReport(role: .initiator, node: a, peerNode: b)
        report.result = .direct
        report.nat = .endpointIndependent
        report.observed = ConnectAddress(parsing: "198.51.100.7:51000")
        report.peer = ConnectAddress(parsing: "203.0.113.9:62000")
        report.localPort = 40000
        report.attempts = 1
        report.timeToDirectMilliseconds = 118
        report.rttHintMilliseconds = 40
        report.via = .accepted
        report.messageID = relay
        report.path = .direct
        let json = try object(report)
        XCTAssertEqual(json["role"] as? String, "initiator")
        XCTAssertEqual(json["result"] as? String, "direct")
        XCTAssertTrue(json["reason"] is NSNull)
        XCTAssertEqual(json["nat"] as? String, "endpoint-independent")
        XCTAssertEqual(json["observed"] as? String, "198.51.100.7:51000")
        XCTAssertEqual(json["peer"] as? String, "203.0.113.9:62000")
        XCTAssertEqual(json["attempts"] as? Int, 1)
        XCTAssertEqual(json["time_to_direct_ms"] as? Int, 118)
        XCTAssertEqual(json["rtt_hint_ms"] as? Int, 40)
        XCTAssertEqual(json["via"] as? String, "accepted")
        XCTAssertEqual(json["path"] as? String, "direct")
        XCTAssertEqual(json["msg_id"] as? String, "\(relay)")
        XCTAssertEqual(json["node_id"] as? String, "\(a)")
        XCTAssertEqual(json["peer_node_id"] as? String, "\(b)")
        XCTAssertEqual(
            report.humanLine,
            "punch to \(b): direct in 118 ms after 1 dial (accepted); observed 198.51.100.7:51000, peer 203.0.113.9:62000, "
                + "nat endpoint-independent, rtt hint 40 ms; message \(relay) went direct, ACKed by the peer")
    }

    func testARelayReportHasNullTimeAndAnEscapedReason() throws {
        var report = PunchReport(role: .responder, node: b, peerNode: a)
        report.reason = "symmetric \"NAT\"\nsecond line"
        report.nat = .symmetric
        let json = try object(report)
        XCTAssertEqual(json["result"] as? String, "relay")
        XCTAssertEqual(json["reason"] as? String, "symmetric \"NAT\"\nsecond line")
        XCTAssertTrue(json["time_to_direct_ms"] is NSNull)
        XCTAssertTrue(json["observed"] is NSNull)
        XCTAssertTrue(json["peer"] is NSNull)
        XCTAssertEqual(json["attempts"] as? Int, 0)
        XCTAssertNil(json["path"], "the responder's messages carry their own path")
        XCTAssertFalse(report.json.contains("\n"), "one line")
        XCTAssertTrue(report.humanLine.hasPrefix("punch from \(a): staying on the relay: symmetric"))
    }

    func testConnectFramesRoundTripWithTheRelayKeys() throws {
        let sender = SenderTag(NodeAddress(id: a, name: "alice"))
        var frame = ClientFrames.connect(
            from: sender, source: a, destination: relay, src: nil, dst: nil, extras: .init(result: "failed", reason: "no_direct_connection"))
        frame.moveReaderIndex(forwardBy: 4)
        var reader = MessageReader()
        let report = try InboundFrame.read(frame, with: &reader)
        XCTAssertEqual(report.verb, .connect)
        XCTAssertEqual(report.connect?.result, "failed")
        XCTAssertEqual(report.connect?.destinationNode, relay)
        XCTAssertNil(report.connect?.src)

        // Step 4 as a relay with the RTT hint writes it (the keys added after the addresses).
        let step4 = """
            {"msg_type":"CONNECT","msg_id":"ddaf46ce-8b60-49fe-8e3e-6df4c0b709a2","ttl":31,"flood":false,"sender_id":"bob@\(b)",\
            "target_id":null,"msg_data":{"src_node_id":"\(a)","dst_node_id":"\(b)","src":"198.51.100.7:51000",\
            "dst":"203.0.113.9:62000","src_rtt_ms":41,"dst_rtt_ms":80,"rtt_hint":false,"nat":"symmetric"}}
            """
        let read = try InboundFrame.read(ByteBuffer(string: step4), with: &reader)
        XCTAssertEqual(
            read.connect,
            InboundFrame.ConnectFields(
                sourceNode: a, destinationNode: b, src: "198.51.100.7:51000", dst: "203.0.113.9:62000", sourceRTTMilliseconds: 41,
                destinationRTTMilliseconds: 80, rttHintRefused: true, nat: "symmetric"))
        XCTAssertEqual(read.sender, b)

        // Step 1 as this client writes it: dst null, src a port alone, node ids bare.
        var step1 = ClientFrames.connect(
            from: sender, source: a, destination: b, src: ConnectAddress(parsing: ":51000"), dst: nil, extras: .init(rttHint: false))
        step1.moveReaderIndex(forwardBy: 4)
        let text = String(buffer: step1)
        XCTAssertTrue(
            text.contains("\"msg_data\":{\"src_node_id\":\"\(a)\",\"dst_node_id\":\"\(b)\",\"src\":\":51000\",\"dst\":null,\"rtt_hint\":false}"),
            text)
    }
}
