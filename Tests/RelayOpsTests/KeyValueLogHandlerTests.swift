#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import XCTest

@testable import RelayOps

final class KeyValueLogHandlerTests: XCTestCase {
    // MARK: Quoting

    func testPlainWordsStayBare() {
        for value in ["info", "127.0.0.1:9001", "relay@0b6a2c4e-1d6f-4c1e-9c55-3b1f1e0a7d10", "a-b_c.d/e", "42"] {
            XCTAssertEqual(KeyValueLogHandler.quote(value), value, value)
        }
    }

    func testValuesWithSpacesQuotesEqualsOrBackslashesAreQuoted() {
        XCTAssertEqual(KeyValueLogHandler.quote("two words"), #""two words""#)
        XCTAssertEqual(KeyValueLogHandler.quote(#"say "hi""#), #""say \"hi\"""#)
        XCTAssertEqual(KeyValueLogHandler.quote("a=b"), #""a=b""#)
        XCTAssertEqual(KeyValueLogHandler.quote(#"back\slash"#), #""back\\slash""#)
        XCTAssertEqual(KeyValueLogHandler.quote(""), #""""#, "an empty value must still be visible")
    }

    func testControlCharactersAreEscapedSoALineStaysOneLine() {
        XCTAssertEqual(KeyValueLogHandler.quote("one\ntwo"), #""one\ntwo""#)
        XCTAssertEqual(KeyValueLogHandler.quote("cr\rtab\t"), #""cr\rtab\t""#)
        XCTAssertEqual(KeyValueLogHandler.quote("bell\u{07}"), #""bell\u0007""#)
        XCTAssertEqual(KeyValueLogHandler.quote("del\u{7F}"), #""del\u007f""#)
        XCTAssertEqual(KeyValueLogHandler.quote("esc\u{1B}[31m"), #""esc\u001b[31m""#, "an ANSI sequence must not reach the terminal")
        for nasty in ["a\nb\r\nc", "\u{0B}\u{0C}\u{85}", "x\u{2028}y"] {
            let quoted = KeyValueLogHandler.quote(nasty)
            XCTAssertFalse(quoted.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "a control character left in \(quoted.debugDescription)")
            XCTAssertFalse(quoted.contains("\n"), quoted)
        }
    }

    func testNonASCIIIsQuotedAndKept() {
        XCTAssertEqual(KeyValueLogHandler.quote("héllo"), "\"héllo\"")
    }

    // MARK: Priorities

    func testSyslogPriorities() {
        let expected: [(Logger.Level, Int)] = [
            (.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2),
        ]
        for (level, priority) in expected {
            XCTAssertEqual(KeyValueLogHandler.syslogPriority(level), priority, "\(level)")
        }
    }

    // MARK: Whole lines

    func testJournaldLinesStartWithThePriorityAndHaveNoTimestamp() throws {
        let level = SharedLogLevel(.debug)
        let logger = Logger(label: "t") { KeyValueLogHandler(label: $0, level: level, environment: ["JOURNAL_STREAM": "8:1234"]) }
        let output = try captureStandardError {
            logger.info("relay started", metadata: ["node_id": "abc", "name": "relay one"])
            logger.debug("dropped")
            logger.warning("slow\nconsumer")
            logger.error("boom")
        }
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(lines, [
            #"<6>level=info msg="relay started" name="relay one" node_id=abc"#,
            "<7>level=debug msg=dropped",
            #"<4>level=warning msg="slow\nconsumer""#,
            "<3>level=error msg=boom",
            "",
        ])
    }

    func testLinesOutsideJournaldStartWithAnISOTimestamp() throws {
        let level = SharedLogLevel(.info)
        var logger = Logger(label: "t") { KeyValueLogHandler(label: $0, level: level, environment: [:]) }
        logger[metadataKey: "conn"] = "7"
        let output = try captureStandardError {
            logger.info("hello", metadata: ["b": "2", "a": "one two"])
        }
        XCTAssertTrue(output.hasSuffix("\n"))
        let line = String(output.dropLast())
        XCTAssertFalse(line.contains("\n"), "one event, one line: \(line)")
        let pattern = #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z level=info msg=hello a="one two" b=2 conn=7$"#
        XCTAssertNotNil(line.range(of: pattern, options: .regularExpression), line)
        let stamp = try XCTUnwrap(line.split(separator: " ").first)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = try XCTUnwrap(formatter.date(from: String(stamp)), "not ISO 8601: \(stamp)")
        XCTAssertLessThan(abs(date.timeIntervalSinceNow), 60, "the timestamp is not now (UTC): \(stamp)")
    }

    func testEventMetadataWinsOverHandlerMetadataAndKeysAreSorted() throws {
        let level = SharedLogLevel(.info)
        var logger = Logger(label: "t") { KeyValueLogHandler(label: $0, level: level, environment: ["JOURNAL_STREAM": "1:1"]) }
        logger[metadataKey: "z"] = "handler"
        logger[metadataKey: "k"] = "handler"
        let output = try captureStandardError { logger.notice("m", metadata: ["k": "event", "a": "\"q\""]) }
        XCTAssertEqual(output, #"<5>level=notice msg=m a="\"q\"" k=event z=handler"# + "\n")
    }

    func testTheSharedLevelFiltersEveryLoggerAndCanChange() throws {
        let level = SharedLogLevel(.info)
        let first = Logger(label: "a") { KeyValueLogHandler(label: $0, level: level, environment: ["JOURNAL_STREAM": "1:1"]) }
        let second = Logger(label: "b") { KeyValueLogHandler(label: $0, level: level, environment: ["JOURNAL_STREAM": "1:1"]) }
        let quiet = try captureStandardError {
            first.debug("hidden")
            second.debug("hidden")
        }
        XCTAssertEqual(quiet, "", "debug lines at level info")
        level.value = .debug
        XCTAssertEqual(first.logLevel, .debug)
        XCTAssertEqual(second.logLevel, .debug)
        let loud = try captureStandardError {
            first.debug("shown")
            second.trace("hidden")
        }
        XCTAssertEqual(loud, "<7>level=debug msg=shown\n")
        var third = first
        third.logLevel = .error
        XCTAssertEqual(level.value, .error, "setting one logger's level sets the shared level (a reload changes every logger)")
        XCTAssertEqual(second.logLevel, .error)
    }

    /// Runs `body` with file descriptor 2 pointing at a temporary file; returns what was written.
    private func captureStandardError(_ body: () -> Void) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kv-log-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: url) }
        let file = open(url.path, O_CREAT | O_TRUNC | O_WRONLY, 0o600)
        guard file >= 0 else { throw POSIXError(.EIO) }
        let saved = dup(2)
        dup2(file, 2)
        close(file)
        body()
        dup2(saved, 2)
        close(saved)
        return try String(contentsOf: url, encoding: .utf8)
    }
}
