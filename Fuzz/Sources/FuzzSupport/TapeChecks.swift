import NIOCore
import PTPProtocol

/// What a successful `JSONTape.parse` promises, checked on every accepted input.
public enum TapeChecks {
    /// Every token's byte range lies in the input and matches its kind; every `next` points forward
    /// and stays inside its container; walking a container's children ends exactly at its `next`.
    public static func structure(_ tape: JSONTape, _ bytes: UnsafeRawBufferPointer) {
        let count = tape.count
        fuzzCheck(count >= 1, "an accepted document has no token", bytes)
        fuzzCheck(Int(tape[0].next) == count, "the root's next is not the token count", bytes)
        for index in 0..<count {
            let token = tape[index]
            let start = Int(token.start)
            let end = Int(token.end)
            let next = Int(token.next)
            fuzzCheck(0 <= start && start <= end && end <= bytes.count, "token \(index) range \(start)..<\(end) outside the input", bytes)
            fuzzCheck(next > index && next <= count, "token \(index) next \(next) does not point forward", bytes)
            switch token.kind {
            case .object, .array:
                let open = token.kind == .object ? UInt8(ascii: "{") : UInt8(ascii: "[")
                let close = token.kind == .object ? UInt8(ascii: "}") : UInt8(ascii: "]")
                fuzzCheck(end - start >= 2 && bytes[start] == open && bytes[end - 1] == close, "container \(index) is not bracketed", bytes)
                var child = index + 1
                var members = 0
                while child < next {
                    if token.kind == .object {
                        fuzzCheck(tape[child].kind == .string, "object \(index) has a key that is not a string", bytes)
                        fuzzCheck(child + 1 < next, "object \(index) has a key without a value", bytes)
                        child = Int(tape[child + 1].next)
                    } else {
                        child = Int(tape[child].next)
                    }
                    members += 1
                }
                fuzzCheck(child == next, "children of container \(index) end at \(child), not at its next \(next)", bytes)
                fuzzCheck(tape.count(of: index) == members, "count(of:) disagrees with a walk", bytes)
            case .string:
                fuzzCheck(start >= 1 && bytes[start - 1] == UInt8(ascii: "\"") && end < bytes.count && bytes[end] == UInt8(ascii: "\""), "string \(index) is not quoted", bytes)
                fuzzCheck(next == index + 1, "scalar \(index) has children", bytes)
            case .number:
                let first = bytes[start]
                fuzzCheck(first == UInt8(ascii: "-") || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")), "number \(index) starts with \(first)", bytes)
                fuzzCheck(next == index + 1, "scalar \(index) has children", bytes)
                checkInteger(tape, index, bytes)
            case .true, .false, .null:
                let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
                let expected = token.kind == .true ? "true" : token.kind == .false ? "false" : "null"
                fuzzCheck(text == expected, "literal \(index) reads \(text)", bytes)
                fuzzCheck(next == index + 1, "scalar \(index) has children", bytes)
            }
        }
    }

    /// `integer` agrees with Swift's own parser on plain integers of up to 18 digits, and is nil
    /// for anything else.
    static func checkInteger(_ tape: JSONTape, _ index: Int, _ bytes: UnsafeRawBufferPointer) {
        let token = tape[index]
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[Int(token.start)..<Int(token.end)]), as: UTF8.self)
        let digits = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        let plain = !digits.isEmpty && digits.count <= 18 && digits.allSatisfy { $0 >= "0" && $0 <= "9" }
        let value = tape.integer(index, of: bytes)
        if plain {
            fuzzCheck(value == Int(text), "integer() of \(text) is \(String(describing: value))", bytes)
        } else {
            fuzzCheck(value == nil, "integer() of \(text) is \(String(describing: value)), expected nil", bytes)
        }
    }

    /// An accepted document is valid UTF-8 (the parser validates every string; outside strings only
    /// ASCII is accepted).
    public static func utf8(_ bytes: UnsafeRawBufferPointer) {
        fuzzCheck(String(validating: bytes, as: UTF8.self) != nil, "accepted bytes are not valid UTF-8", bytes)
    }

    /// `writeCompactJSON` of the whole document (what the relay does when it copies members) is
    /// ASCII without white space outside strings, parses again, and holds the same tokens: same
    /// kinds, same decoded strings, same number text.
    public static func compactCopy(_ tape: JSONTape, _ bytes: UnsafeRawBufferPointer, into copyTape: inout JSONTape) {
        var out = ByteBuffer()
        FrameWriter.copyValue(&out, tape: tape.view, bytes: bytes, token: 0)
        let copy = out.fuzzBytes
        fuzzCheck(copy.allSatisfy { $0 < 0x80 }, "compact copy is not ASCII", bytes)
        copy.withUnsafeBytes { copied in
            do throws(JSONTape.ParseError) {
                try copyTape.parse(copied)
            } catch {
                fuzzFailure("compact copy does not parse: \(error); copy: \(String(decoding: copied, as: UTF8.self))", bytes)
            }
            fuzzCheck(copyTape.isCompactASCII, "compact copy is not compact ASCII", bytes)
            fuzzCheck(copyTape.count == tape.count, "compact copy has \(copyTape.count) tokens, not \(tape.count)", bytes)
            for index in 0..<tape.count {
                let original = tape[index]
                let copiedToken = copyTape[index]
                fuzzCheck(original.kind == copiedToken.kind && original.next == copiedToken.next, "token \(index) differs in the compact copy", bytes)
                switch original.kind {
                case .string:
                    fuzzCheck(tape.string(index, of: bytes) == copyTape.string(index, of: copied), "string \(index) decodes differently in the compact copy", bytes)
                case .number:
                    fuzzCheck(tape.rawString(index, of: bytes).elementsEqual(copyTape.rawString(index, of: copied)), "number \(index) differs in the compact copy", bytes)
                default:
                    break
                }
            }
        }
    }

    /// Every decoded string written back with `writeJSONString` is ASCII and parses to one string
    /// token that decodes to the same text.
    public static func stringRoundTrips(_ tape: JSONTape, _ bytes: UnsafeRawBufferPointer, into copyTape: inout JSONTape) {
        for index in 0..<tape.count where tape[index].kind == .string {
            let text = tape.string(index, of: bytes)
            var out = ByteBuffer()
            out.writeJSONString(text)
            let written = out.fuzzBytes
            fuzzCheck(written.allSatisfy { $0 >= 0x20 && $0 < 0x80 }, "writeJSONString wrote a byte that is not printable ASCII", bytes)
            written.withUnsafeBytes { raw in
                do throws(JSONTape.ParseError) {
                    try copyTape.parse(raw)
                } catch {
                    fuzzFailure("writeJSONString output does not parse: \(error)", bytes)
                }
                fuzzCheck(copyTape.count == 1 && copyTape[0].kind == .string, "writeJSONString output is not one string", bytes)
                fuzzCheck(copyTape.string(0, of: raw) == text, "string \(index) does not survive writeJSONString", bytes)
            }
        }
    }
}
