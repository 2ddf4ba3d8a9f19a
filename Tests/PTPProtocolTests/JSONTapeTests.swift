import XCTest

@testable import PTPProtocol

final class JSONTapeTests: XCTestCase {
    /// Parses `bytes`; returns the tape or the error.
    private func parse(_ bytes: [UInt8]) -> Result<JSONTape, JSONTape.ParseError> {
        var tape = JSONTape()
        return bytes.withUnsafeBytes { raw in
            do throws(JSONTape.ParseError) {
                try tape.parse(raw)
                return .success(tape)
            } catch {
                return .failure(error)
            }
        }
    }

    private func parse(_ text: String) -> Result<JSONTape, JSONTape.ParseError> { parse(Array(text.utf8)) }

    private func assertValid(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        if case .failure(let error) = parse(text) {
            XCTFail("expected valid, got \(error) for \(text)", file: file, line: line)
        }
    }

    private func assertInvalid(
        _ bytes: [UInt8], _ expected: JSONTape.ParseError? = nil, file: StaticString = #filePath, line: UInt = #line
    ) {
        switch parse(bytes) {
        case .success:
            XCTFail("expected invalid: \(bytes.text) \(bytes)", file: file, line: line)
        case .failure(let error):
            if let expected { XCTAssertEqual(error, expected, "for \(bytes.text)", file: file, line: line) }
        }
    }

    private func assertInvalid(
        _ text: String, _ expected: JSONTape.ParseError? = nil, file: StaticString = #filePath, line: UInt = #line
    ) {
        assertInvalid(Array(text.utf8), expected, file: file, line: line)
    }

    // MARK: Valid documents

    func testNestedDocumentTokens() throws {
        let text = #"{"a":[1,{"b":null},[]],"c":{"d":{"e":true}},"f":false,"g":"h"}"#
        let bytes = Array(text.utf8)
        let tape = try parse(bytes).get()
        // {  a [ 1 { b null } [ ] c { d { e true } } f false g "h"
        let kinds: [JSONTape.Kind] = tape.tokens.map(\.kind)
        XCTAssertEqual(
            kinds,
            [
                .object, .string, .array, .number, .object, .string, .null, .array, .string, .object, .string, .object,
                .string, .true, .string, .false, .string, .string,
            ])
        XCTAssertEqual(Int(tape[0].next), tape.tokens.count)
        XCTAssertEqual(Int(tape[0].start), 0)
        XCTAssertEqual(Int(tape[0].end), bytes.count)
        XCTAssertTrue(tape.isCompactASCII)
        bytes.withUnsafeBytes { raw in
            guard let a = tape.member("a", in: 0, of: raw) else { return XCTFail("no a") }
            XCTAssertEqual(tape[a].kind, .array)
            XCTAssertEqual(tape.count(of: a), 3)
            var elements: [JSONTape.Kind] = []
            tape.forEachElement(of: a) { elements.append(tape[$0].kind) }
            XCTAssertEqual(elements, [.number, .object, .array])
            guard let c = tape.member("c", in: 0, of: raw), let d = tape.member("d", in: c, of: raw),
                let e = tape.member("e", in: d, of: raw)
            else { return XCTFail("no c.d.e") }
            XCTAssertEqual(tape[e].kind, .true)
            guard let g = tape.member("g", in: 0, of: raw) else { return XCTFail("no g") }
            XCTAssertEqual(tape.string(g, of: raw), "h")
            XCTAssertEqual(tape.member("f", in: 0, of: raw).map { tape[$0].kind }, .false)
            // Members of nested objects are not members of the outer one.
            XCTAssertNil(tape.member("b", in: 0, of: raw))
            XCTAssertNil(tape.member("e", in: 0, of: raw))
            XCTAssertNil(tape.member("zz", in: 0, of: raw))
            // Not an object.
            XCTAssertNil(tape.member("a", in: a, of: raw))
            XCTAssertNil(tape.member("a", in: 999, of: raw))
            XCTAssertEqual(tape.count(of: 0), 4)
            var keys: [String] = []
            tape.forEachMember(of: 0) { key, _ in keys.append(tape.string(key, of: raw)) }
            XCTAssertEqual(keys, ["a", "c", "f", "g"])
        }
    }

    func testScalarsAtTopLevelAndWhitespace() throws {
        for text in ["0", "-0", "12", "-12.5", "1e10", "1E+2", "2.5e-3", "-0.0e0", "true", "false", "null", "\"\"", "[]", "{}"] {
            assertValid(text)
            assertValid(" \t\r\n" + text + " \n")
        }
        let tape = try parse(" { \"a\" :\t[ 1 ,\n2 ] }\r\n").get()
        XCTAssertFalse(tape.isCompactASCII)
        XCTAssertEqual(tape.tokens.count, 5)
    }

    /// The parse tests the structural byte it expects before it skips white space: white space
    /// at any gap of a document gives the same tokens, and a stray byte at any gap is refused at
    /// that byte. Gaps are the places before and after each structural byte outside strings.
    func testWhitespaceAndStrayBytesAtEveryGap() throws {
        let compact = #"{"a":[1,{"b":true},"s",[],{}],"c":{},"d":null,"e":-2.5e3,"f":"x\"y","g":[[false]]}"#
        let bytes = Array(compact.utf8)
        var gaps: Set<Int> = [0, bytes.count]
        var inString = false
        var escaped = false
        for (offset, byte) in bytes.enumerated() {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            if byte == UInt8(ascii: "\"") { inString = true }
            if "{}[]:,".utf8.contains(byte) { gaps.formUnion([offset, offset + 1]) }
        }
        let expected = try parse(bytes).get()
        func shape(_ tape: JSONTape, _ text: [UInt8]) -> [String] {
            tape.tokens.map { token in
                let content = token.kind == .string ? String(decoding: text[Int(token.start)..<Int(token.end)], as: UTF8.self) : ""
                return "\(token.kind) \(token.next) \(token.escaped) \(content)"
            }
        }
        XCTAssertGreaterThan(gaps.count, 40)
        for gap in gaps.sorted() {
            for space in [" ", "\n\t", "\r  "] {
                let spaced = Array(bytes[..<gap]) + Array(space.utf8) + Array(bytes[gap...])
                let tape = try parse(spaced).get()
                XCTAssertEqual(shape(tape, spaced), shape(expected, bytes), "white space at \(gap)")
                XCTAssertFalse(tape.isCompactASCII)
            }
            let stray = Array(bytes[..<gap]) + [UInt8(ascii: "x")] + Array(bytes[gap...])
            assertInvalid(stray, gap == bytes.count ? .trailingBytes(offset: gap) : .unexpected(offset: gap))
            // The same with white space before the stray byte: refused at the stray byte still.
            let spacedStray = Array(bytes[..<gap]) + Array("  ".utf8) + [UInt8(ascii: "x")] + Array(bytes[gap...])
            assertInvalid(spacedStray, gap == bytes.count ? .trailingBytes(offset: gap + 2) : .unexpected(offset: gap + 2))
            // Cut off at the gap (and after white space there): truncated, unless it is the end.
            if gap > 0 && gap < bytes.count {
                assertInvalid(Array(bytes[..<gap]), .truncated)
                assertInvalid(Array(bytes[..<gap]) + Array(" \n".utf8), .truncated)
            }
        }
    }

    func testNumberRangesAndIntegers() throws {
        let text = #"[0,-7,123456789012345678,1.5,2e3,-1E-2,1234567890123456789]"#
        let bytes = Array(text.utf8)
        let tape = try parse(bytes).get()
        var values: [Int?] = []
        bytes.withUnsafeBytes { raw in
            tape.forEachElement(of: 0) { values.append(tape.integer($0, of: raw)) }
            var texts: [String] = []
            tape.forEachElement(of: 0) { index in
                texts.append(String(decoding: raw[Int(tape[index].start)..<Int(tape[index].end)], as: UTF8.self))
            }
            XCTAssertEqual(texts, ["0", "-7", "123456789012345678", "1.5", "2e3", "-1E-2", "1234567890123456789"])
        }
        XCTAssertEqual(values, [0, -7, 123_456_789_012_345_678, nil, nil, nil, nil])
    }

    func testStringEscapesDecoded() throws {
        let text = #"{"s":"a\"b\\c\/d\be\ff\ng\rh\ti\u0041\u00e9\u20ac\ud83d\ude00","p":"plain"}"#
        let bytes = Array(text.utf8)
        let tape = try parse(bytes).get()
        XCTAssertTrue(tape.isCompactASCII)
        bytes.withUnsafeBytes { raw in
            guard let s = tape.member("s", in: 0, of: raw), let p = tape.member("p", in: 0, of: raw) else {
                return XCTFail("members missing")
            }
            XCTAssertTrue(tape[s].escaped)
            XCTAssertFalse(tape[p].escaped)
            XCTAssertEqual(tape.string(s, of: raw), "a\"b\\c/d\u{08}e\u{0C}f\ng\rh\tiA\u{E9}\u{20AC}\u{1F600}")
            XCTAssertEqual(tape.string(p, of: raw), "plain")
            XCTAssertEqual(String(decoding: tape.rawString(p, of: raw), as: UTF8.self), "plain")
        }
    }

    func testLoneSurrogateEscapeDecodesToReplacement() throws {
        let bytes = Array(#"["\ud800x","\udc00"]"#.utf8)
        let tape = try parse(bytes).get()
        bytes.withUnsafeBytes { raw in
            XCTAssertEqual(tape.string(1, of: raw), "\u{FFFD}x")
            XCTAssertEqual(tape.string(2, of: raw), "\u{FFFD}")
        }
    }

    func testUnicodeContent() throws {
        // 2, 3 and 4 byte sequences, the highest scalar, U+FFFF and U+E000 (just after the surrogates).
        let value = "é€😀\u{10FFFF}\u{FFFF}\u{E000}\u{D7FF}\u{80}\u{7FF}\u{800}\u{10000}"
        let text = "{\"k\":\"\(value)\"}"
        let bytes = Array(text.utf8)
        let tape = try parse(bytes).get()
        XCTAssertFalse(tape.isCompactASCII)
        bytes.withUnsafeBytes { raw in
            guard let k = tape.member("k", in: 0, of: raw) else { return XCTFail("no k") }
            XCTAssertEqual(tape.string(k, of: raw), value)
        }
    }

    func testDelIsAllowedInStrings() {
        assertValid("[\"\u{7F}\"]")
    }

    func testEscapedKeyNeverMatches() throws {
        let bytes = Array(#"{"\u0061":1,"b":2}"#.utf8)
        let tape = try parse(bytes).get()
        bytes.withUnsafeBytes { raw in
            XCTAssertNil(tape.member("a", in: 0, of: raw))
            XCTAssertNotNil(tape.member("b", in: 0, of: raw))
        }
    }

    /// The last of a duplicated key counts, as in `MessageReader` (see MessageReaderTests
    /// `testDuplicateKeysTheLastOneCountsForValidationAndRouting`).
    func testDuplicateKeyFindsLast() throws {
        let bytes = Array(#"{"a":1,"b":0,"a":2}"#.utf8)
        let tape = try parse(bytes).get()
        bytes.withUnsafeBytes { raw in
            XCTAssertEqual(tape.member("a", in: 0, of: raw).flatMap { tape.integer($0, of: raw) }, 2)
            XCTAssertEqual(tape.member("b", in: 0, of: raw).flatMap { tape.integer($0, of: raw) }, 0)
        }
    }

    func testTapeIsReusedBetweenParses() throws {
        var tape = JSONTape()
        let big = Array(#"{"a":[1,2,3,4,5,6,7,8],"b":{"c":"d"}}"#.utf8)
        let small = Array(#"[true]"#.utf8)
        try big.withUnsafeBytes { try tape.parse($0) }
        XCTAssertEqual(tape.tokens.count, 15)
        try small.withUnsafeBytes { try tape.parse($0) }
        XCTAssertEqual(tape.tokens.count, 2)
        XCTAssertEqual(tape[0].kind, .array)
        XCTAssertEqual(tape[1].kind, .true)
        XCTAssertEqual(Int(tape[0].next), 2)
    }

    /// Token positions are 32-bit: a text of 2 GiB or more is refused before a byte of it is read
    /// (the buffer here only claims that length).
    func testTextTooLongToIndexIsRefusedWhole() {
        var tape = JSONTape()
        let byte = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
        defer { byte.deallocate() }
        byte.storeBytes(of: UInt8(ascii: "1"), as: UInt8.self)
        let huge = UnsafeRawBufferPointer(start: byte, count: Int(Int32.max))
        XCTAssertThrowsError(try tape.parse(huge)) { error in
            XCTAssertEqual(error as? JSONTape.ParseError, .tooLong(bytes: Int(Int32.max)))
        }
        XCTAssertEqual(tape.count, 0)
        XCTAssertNoThrow(try tape.parse(UnsafeRawBufferPointer(start: byte, count: 1)))
        XCTAssertEqual(tape.count, 1)
    }

    func testDepthLimit() {
        let limit = JSONTape.maxDepth
        XCTAssertEqual(limit, 64)
        assertValid(String(repeating: "[", count: limit) + String(repeating: "]", count: limit))
        assertValid(String(repeating: "{\"a\":", count: limit - 1) + "{}" + String(repeating: "}", count: limit - 1))
        assertInvalid(String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1), .tooDeep)
        assertInvalid(String(repeating: "{\"a\":", count: limit) + "{}" + String(repeating: "}", count: limit), .tooDeep)
        // Mixed: 64 containers then one more.
        assertInvalid(String(repeating: "[{\"x\":", count: 32) + "[]" + String(repeating: "}]", count: 32), .tooDeep)
    }

    // MARK: Invalid documents

    func testTruncated() {
        for text in ["", "   ", "{", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":1,", "[", "[1", "[1,", "\"abc", "tru", "nul", "fals", "-", "\"\\", "\"\\u12"] {
            assertInvalid(text, .truncated)
        }
    }

    /// Found by Fuzz/fuzz-json-tape: a number cut off after `.`, `e` or the exponent's sign was
    /// `unexpected` at an offset one past the input.
    func testNumberCutOffIsTruncatedNotAnOffsetPastTheEnd() {
        for text in ["1.", "1e", "1E+", "-1.5e-", "\n\n1e", "[0,-4267267,13578901210,1E+", "{\"ttl\":2."] {
            assertInvalid(text, .truncated)
        }
        // A byte that is no digit there is still `unexpected`, at that byte.
        assertInvalid("1.x", .unexpected(offset: 2))
        assertInvalid("1e+]", .unexpected(offset: 3))
    }

    func testTrailingBytes() {
        assertInvalid("{} {}", .trailingBytes(offset: 3))
        assertInvalid("{}x", .trailingBytes(offset: 2))
        assertInvalid("[1]]", .trailingBytes(offset: 3))
        assertInvalid("1 2", .trailingBytes(offset: 2))
        assertInvalid("01", .trailingBytes(offset: 1))
        assertInvalid(Array("{}".utf8) + [0])
    }

    func testSyntaxErrors() {
        for text in [
            "{a:1}", "{'a':1}", "{\"a\" 1}", "{\"a\":1,}", "[1,]", "[,1]", "{,}", "[1 2]", "{\"a\":1 \"b\":2}", "True", "nulL",
            "+1", ".5", "1.", "1.e3", "1e", "1e+", "--1", "-a", "[01]", "0x10", "NaN", "Infinity", "{\"a\"::1}", "]", "}",
        ] {
            assertInvalid(text)
        }
    }

    func testBadEscapes() {
        assertInvalid(#"["\x"]"#, .unexpected(offset: 3))
        assertInvalid(#"["\a"]"#, .unexpected(offset: 3))
        assertInvalid(#"["\U0041"]"#, .unexpected(offset: 3))
        assertInvalid(#"["\u12G4"]"#, .unexpected(offset: 6))
        assertInvalid(#"["\u12"]"#)
        assertInvalid(#"["\'"]"#)
    }

    func testControlCharactersInStrings() {
        for byte: UInt8 in [0x00, 0x01, 0x09, 0x0A, 0x0D, 0x1F] {
            assertInvalid([0x5B, 0x22, 0x61, byte, 0x22, 0x5D], .unexpected(offset: 3))
        }
        // Escaped, they are fine.
        assertValid(#"["\t\n\u0000\u001f"]"#)
    }

    func testInvalidUTF8() {
        func inString(_ sequence: [UInt8]) -> [UInt8] { [0x22] + sequence + [0x22] }
        let cases: [(String, [UInt8])] = [
            ("lone continuation", [0x80]),
            ("lone continuation BF", [0xBF]),
            ("overlong 2-byte C0", [0xC0, 0x80]),
            ("overlong 2-byte C1", [0xC1, 0xBF]),
            ("overlong 3-byte", [0xE0, 0x80, 0x80]),
            ("overlong 3-byte slash", [0xE0, 0x9F, 0xBF]),
            ("overlong 4-byte", [0xF0, 0x80, 0x80, 0x80]),
            ("overlong 4-byte high", [0xF0, 0x8F, 0xBF, 0xBF]),
            ("high surrogate", [0xED, 0xA0, 0x80]),
            ("low surrogate", [0xED, 0xBF, 0xBF]),
            ("surrogate pair as CESU-8", [0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80]),
            ("above U+10FFFF", [0xF4, 0x90, 0x80, 0x80]),
            ("F5 lead", [0xF5, 0x80, 0x80, 0x80]),
            ("FF", [0xFF]),
            ("FE", [0xFE]),
            ("truncated 2-byte", [0xC3]),
            ("truncated 3-byte", [0xE2, 0x82]),
            ("truncated 4-byte", [0xF0, 0x9F, 0x98]),
            ("bad third byte", [0xE2, 0x82, 0x41]),
            ("bad fourth byte", [0xF0, 0x9F, 0x98, 0xC0]),
        ]
        for (name, sequence) in cases {
            switch parse(inString(sequence)) {
            case .success:
                XCTFail("\(name): accepted")
            case .failure(let error):
                guard case .invalidUTF8 = error else {
                    XCTFail("\(name): expected invalidUTF8, got \(error)")
                    continue
                }
            }
        }
        // Truncated at the very end of the input.
        assertInvalid([0x22, 0xE2, 0x82])
        // The same scalars encoded correctly pass.
        for valid: [UInt8] in [[0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF]] {
            if case .failure(let error) = parse(inString(valid)) { XCTFail("\(valid) refused: \(error)") }
        }
    }

    /// Strings are scanned sixteen bytes at a time, then eight, then one: a stop (the closing quote,
    /// an escape, a control byte, a non-ASCII byte) is found at every offset of every block, with
    /// the text ending at every distance after it.
    func testEveryStopIsFoundAtEveryOffset() throws {
        for length in 0..<40 {
            for trailing in [0, 1, 7, 8, 9, 15, 16, 17, 40] {
                // `["xx…x"` then `trailing` spaces and `]`: the string's content is `length` bytes.
                let prefix: [UInt8] = [0x5B, 0x22]
                let content = (0..<length).map { UInt8(ascii: "a") + UInt8($0 % 26) }
                let tail = [0x22] + Array(repeating: UInt8(0x20), count: trailing) + [0x5D]
                let tape = try parse(prefix + content + tail).get()
                XCTAssertEqual(tape[1].kind, .string)
                XCTAssertEqual(Int(tape[1].start), 2)
                XCTAssertEqual(Int(tape[1].end), 2 + length, "length \(length), trailing \(trailing)")
                XCTAssertFalse(tape[1].escaped)

                // A control byte, the least above the plain range and its neighbours, at `length`.
                let control = prefix + content + [0x1F] + content + tail
                assertInvalid(control, .unexpected(offset: 2 + length))
                for plain: UInt8 in [0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F] {
                    let tape = try parse(prefix + content + [plain] + content + tail).get()
                    XCTAssertEqual(Int(tape[1].end), 3 + 2 * length, "byte \(plain) at \(length)")
                }
                // An escape at `length`: the string goes on past it.
                let escaped = try parse(prefix + content + Array(#"\""#.utf8) + content + tail).get()
                XCTAssertTrue(escaped[1].escaped)
                XCTAssertEqual(Int(escaped[1].end), 4 + 2 * length)
                // A two-byte scalar at `length`, valid; a lone continuation byte there, invalid.
                let accented = try parse(prefix + content + [0xC3, 0xA9] + content + tail).get()
                XCTAssertEqual(Int(accented[1].end), 4 + 2 * length)
                XCTAssertFalse(accented.isCompactASCII)
                assertInvalid(prefix + content + [0x80] + content + tail, .invalidUTF8(offset: 2 + length))
            }
        }
    }

    func testNonASCIIOutsideStringsRefused() {
        assertInvalid([0x5B, 0xC3, 0xA9, 0x5D])
        assertInvalid([0xEF, 0xBB, 0xBF, 0x7B, 0x7D])  // BOM
    }

    // MARK: isCompactASCII

    func testIsCompactASCII() throws {
        XCTAssertTrue(try parse(#"{"a":[1,2],"b":"x y\u00e9"}"#).get().isCompactASCII)
        XCTAssertFalse(try parse(#"{"a": 1}"#).get().isCompactASCII)
        XCTAssertFalse(try parse("{\"a\":1}\n").get().isCompactASCII)
        XCTAssertFalse(try parse("\t{\"a\":1}").get().isCompactASCII)
        XCTAssertFalse(try parse("{\"a\":\"é\"}").get().isCompactASCII)
        // Reset by the next parse.
        var tape = JSONTape()
        try Array("{ }".utf8).withUnsafeBytes { try tape.parse($0) }
        XCTAssertFalse(tape.isCompactASCII)
        try Array("{}".utf8).withUnsafeBytes { try tape.parse($0) }
        XCTAssertTrue(tape.isCompactASCII)
    }
}
