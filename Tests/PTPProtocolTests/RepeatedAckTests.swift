import XCTest

@testable import PTPProtocol

/// `RepeatedAck` must give what `MessageReader.read` gives, or nothing: it stands in for the
/// parse only on frames that repeat a validated ACK but for its ids.
final class RepeatedAckTests: XCTestCase {
    /// The existing C# client's ACK (CLIENT-FRAMES.md): only `msg_data.msg_id` changes; the head's
    /// `msg_id` is all zeros.
    static func csharpAck(_ id: String) -> String {
        #"{"msg_data":{"msg_id":"\#(id)"},"msg_type":"ACK","flood":false,"msg_id":"00000000-0000-0000-0000-000000000000","ttl":1,"sender_id":null,"target_id":null}"#
    }

    /// relay-load's (../shared/bench): its node id, then the id; no head `msg_id`.
    static func loadAck(_ id: String) -> String {
        #"{"msg_type":"ACK","ttl":1,"flood":false,"msg_data":{"node_id":"\#(IDs.a)","msg_id":"\#(id)"}}"#
    }

    /// A client that puts the same id in the head and in `msg_data`.
    static func bothIDsAck(_ id: String) -> String {
        #"{"msg_type":"ACK","msg_id":"\#(id)","msg_data":{"msg_id":"\#(id)"}}"#
    }

    private func read(_ text: String) -> Envelope? {
        var reader = MessageReader()
        return Array(text.utf8).withUnsafeBytes { try? reader.read($0) }
    }

    private func remember(_ text: String) -> RepeatedAck? {
        var reader = MessageReader()
        return Array(text.utf8).withUnsafeBytes { bytes in
            guard let envelope = try? reader.read(bytes) else { return nil }
            return reader.repeatedAck(bytes, envelope)
        }
    }

    private func repeated(_ ack: RepeatedAck, _ text: String) -> Envelope? {
        Array(text.utf8).withUnsafeBytes { ack.envelope(of: $0) }
    }

    func testEachClientsNextAckReadsAsTheReaderReadsIt() throws {
        for template in [Self.csharpAck, Self.loadAck, Self.bothIDsAck] {
            let first = template(IDs.message)
            let ack = try XCTUnwrap(remember(first), first)
            for _ in 0..<20 {
                let next = template(GUID.random().description)
                let expected = try XCTUnwrap(read(next))
                XCTAssertEqual(repeated(ack, next), expected, next)
            }
            // Upper-case digits are a canonical GUID to the reader too.
            let upper = template(GUID.random().description.uppercased())
            XCTAssertEqual(repeated(ack, upper), try XCTUnwrap(read(upper)), upper)
            XCTAssertEqual(repeated(ack, first), read(first))
        }
    }

    func testZeroIDsFollowTheReader() throws {
        let zero = GUID.zero.description
        // All zeros in msg_data: the head's id, as the reader takes it.
        let withHead = try XCTUnwrap(remember(Self.bothIDsAck(IDs.message)))
        let headOnly = #"{"msg_type":"ACK","msg_id":"\#(IDs.b)","msg_data":{"msg_id":"\#(zero)"}}"#
        let expected = try XCTUnwrap(read(headOnly))
        XCTAssertEqual(expected.messageID?.description, IDs.b)
        XCTAssertEqual(repeated(withHead, headOnly), expected)
        // No non-zero id at all: left to the reader.
        XCTAssertNil(repeated(withHead, Self.bothIDsAck(zero)))
        let csharp = try XCTUnwrap(remember(Self.csharpAck(IDs.message)))
        XCTAssertNil(repeated(csharp, Self.csharpAck(zero)))
    }

    func testOtherFramesAreLeftToTheReader() throws {
        let ack = try XCTUnwrap(remember(Self.loadAck(IDs.message)))
        let other = GUID.random().description
        // A different node id, a different key, a longer frame, a non-GUID where the id goes.
        XCTAssertNil(repeated(ack, Self.loadAck(other).replacingOccurrences(of: IDs.a, with: IDs.b)))
        XCTAssertNil(repeated(ack, Self.loadAck(other).replacingOccurrences(of: "\"ttl\":1", with: "\"ttl\":2")))
        XCTAssertNil(repeated(ack, Self.loadAck(other) + " "))
        XCTAssertNil(repeated(ack, Self.loadAck(String(other.dropLast()) + "g")))
        XCTAssertNil(repeated(ack, Self.loadAck(String(other.dropLast()) + "\"")))
        XCTAssertNil(repeated(ack, ""))
    }

    func testOnlyAPlainUniqueAckIsRemembered() {
        XCTAssertNotNil(remember(Self.loadAck(IDs.message)))
        // Not an ACK.
        XCTAssertNil(remember(#"{"msg_type":"NACK","msg_data":{"msg_id":"\#(IDs.message)","reason":"invalid"}}"#))
        // The id written with an escape: the reader refuses it (an id is read as it is written),
        // and so there is nothing to remember.
        let escaped = "\\u00" + String(IDs.message.unicodeScalars.first!.value, radix: 16) + IDs.message.dropFirst()
        XCTAssertNil(read(#"{"msg_type":"ACK","msg_data":{"msg_id":"\#(escaped)"}}"#))
        XCTAssertNil(remember(#"{"msg_type":"ACK","msg_data":{"msg_id":"\#(escaped)"}}"#))
        // Padded past `maximumBytes`: parsed every time rather than kept.
        let padded = #"{"msg_type":"ACK","pad":"\#(String(repeating: "x", count: RepeatedAck.maximumBytes))","msg_data":{"msg_id":"\#(IDs.message)"}}"#
        XCTAssertNotNil(read(padded))
        XCTAssertNil(remember(padded))
        // A repeated key: which one the reader takes is its rule, not this type's.
        XCTAssertNil(remember(#"{"msg_type":"ACK","msg_data":{"msg_id":"\#(IDs.b)","msg_id":"\#(IDs.message)"}}"#))
        XCTAssertNil(remember(#"{"msg_type":"ACK","msg_data":{"msg_id":"\#(IDs.b)"},"msg_data":{"msg_id":"\#(IDs.message)"}}"#))
    }

    /// Frames one to three byte edits away from a remembered ACK (in the ids, next to them,
    /// anywhere): whenever the repeat gives an envelope, the reader gives the same one.
    func testNearbyFramesNeverReadDifferently() throws {
        var random = SeededRandom(seed: 0xAC4)
        let alphabet = Array("0123456789abcdefABCDEF-\"\\{}[]:, xg\u{7F}".utf8) + [0x00, 0xC3, 0xA9]
        var agreed = 0
        for template in [Self.csharpAck, Self.loadAck, Self.bothIDsAck] {
            let ack = try XCTUnwrap(remember(template(IDs.message)))
            let base = Array(template(GUID.random().description).utf8)
            for _ in 0..<20_000 {
                let frame = nearbyEdit(of: base, from: alphabet, using: &random)
                let fast = frame.withUnsafeBytes { ack.envelope(of: $0) }
                guard let fast else { continue }
                var reader = MessageReader()
                let full = frame.withUnsafeBytes { try? reader.read($0) }
                XCTAssertEqual(fast, full, String(decoding: frame, as: UTF8.self))
                agreed += 1
            }
        }
        // The edits that keep an ACK an ACK (a hex digit for a hex digit in an id) were tried.
        XCTAssertGreaterThan(agreed, 1_000)
    }
}
