import Foundation
import NIOCore
import PTPProtocol
import XCTest

/// `ForwardedFrames.connect` and its helpers, without a relay: a received CONNECT in, the frame
/// the relay writes out.
final class ForwardedConnectFrameTests: XCTestCase {
    private let relayTag = SenderTag(NodeAddress(id: Node.guid(Node.relay), name: "relay"))

    /// Reads `json` as a received CONNECT and writes the forwarded copy with `srcRTT`/`dstRTT`.
    private func forward(_ json: String, srcRTT: Int?, dstRTT: Int?) throws -> (data: [String: Any], text: String, carried: (Int?, Int?)) {
        var reader = MessageReader()
        var out = ByteBuffer()
        var carried: (Int?, Int?) = (nil, nil)
        try Array(json.utf8).withUnsafeBytes { raw in
            let envelope = try reader.read(raw)
            let received = ReceivedJSON(tape: reader.tape, bytes: raw)
            carried = ForwardedFrames.connectRoundTrips(data: envelope.data, from: received)
            let others = ForwardedFrames.connectOtherMembers(data: envelope.data, from: received)
            ForwardedFrames.connect(
                &out, messageID: GUID.random(), ttl: 31, sender: relayTag, source: Node.guid(Node.a),
                destination: Node.guid(Node.b), src: "192.0.2.1:40000", dst: nil, srcRTT: srcRTT, dstRTT: dstRTT,
                otherMembers: others)
        }
        let length = Int(try XCTUnwrap(out.readInteger(as: UInt32.self)))
        XCTAssertEqual(out.readableBytes, length)
        let bytes = try XCTUnwrap(out.readBytes(length: length))
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        return (try XCTUnwrap(object["msg_data"] as? [String: Any]), String(decoding: bytes, as: UTF8.self), carried)
    }

    private func received(_ extra: String) -> String {
        #"{"msg_type":"CONNECT","msg_data":{"src_node_id":"\#(Node.a)","dst_node_id":"\#(Node.b)","src":":40000","dst":null\#(extra)},"flood":false,"msg_id":"\#(Node.newID())","ttl":32}"#
    }

    func testHintsWrittenAsIntegersAndOtherMembersCopied() throws {
        let out = try forward(received(#","tag":"x","n":[1,{"a":null}]"#), srcRTT: 0, dstRTT: 1234)
        XCTAssertEqual((out.data["src_rtt_ms"] as? NSNumber)?.intValue, 0)
        XCTAssertEqual((out.data["dst_rtt_ms"] as? NSNumber)?.intValue, 1234)
        XCTAssertTrue(out.text.contains(#""src_rtt_ms":0,"dst_rtt_ms":1234"#), out.text)
        XCTAssertEqual(out.data["tag"] as? String, "x")
        XCTAssertEqual(canonical(["n": out.data["n"] as Any]), #"{"n":[1,{"a":null}]}"#)
        XCTAssertEqual(out.data["src"] as? String, "192.0.2.1:40000")
        XCTAssertTrue(out.data["dst"] is NSNull)
        XCTAssertEqual(out.data["src_node_id"] as? String, Node.a)
    }

    func testNoHintsNoKeys() throws {
        let out = try forward(received(""), srcRTT: nil, dstRTT: nil)
        XCTAssertFalse(out.text.contains("rtt_ms"), out.text)
        XCTAssertEqual(Set(out.data.keys), ["src_node_id", "dst_node_id", "src", "dst"])
    }

    func testCarriedHintsReadAndNeverCopiedTwice() throws {
        let out = try forward(received(#","src_rtt_ms":17,"dst_rtt_ms":4"#), srcRTT: 20, dstRTT: nil)
        XCTAssertEqual(out.carried.0, 17)
        XCTAssertEqual(out.carried.1, 4)
        XCTAssertEqual((out.data["src_rtt_ms"] as? NSNumber)?.intValue, 20)
        XCTAssertNil(out.data["dst_rtt_ms"], "only what the caller passes is written")
        XCTAssertEqual(out.text.components(separatedBy: "rtt_ms").count - 1, 1, out.text)
    }

    func testCarriedHintsThatAreNoMeasurementAreDropped() throws {
        for bad in [#""12""#, "-1", "1.5", "60001", "null", "1e3"] {
            let out = try forward(received(#","src_rtt_ms":\#(bad),"dst_rtt_ms":\#(bad)"#), srcRTT: nil, dstRTT: nil)
            XCTAssertNil(out.carried.0, bad)
            XCTAssertNil(out.carried.1, bad)
        }
    }
}
