import XCTest

@testable import PTPProtocol

/// The tape scans strings several bytes at a time and GUIDs with a table-free parser: these tests
/// put every kind of special byte at every offset and compare with what the byte-by-byte rules say.
final class AlignmentTests: XCTestCase {
    private enum Expectation {
        case valid(String, compact: Bool)
        case unexpected
        case invalidUTF8
    }

    private func check(_ insert: [UInt8], _ expectation: Expectation, name: String) {
        for prefix in 0..<20 {
            for suffix in 0..<20 {
                // Offsets shift with a leading space too, so the string starts at every alignment.
                for lead in 0..<2 {
                    let head = [UInt8](repeating: 0x20, count: lead) + Array("[\"".utf8)
                    let before = [UInt8](repeating: UInt8(ascii: "a"), count: prefix)
                    let after = [UInt8](repeating: UInt8(ascii: "b"), count: suffix)
                    let bytes = head + before + insert + after + Array("\"]".utf8)
                    var tape = JSONTape()
                    let specialOffset = head.count + prefix
                    bytes.withUnsafeBytes { raw in
                        do throws(JSONTape.ParseError) {
                            try tape.parse(raw)
                            guard case .valid(let content, let compact) = expectation else {
                                return XCTFail("\(name) at \(prefix)/\(suffix)/\(lead): accepted")
                            }
                            XCTAssertEqual(tape.tokens.count, 2)
                            XCTAssertEqual(Int(tape[1].start), head.count, name)
                            XCTAssertEqual(Int(tape[1].end), bytes.count - 2, name)
                            let expected = String(repeating: "a", count: prefix) + content + String(repeating: "b", count: suffix)
                            XCTAssertEqual(tape.string(1, of: raw), expected, "\(name) at \(prefix)/\(suffix)")
                            XCTAssertEqual(tape.isCompactASCII, compact && lead == 0, name)
                        } catch {
                            switch (expectation, error) {
                            case (.unexpected, .unexpected(let offset)):
                                XCTAssertEqual(offset, specialOffset, "\(name) at \(prefix)/\(suffix)/\(lead)")
                            case (.invalidUTF8, .invalidUTF8(let offset)):
                                XCTAssertEqual(offset, specialOffset, "\(name) at \(prefix)/\(suffix)/\(lead)")
                            default:
                                XCTFail("\(name) at \(prefix)/\(suffix)/\(lead): \(error)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testSpecialBytesAtEveryOffset() {
        check(Array("\\\"".utf8), .valid("\"", compact: true), name: "escaped quote")
        check(Array("\\\\".utf8), .valid("\\", compact: true), name: "escaped backslash")
        check(Array("\\u00e9".utf8), .valid("\u{E9}", compact: true), name: "unicode escape")
        check([0x7F], .valid("\u{7F}", compact: true), name: "DEL")
        check([0x20], .valid(" ", compact: true), name: "space")
        check([0xC3, 0xA9], .valid("\u{E9}", compact: false), name: "2-byte UTF-8")
        check([0xF0, 0x9F, 0x98, 0x80], .valid("\u{1F600}", compact: false), name: "4-byte UTF-8")
        for control: UInt8 in [0x00, 0x01, 0x0A, 0x1F] {
            check([control], .unexpected, name: "control \(control)")
        }
        check([0xFF], .invalidUTF8, name: "FF")
        check([0x80], .invalidUTF8, name: "continuation")
        check([0xC0, 0xAF], .invalidUTF8, name: "overlong")
        check([0xED, 0xA0, 0x80], .invalidUTF8, name: "surrogate")
    }

    func testUnterminatedStringAtEveryLength() {
        for length in 0..<40 {
            let bytes = Array("[\"".utf8) + [UInt8](repeating: UInt8(ascii: "z"), count: length)
            var tape = JSONTape()
            bytes.withUnsafeBytes { raw in
                do throws(JSONTape.ParseError) {
                    try tape.parse(raw)
                    XCTFail("accepted unterminated string of \(length)")
                } catch {
                    XCTAssertEqual(error, .truncated, "length \(length)")
                }
            }
        }
    }

    func testGUIDEveryByteAtEveryPosition() {
        let base = Array("0b370041-cd1e-40ac-ac59-0136bba850fe".utf8)
        let hex = Set(Array("0123456789abcdefABCDEF".utf8))
        for position in 0..<36 {
            let isDash = [8, 13, 18, 23].contains(position)
            for value in 0...255 {
                var bytes = base
                bytes[position] = UInt8(value)
                let parsed = bytes.withUnsafeBytes { GUID(canonical: $0) }
                let shouldParse = isDash ? value == Int(UInt8(ascii: "-")) : hex.contains(UInt8(value))
                XCTAssertEqual(parsed != nil, shouldParse, "byte \(value) at \(position)")
                if let parsed, !isDash {
                    // The changed digit lands in the right nibble.
                    XCTAssertEqual(parsed.description, String(decoding: bytes, as: UTF8.self).lowercased())
                }
            }
        }
    }

    func testGUIDNibbleOrder() {
        var generator = FastRandom()
        for _ in 0..<500 {
            let guid = GUID(high: generator.next(), low: generator.next())
            let text = guid.description
            XCTAssertEqual(text.count, 36)
            let hexDigits = text.replacingOccurrences(of: "-", with: "")
            XCTAssertEqual(hexDigits, String(format: "%016llx%016llx", guid.high, guid.low))
            XCTAssertEqual(GUID(text), guid)
        }
    }

    func testGUIDHashing() {
        // Ids differing in one word, or with the words swapped, are different keys.
        let a = GUID(high: 1, low: 2)
        let b = GUID(high: 2, low: 1)
        let set: Set<GUID> = [a, b, GUID(high: 1, low: 3), GUID(high: 0, low: 2)]
        XCTAssertEqual(set.count, 4)
        XCTAssertTrue(set.contains(GUID(high: 2, low: 1)))
    }
}
