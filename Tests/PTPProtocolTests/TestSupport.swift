import Foundation
import NIOCore
import XCTest

@testable import PTPProtocol

/// Ids used across the protocol tests.
enum IDs {
    static let a = "0b370041-cd1e-40ac-ac59-0136bba850fe"
    static let b = "5f715c17-4a41-482a-ab1f-45fa2cdd702b"
    static let relay = "9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4"
    static let message = "c6a856bb-9057-4318-bca9-d374ecb6ad02"
    static let head = "ddaf46ce-8b60-49fe-8e3e-6df4c0b709a2"
    static let channel = "82ae2035-55b8-4223-af24-c538731d6119"
    static let zero = "00000000-0000-0000-0000-000000000000"

    static func guid(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> GUID {
        guard let guid = GUID(text) else {
            XCTFail("not a GUID: \(text)", file: file, line: line)
            return .zero
        }
        return guid
    }
}

/// Reads one frame with a fresh `MessageReader`.
func readEnvelope(_ json: String, handshakeDone: Bool = true) -> Result<Envelope, InvalidMessage> {
    readEnvelope(Array(json.utf8), handshakeDone: handshakeDone)
}

func readEnvelope(_ bytes: [UInt8], handshakeDone: Bool = true) -> Result<Envelope, InvalidMessage> {
    var reader = MessageReader()
    return bytes.withUnsafeBytes { raw in
        do throws(InvalidMessage) {
            return .success(try reader.read(raw, handshakeDone: handshakeDone))
        } catch {
            return .failure(error)
        }
    }
}

/// The envelope of a frame that must be valid; fails the test otherwise.
func expectValid(
    _ json: String, handshakeDone: Bool = true, file: StaticString = #filePath, line: UInt = #line
) -> Envelope? {
    switch readEnvelope(json, handshakeDone: handshakeDone) {
    case .success(let envelope):
        return envelope
    case .failure(let error):
        XCTFail("expected valid, got InvalidMessage(\(error.reason)) for \(json)", file: file, line: line)
        return nil
    }
}

/// The error of a frame that must be refused; fails the test otherwise.
func expectInvalid(
    _ json: String, handshakeDone: Bool = true, file: StaticString = #filePath, line: UInt = #line
) -> InvalidMessage? {
    switch readEnvelope(json, handshakeDone: handshakeDone) {
    case .success(let envelope):
        XCTFail("expected InvalidMessage, got a valid \(envelope.verb.name) for \(json)", file: file, line: line)
        return nil
    case .failure(let error):
        return error
    }
}

/// Builds a frame from head members and `msg_data` members, each a (key, JSON text) pair, in order.
func frame(_ verb: String, head: [(String, String)] = [], data: [(String, String)]) -> String {
    let dataText = "{" + data.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    let members = [("msg_type", "\"\(verb)\"")] + head + [("msg_data", dataText)]
    return "{" + members.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
}

func quoted(_ text: String) -> String { "\"\(text)\"" }

/// Splits length-prefixed frames; fails on a truncated frame.
func splitFrames(_ buffer: ByteBuffer, file: StaticString = #filePath, line: UInt = #line) -> [[UInt8]] {
    var buffer = buffer
    var frames: [[UInt8]] = []
    while buffer.readableBytes > 0 {
        guard let length = buffer.readInteger(as: UInt32.self),
            let body = buffer.readBytes(length: Int(length))
        else {
            XCTFail("truncated frame", file: file, line: line)
            return frames
        }
        frames.append(body)
    }
    return frames
}

/// A JSON object decoded with Foundation, for checking what was written.
/// Checks that a frame body the relay wrote is ASCII and compact JSON its own parser accepts.
func assertCompactASCII(_ body: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(body.allSatisfy { $0 < 0x80 }, "not ASCII: \(body.text)", file: file, line: line)
    var tape = JSONTape()
    body.withUnsafeBytes { raw in
        do throws(JSONTape.ParseError) {
            try tape.parse(raw)
            XCTAssertTrue(tape.isCompactASCII, "not compact: \(body.text)", file: file, line: line)
        } catch {
            XCTFail("own parser refuses \(body.text): \(error)", file: file, line: line)
        }
    }
}

func jsonObject(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> [String: Any]? {
    do {
        guard let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            XCTFail("not a JSON object: \(String(decoding: bytes, as: UTF8.self))", file: file, line: line)
            return nil
        }
        return object
    } catch {
        XCTFail("not JSON (\(error)): \(String(decoding: bytes, as: UTF8.self))", file: file, line: line)
        return nil
    }
}

extension Array where Element == UInt8 {
    var text: String { String(decoding: self, as: UTF8.self) }
}

func frameBytes(_ json: String) -> [UInt8] {
    var out: [UInt8] = []
    let body = Array(json.utf8)
    let length = UInt32(body.count)
    out.append(UInt8(length >> 24))
    out.append(UInt8((length >> 16) & 0xFF))
    out.append(UInt8((length >> 8) & 0xFF))
    out.append(UInt8(length & 0xFF))
    out.append(contentsOf: body)
    return out
}

/// `frame` one to three byte edits away: a byte of `alphabet` put in place of one, inserted
/// before one, or a byte removed (the repeated-frame tests' search for frames a repeat reads and
/// the parser reads otherwise).
func nearbyEdit(of frame: [UInt8], from alphabet: [UInt8], using random: inout SeededRandom) -> [UInt8] {
    var edited = frame
    for _ in 0..<Int.random(in: 1...3, using: &random) where !edited.isEmpty {
        let at = Int.random(in: 0..<edited.count, using: &random)
        switch Int.random(in: 0..<4, using: &random) {
        case 0: edited.remove(at: at)
        case 1: edited.insert(alphabet.randomElement(using: &random)!, at: at)
        default: edited[at] = alphabet.randomElement(using: &random)!
        }
    }
    return edited
}
