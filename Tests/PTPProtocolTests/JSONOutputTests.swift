import Foundation
import NIOCore
import XCTest

@testable import PTPProtocol

final class JSONOutputTests: XCTestCase {
    /// `writeCompactJSON` of `text` after the tape validated it, with the tape's own compact flag.
    private func compact(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        let bytes = Array(text.utf8)
        var tape = JSONTape()
        var out = ByteBuffer()
        bytes.withUnsafeBytes { raw in
            do throws(JSONTape.ParseError) {
                try tape.parse(raw)
            } catch {
                XCTFail("input not valid: \(error)", file: file, line: line)
            }
            out.writeCompactJSON(raw, compactASCII: tape.isCompactASCII)
        }
        return String(buffer: out)
    }

    private func assertASCII(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(text.utf8.allSatisfy { $0 < 0x80 }, "not ASCII: \(text)", file: file, line: line)
    }

    /// Both texts decode with Foundation to the same value.
    private func assertSameJSON(_ lhs: String, _ rhs: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let left = try JSONSerialization.jsonObject(with: Data(lhs.utf8), options: [.fragmentsAllowed])
            let right = try JSONSerialization.jsonObject(with: Data(rhs.utf8), options: [.fragmentsAllowed])
            // Both values come from Foundation: written with sorted keys they must be the same text.
            let options: JSONSerialization.WritingOptions = [.sortedKeys, .fragmentsAllowed]
            let leftText = String(decoding: try JSONSerialization.data(withJSONObject: left, options: options), as: UTF8.self)
            let rightText = String(decoding: try JSONSerialization.data(withJSONObject: right, options: options), as: UTF8.self)
            XCTAssertEqual(leftText, rightText, "\(lhs) and \(rhs) differ", file: file, line: line)
        } catch {
            XCTFail("not JSON: \(error)", file: file, line: line)
        }
    }

    func testWhitespaceRemovedOutsideStringsOnly() {
        let input = " {\n\t\"a b\" : [ 1 , 2.5e3 ,\r\n true ] ,  \"c\" : \"  spaced  out \" , \"d\" : { } }\n"
        let output = compact(input)
        XCTAssertEqual(output, #"{"a b":[1,2.5e3,true],"c":"  spaced  out ","d":{}}"#)
        assertSameJSON(input, output)
    }

    func testCompactASCIIInputCopiedAsIs() {
        let input = #"{"a":"b c","d":[1,2],"e":"\u00e9"}"#
        XCTAssertEqual(compact(input), input)
        var out = ByteBuffer()
        // With compactASCII true nothing is looked at: the bytes go out as they are.
        Array(" x ".utf8).withUnsafeBytes { out.writeCompactJSON($0, compactASCII: true) }
        XCTAssertEqual(String(buffer: out), " x ")
    }

    func testNonASCIIEscaped() {
        let input = "{\"s\":\"é€ü\u{80}\u{7FF}\u{800}\u{FFFF}\"}"
        let output = compact(input)
        XCTAssertEqual(output, #"{"s":"\u00e9\u20ac\u00fc\u0080\u07ff\u0800\uffff"}"#)
        assertASCII(output)
        assertSameJSON(input, output)
    }

    func testAstralCharactersBecomeSurrogatePairs() {
        let input = "{\"s\":\"a😀b\u{10000}\u{10FFFF}\u{1D11E}\"}"
        let output = compact(input)
        XCTAssertEqual(output, #"{"s":"a\ud83d\ude00b\ud800\udc00\udbff\udfff\ud834\udd1e"}"#)
        assertASCII(output)
        assertSameJSON(input, output)
    }

    func testEscapedQuotesAndBackslashesKept() {
        let input = " { \"k\\\"ey\" : \"va\\\"l ue\\\\\" , \"n\" : \"é\\\" \\u00e9 \\\\\" } "
        let output = compact(input)
        XCTAssertEqual(output, #"{"k\"ey":"va\"l ue\\","n":"\u00e9\" \u00e9 \\"}"#)
        assertASCII(output)
        assertSameJSON(input, output)
    }

    func testStringEndingInEscapedBackslashThenWhitespace() {
        // The `\\` before the closing quote must not hide the quote.
        let input = "[ \"a\\\\\" , \"b\" ]"
        XCTAssertEqual(compact(input), #"["a\\","b"]"#)
    }

    func testReparsesToSameValue() {
        let documents = [
            " { \"msg_type\" : \"MESSAGE\" , \"msg_data\" : { \"message\" : \"héllo wörld 😀 \\\"quoted\\\"\", \"n\" : [ 1, -2.5, 3e-2, null, false ] } } ",
            "[\n  \"日本語\",\n  { \"ключ\" : \"значение\" },\n  -0.0,\n  \"\\u0000\\t\"\n]",
            "{\"emoji\":\"👨‍👩‍👧 🇫🇷\", \"mixed\":\"a\\nb\\u00e9é\"}",
        ]
        for input in documents {
            let output = compact(input)
            assertASCII(output)
            assertSameJSON(input, output)
            // And the relay's own parser accepts what it wrote, as compact ASCII.
            var tape = JSONTape()
            Array(output.utf8).withUnsafeBytes { raw in
                do throws(JSONTape.ParseError) {
                    try tape.parse(raw)
                    XCTAssertTrue(tape.isCompactASCII, output)
                } catch {
                    XCTFail("output does not re-parse: \(error): \(output)")
                }
            }
        }
    }

    func testWriteJSONString() {
        var out = ByteBuffer()
        out.writeJSONString("a\"b\\c\nd\re\tf\u{08}\u{0C}\u{01}\u{7F}é😀/")
        let text = String(buffer: out)
        XCTAssertEqual(text, #""a\"b\\c\nd\re\tf\u0008\u000c\u0001\u007f\u00e9\ud83d\ude00/""#)
        assertASCII(text)
        assertSameJSON(text, "\"a\\\"b\\\\c\\nd\\re\\tf\\b\\f\\u0001\u{7F}é😀/\"")
    }

    func testPlainStringsAreCopiedAsTheyAreAndEveryOtherIsEscaped() {
        for (text, written) in [
            ("ptpchat-relay 0.1.0", #""ptpchat-relay 0.1.0""#), ("", #""""#), (" ~", #"" ~""#),
            ("a\"", #""a\"""#), ("\\", #""\\""#), ("\u{7F}", #""\u007f""#), ("\u{1F}", #""\u001f""#), ("é", #""\u00e9""#),
        ] {
            var out = ByteBuffer()
            out.writeJSONString(text)
            XCTAssertEqual(String(buffer: out), written, "\(text.debugDescription)")
        }
    }

    /// Appended as they are, after what the buffer holds, growing it when it is full; nothing for
    /// no bytes.
    func testWriteRawBytesAppendsThemAsTheyAre() {
        var out = ByteBufferAllocator().buffer(capacity: 4)
        out.writeString("ab")
        let bytes: [UInt8] = Array(0..<200)
        bytes.withUnsafeBytes { out.writeRawBytes($0) }
        [UInt8]().withUnsafeBytes { out.writeRawBytes($0) }
        XCTAssertEqual(out.readableBytes, 202)
        XCTAssertEqual(out.readBytes(length: 2), Array("ab".utf8))
        XCTAssertEqual(out.readBytes(length: 200), bytes)
    }

    func testWriteQuotedGUIDAndDecimal() {
        var out = ByteBuffer()
        out.writeQuotedGUID(IDs.guid(IDs.a.uppercased()))
        out.writeDecimal(0)
        out.writeDecimal(9)
        out.writeDecimal(10)
        out.writeDecimal(99)
        out.writeDecimal(100)
        out.writeDecimal(-5)
        out.writeDecimal(123456)
        XCTAssertEqual(String(buffer: out), "\"\(IDs.a)\"091099100-5123456")
    }

    /// `writeInPlace` writes at the writer index of the buffer it is given, also when that buffer
    /// is a slice of a larger one (its storage offset) or was read from, and grows it when needed.
    func testWriteInPlaceWritesAtTheWriterIndex() {
        func put(_ text: String, into out: inout ByteBuffer) {
            let bytes = Array(text.utf8)
            let written = out.writeInPlace(minimumWritableBytes: bytes.count) { room in
                XCTAssertGreaterThanOrEqual(room.count, bytes.count)
                room.copyBytes(from: bytes)
                return bytes.count
            }
            XCTAssertEqual(written, bytes.count)
        }
        var out = ByteBuffer(string: "ab")
        XCTAssertEqual(out.readInteger(as: UInt8.self), UInt8(ascii: "a"))
        put("cd", into: &out)
        XCTAssertEqual(String(buffer: out), "bcd")

        let whole = ByteBuffer(string: "0123456789")
        var slice = whole.getSlice(at: 3, length: 4)!
        put("xyz", into: &slice)
        XCTAssertEqual(String(buffer: slice), "3456xyz")
        XCTAssertEqual(String(buffer: whole), "0123456789", "the buffer it was sliced from is not written")

        var small = ByteBuffer()
        put(String(repeating: "q", count: 5000), into: &small)
        XCTAssertEqual(small.readableBytes, 5000)
    }
}
