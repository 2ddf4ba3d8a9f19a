import XCTest

@testable import PTPProtocol

#if canImport(Glibc)
import Glibc
#endif

/// `RepeatedMessage` must give what `MessageReader.read` gives (the envelope, and the tape the
/// relay copies `msg_data` from), or nothing: it stands in for the parse only on frames that
/// repeat a validated MESSAGE but for its ids, timestamp and text.
final class RepeatedMessageTests: XCTestCase {
    /// relay-load's MESSAGE (../shared/bench): no head `msg_id`.
    static func loadMessage(_ id: String, _ text: String, timestamp: String = "2000-01-01T00:00:00.000000Z") -> String {
        #"{"msg_type":"MESSAGE","ttl":32,"flood":false,"msg_data":{"msg_id":"\#(id)","node_id":"\#(IDs.a)","recipient":[{"node_id":"\#(IDs.b)"}],"timestamp":"\#(timestamp)","channel":"bench","channel_id":"\#(IDs.channel)","message":"\#(text)"}}"#
    }

    /// The existing C# client's chat frame (CLIENT-FRAMES.md): a labelled HELLO with a zero head id.
    static func csharpChat(_ id: String, _ text: String, timestamp: String = "2016-05-04T13:23:29.123456+01:00") -> String {
        #"{"msg_data":{"attachment":null,"channel":"Test Channel","channel_id":"\#(IDs.channel)","message":"\#(text)","msg_id":"\#(id)","recipient":[{"node_id":"\#(IDs.a)"},{"node_id":"\#(IDs.b)"}],"timestamp":"\#(timestamp)"},"flood":false,"msg_type":"HELLO","msg_id":"00000000-0000-0000-0000-000000000000","ttl":0,"sender_id":"LocalNode@\#(IDs.a)","target_id":null}"#
    }

    /// A relay's forwarded MESSAGE (CLIENT-FRAMES.md): the id in the head and in `msg_data`.
    static func relayedMessage(_ id: String, _ text: String, timestamp: String = "2016-05-04T13:23:29+01:00") -> String {
        relayedMessage(head: id, data: id, text, timestamp: timestamp)
    }

    static func relayedMessage(head: String, data: String, _ text: String, timestamp: String = "2016-05-04T13:23:29+01:00") -> String {
        #"{"msg_type":"MESSAGE","msg_id":"\#(head)","ttl":31,"flood":false,"sender_id":"bob@\#(IDs.a)","target_id":null,"msg_data":{"recipient":[{"node_id":"\#(IDs.b)"}],"timestamp":"\#(timestamp)","channel":"Test Channel","channel_id":"\#(IDs.channel)","message":"\#(text)","msg_id":"\#(data)","attachment":[]}}"#
    }

    static let templates: [@Sendable (String, String) -> String] = [
        { loadMessage($0, $1) }, { csharpChat($0, $1) }, { relayedMessage($0, $1) },
    ]

    /// What the full read gives: the envelope and the tape.
    private struct Read: Equatable {
        var envelope: Envelope
        var tokens: [[Int32]]
        var isCompactASCII: Bool

        init(_ envelope: Envelope, _ tape: JSONTape) {
            self.envelope = envelope
            tokens = tape.tokens.map { [Int32($0.kind.rawValue), $0.escaped ? 1 : 0, $0.start, $0.end, $0.next] }
            isCompactASCII = tape.isCompactASCII
        }
    }

    private func read(_ frame: [UInt8]) -> Read? {
        var reader = MessageReader()
        return frame.withUnsafeBytes { bytes in
            guard let envelope = try? reader.read(bytes) else { return nil }
            return Read(envelope, reader.tape)
        }
    }

    private func read(_ text: String) -> Read? { read(Array(text.utf8)) }

    private func remember(_ text: String) -> RepeatedMessage? {
        var reader = MessageReader()
        return Array(text.utf8).withUnsafeBytes { bytes in
            guard let envelope = try? reader.read(bytes) else { return nil }
            return reader.repeatedMessage(bytes, envelope)
        }
    }

    /// The repeat's reading, on a tape that held another frame's tokens before.
    private func repeated(_ message: RepeatedMessage, _ frame: [UInt8]) -> Read? {
        var reader = MessageReader()
        Array(#"{"msg_type":"ACK","msg_data":{"msg_id":"\#(IDs.head)","a":[1,2,{"b":null}]}}"#.utf8).withUnsafeBytes { _ = try? reader.read($0) }
        return frame.withUnsafeBytes { bytes in
            guard let envelope = message.envelope(of: bytes, into: &reader.tape) else { return nil }
            return Read(envelope, reader.tape)
        }
    }

    private func repeated(_ message: RepeatedMessage, _ text: String) -> Read? { repeated(message, Array(text.utf8)) }

    private func plainText(length: Int, using random: inout SeededRandom) -> String {
        let printable = Array(" !#$%&'()*+,-./0123456789:;<=>?@ABCXYZ[]^_`abcxyz{|}~\u{7F}")
        return String((0..<length).map { _ in printable.randomElement(using: &random)! })
    }

    func testEachClientsNextMessageReadsAsTheReaderReadsIt() throws {
        var random = SeededRandom(seed: 0x4E55)
        for template in Self.templates {
            let first = template(IDs.message, "hello")
            let message = try XCTUnwrap(remember(first), first)
            XCTAssertEqual(repeated(message, first), read(first))
            for length in [0, 1, 4, 5, 6, 15, 16, 17, 64, 255, 256, 1000] + (0..<20).map({ _ in Int.random(in: 0...300, using: &random) }) {
                let next = template(GUID.random().description, plainText(length: length, using: &random))
                let expected = try XCTUnwrap(read(next), next)
                XCTAssertEqual(repeated(message, next), expected, next)
            }
            // Upper-case digits are a canonical GUID to the reader too.
            let upper = template(GUID.random().description.uppercased(), "x")
            XCTAssertEqual(repeated(message, upper), try XCTUnwrap(read(upper)), upper)
        }
    }

    func testAnotherTimestampReadsAsTheReaderReadsIt() throws {
        let message = try XCTUnwrap(remember(Self.loadMessage(IDs.message, "hi")))
        for timestamp in ["", "2026-12-06T15:04:05Z", "yesterday, at about tea time"] {
            let next = Self.loadMessage(IDs.head, "hi", timestamp: timestamp)
            XCTAssertEqual(repeated(message, next), try XCTUnwrap(read(next)), next)
        }
    }

    func testTextTheRepeatCannotReadIsLeftToTheReader() throws {
        for template in Self.templates {
            let message = try XCTUnwrap(remember(template(IDs.message, "hello")))
            // Escapes and non-ASCII text are valid, but not a plain run: the reader reads them.
            for text in [#"line\nbreak"#, #"say \"hi\""#, "caf\u{E9}", "\u{1F600}", #"\u0041"#] {
                let next = template(IDs.head, text)
                XCTAssertNotNil(read(next), next)
                XCTAssertNil(repeated(message, next), next)
            }
            // A raw control character or a lone backslash is no JSON at all.
            for text in ["tab\there", "bell\u{07}", #"end\"#] {
                let next = template(IDs.head, text)
                XCTAssertNil(read(next), next)
                XCTAssertNil(repeated(message, next), next)
            }
        }
    }

    func testOtherFramesAreLeftToTheReader() throws {
        let message = try XCTUnwrap(remember(Self.loadMessage(IDs.message, "hi")))
        let next = Self.loadMessage(IDs.head, "hi")
        XCTAssertNotNil(repeated(message, next))
        // Another recipient, another sender, another channel, another ttl: parsed.
        XCTAssertNil(repeated(message, next.replacingOccurrences(of: IDs.b, with: IDs.relay)))
        XCTAssertNil(repeated(message, next.replacingOccurrences(of: IDs.a, with: IDs.relay)))
        XCTAssertNil(repeated(message, next.replacingOccurrences(of: "bench", with: "bench2")))
        XCTAssertNil(repeated(message, next.replacingOccurrences(of: "\"ttl\":32", with: "\"ttl\":31")))
        // White space after it, one byte short of it, or nothing at all.
        XCTAssertNil(repeated(message, next + " "))
        XCTAssertNil(repeated(message, String(next.dropLast())))
        XCTAssertNil(repeated(message, ""))
        // An id that is not a canonical GUID, or all zeros with no head id to fall back on.
        XCTAssertNil(repeated(message, Self.loadMessage(String(IDs.head.dropLast()) + "g", "hi")))
        XCTAssertNil(repeated(message, Self.loadMessage(String(IDs.head.dropLast()), "hi")))
        XCTAssertNil(repeated(message, Self.loadMessage(IDs.head + "0", "hi")))
        XCTAssertNil(repeated(message, Self.loadMessage(IDs.zero, "hi")))
        // An ACK.
        XCTAssertNil(repeated(message, RepeatedAckTests.loadAck(IDs.head)))
    }

    func testZeroIDsFollowTheReader() throws {
        let message = try XCTUnwrap(remember(Self.relayedMessage(IDs.message, "hi")))
        // All zeros in msg_data: the head's id, as the reader takes it.
        let headOnly = Self.relayedMessage(head: IDs.b, data: IDs.zero, "hi")
        let expected = try XCTUnwrap(read(headOnly))
        XCTAssertEqual(expected.envelope.messageID?.description, IDs.b)
        XCTAssertEqual(repeated(message, headOnly), expected)
        // Another id in the head than in msg_data: msg_data's, and the head's kept as the head's.
        let both = Self.relayedMessage(head: IDs.b, data: IDs.head, "hi")
        XCTAssertEqual(repeated(message, both), try XCTUnwrap(read(both)))
        // No non-zero id at all: the reader refuses it, so the repeat leaves it to the reader.
        XCTAssertNil(read(Self.relayedMessage(head: IDs.zero, data: IDs.zero, "hi")))
        XCTAssertNil(repeated(message, Self.relayedMessage(head: IDs.zero, data: IDs.zero, "hi")))
        // The C# client's zero head id is none.
        let chat = try XCTUnwrap(remember(Self.csharpChat(IDs.message, "hi")))
        let next = try XCTUnwrap(repeated(chat, Self.csharpChat(IDs.head, "hi")))
        XCTAssertNil(next.envelope.headMessageID)
        XCTAssertNil(repeated(chat, Self.csharpChat(IDs.zero, "hi")))
    }

    func testOnlyAPlainMessageWithOneIDIsRemembered() {
        XCTAssertNotNil(remember(Self.loadMessage(IDs.message, "hi")))
        // Not a MESSAGE.
        XCTAssertNil(remember(RepeatedAckTests.loadAck(IDs.message)))
        XCTAssertNil(remember(#"{"msg_type":"HELLO","msg_data":{"node_id":"\#(IDs.a)"}}"#))
        // Not compact ASCII: white space between the tokens, or text that is not ASCII.
        XCTAssertNil(remember(Self.loadMessage(IDs.message, "hi").replacingOccurrences(of: ",\"ttl\"", with: ", \"ttl\"")))
        XCTAssertNil(remember(Self.loadMessage(IDs.message, "caf\u{E9}")))
        // The id written with an escape, or given twice.
        let escaped = "\\u00" + String(IDs.message.unicodeScalars.first!.value, radix: 16) + IDs.message.dropFirst()
        XCTAssertNil(remember(Self.loadMessage(escaped, "hi")))
        XCTAssertNil(remember(Self.loadMessage(IDs.message, "hi").replacingOccurrences(of: "\"node_id\":\"\(IDs.a)\"", with: "\"msg_id\":\"\(IDs.head)\"")))
        // More constant bytes than are kept: parsed every time.
        let channel = String(repeating: "c", count: RepeatedMessage.maximumConstantBytes)
        XCTAssertNil(remember(Self.loadMessage(IDs.message, "hi").replacingOccurrences(of: "bench", with: channel)))
        // Escaped text: a repeat reads only plain text, and this client's next text most likely
        // has an escape too.
        XCTAssertNotNil(read(Self.loadMessage(IDs.message, #"two\nlines"#)))
        XCTAssertNil(remember(Self.loadMessage(IDs.message, #"two\nlines"#)))
        XCTAssertNil(remember(Self.loadMessage(IDs.message, "hi", timestamp: #"\u0032000"#)))
    }

    /// An empty text in the remembered frame is a hole like any other (its token's start moves
    /// with the holes before it, not with its own growth).
    func testEmptyTextRememberedReadsAsTheReaderReadsIt() throws {
        var random = SeededRandom(seed: 0x4E57)
        for timestamp in ["", "2000-01-01T00:00:00Z"] {
            for text in ["", "x"] {
                let message = try XCTUnwrap(remember(Self.loadMessage(IDs.message, text, timestamp: timestamp)))
                for length in [0, 1, 5, 300] {
                    for nextTimestamp in ["", "2026-12-06T15:04:05.123456Z"] {
                        let next = Self.loadMessage(GUID.random().description, plainText(length: length, using: &random), timestamp: nextTimestamp)
                        XCTAssertEqual(repeated(message, next), try XCTUnwrap(read(next)), next)
                    }
                }
            }
        }
    }

    #if os(Linux)
    /// Token positions are 32-bit: the parser refuses a text of 2 GiB or more, and so must a
    /// repeat, whose moved offsets would wrap (and the forwarding path's slices with them). The
    /// frames are real: their text is one MiB of a file mapped again and again, so 2 GiB of
    /// frame costs 3 MiB of memory and a scan.
    func testAFrameOf2GiBOrMoreIsLeftToTheReader() throws {
        let message = try XCTUnwrap(remember(Self.loadMessage(IDs.message, "hi")))
        let unit = 1 << 20
        let template = Array(Self.loadMessage(IDs.head, "@").utf8)
        let split = try XCTUnwrap(template.firstIndex(of: UInt8(ascii: "@")))
        let (before, after) = (Array(template[..<split]), Array(template[(split + 1)...]))
        // Three MiB: the frame up to its text, then text; text; text, then the rest of the frame.
        var path = Array(FileManager.default.temporaryDirectory.appendingPathComponent("ptpchat-repeat-XXXXXX").path.utf8CString)
        let descriptor = mkstemp(&path)
        guard descriptor >= 0 else { throw XCTSkip("no temporary file: errno \(errno)") }
        unlink(path)
        defer { close(descriptor) }
        guard ftruncate(descriptor, off_t(3 * unit)) == 0 else { throw XCTSkip("no 3 MiB temporary file: errno \(errno)") }
        // mmap says no with MAP_FAILED, not nil.
        guard let file = mmap(nil, 3 * unit, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0), file != MAP_FAILED else {
            throw XCTSkip("cannot map the temporary file: errno \(errno)")
        }
        memset(file, Int32(UInt8(ascii: "A")), 3 * unit)
        before.withUnsafeBytes { _ = memcpy(file, $0.baseAddress!, before.count) }
        after.withUnsafeBytes { _ = memcpy(file + 3 * unit - after.count, $0.baseAddress!, after.count) }
        munmap(file, 3 * unit)

        /// A frame of `units` MiB: the first and last MiB of the file around its middle one,
        /// mapped `units - 2` times.
        func read(units: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
            let total = units * unit
            guard let region = mmap(nil, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), region != MAP_FAILED else {
                throw XCTSkip("no \(total) bytes of address space: errno \(errno)")
            }
            defer { munmap(region, total) }
            for index in 0..<units {
                let offset = index == 0 ? 0 : (index == units - 1 ? 2 * unit : unit)
                guard mmap(region + index * unit, unit, PROT_READ, MAP_SHARED | MAP_FIXED, descriptor, off_t(offset)) == region + index * unit else {
                    throw XCTSkip("cannot map the file \(units) times: errno \(errno)")
                }
            }
            try body(UnsafeRawBufferPointer(start: region, count: total))
        }
        // Three MiB of the same layout: a repeat, read as the parser reads it.
        try read(units: 3) { frame in
            var reader = MessageReader()
            XCTAssertTrue(message.read(frame, into: &reader.tape))
            let repeated = reader.tape.tokens.map { [$0.start, $0.end] }
            let envelope = message.remembered
            XCTAssertEqual(try reader.read(frame), envelope)
            XCTAssertEqual(reader.tape.tokens.map { [$0.start, $0.end] }, repeated)
        }
        // 2 GiB and more: left to the parser, which refuses it.
        try read(units: 2_049) { frame in
            XCTAssertGreaterThanOrEqual(frame.count, Int(Int32.max))
            var reader = MessageReader()
            XCTAssertFalse(message.read(frame, into: &reader.tape), "a repeat of \(frame.count) bytes")
            XCTAssertThrowsError(try reader.read(frame)) { error in
                XCTAssertTrue((error as? InvalidMessage)?.reason.contains("too long") ?? false, "\(error)")
            }
        }
    }
    #endif

    func testTwoParsedInARowAskForANewOne() throws {
        let message = try XCTUnwrap(remember(Self.loadMessage(IDs.message, "hi")))
        XCTAssertFalse(message.noteMiss(), "one conversation's message between another's")
        XCTAssertNotNil(repeated(message, Self.loadMessage(IDs.head, "back")))
        XCTAssertFalse(message.noteMiss(), "a repeat starts the count again")
        XCTAssertTrue(message.noteMiss(), "two in a row: the client moved on")
    }

    /// Frames one to three byte edits away from a repeat (in the holes, next to them, anywhere):
    /// whenever the repeat gives a reading, the reader gives the same one.
    func testNearbyFramesNeverReadDifferently() throws {
        var random = SeededRandom(seed: 0x4E56)
        let alphabet = Array("0123456789abcdefABCDEF-\"\\{}[]:, xg\u{7F}".utf8) + [0x00, 0x09, 0xC3, 0xA9]
        var agreed = 0
        var moved = 0
        for template in Self.templates {
            let message = try XCTUnwrap(remember(template(IDs.message, "hello")))
            let base = Array(template(GUID.random().description, "some text").utf8)
            for _ in 0..<10_000 {
                let frame = nearbyEdit(of: base, from: alphabet, using: &random)
                guard let fast = repeated(message, frame) else { continue }
                XCTAssertEqual(fast, read(frame), String(decoding: frame, as: UTF8.self))
                agreed += 1
                if frame.count != base.count { moved += 1 }
            }
        }
        // The edits that keep a repeat a repeat (a hex digit in an id, a letter in the text,
        // one more or one less in the text) were tried.
        XCTAssertGreaterThan(agreed, 1_000)
        XCTAssertGreaterThan(moved, 100)
    }
}
