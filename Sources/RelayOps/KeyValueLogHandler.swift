import Foundation
import Logging
import Synchronization

/// The level every `KeyValueLogHandler` logs at; a reload changes it for all loggers at once.
///
/// Read at every log call, most of which log nothing (a `debug` line at the default level): an
/// atomic load, where a lock and its release were a third of what such a call cost (callgrind).
public final class SharedLogLevel: Sendable {
    private static let levels = Logger.Level.allCases
    /// The level's index in `Logger.Level.allCases`.
    private let index: Atomic<Int>
    public init(_ level: Logger.Level) { index = Atomic(Self.levels.firstIndex(of: level)!) }
    public var value: Logger.Level {
        get { Self.levels[index.load(ordering: .relaxed)] }
        set { index.store(Self.levels.firstIndex(of: newValue)!, ordering: .relaxed) }
    }
}

/// One line per event on standard error: `[time ]level=info msg="…" key=value …`, no colours.
/// Under journald (`JOURNAL_STREAM` set) the line starts with the syslog priority (`<6>`) instead
/// of a time stamp: the journal adds its own time and maps the priority.
public struct KeyValueLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let shared: SharedLogLevel
    private let journald: Bool

    public init(label: String, level: SharedLogLevel, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.label = label
        self.shared = level
        self.journald = environment["JOURNAL_STREAM"] != nil
    }

    public var logLevel: Logger.Level {
        get { shared.value }
        set { shared.value = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = ""
        if journald {
            line += "<\(Self.syslogPriority(event.level))>"
        } else {
            line += Self.timestamp() + " "
        }
        line += "level=\(event.level) msg=\(Self.quote(event.message.description))"
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for key in merged.keys.sorted() {
            line += " \(key)=\(Self.quote(merged[key]!.description))"
        }
        line += "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Bare when it is one plain word, else in double quotes with `"`, `\\` and control characters
    /// escaped: a line stays one line.
    static func quote(_ value: String) -> String {
        let plain = !value.isEmpty && value.unicodeScalars.allSatisfy { scalar in
            scalar.value > 0x20 && scalar.value < 0x7F && scalar != "\"" && scalar != "=" && scalar != "\\"
        }
        if plain { return value }
        var quoted = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\r": quoted += "\\r"
            case "\t": quoted += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    quoted += String(format: "\\u%04x", scalar.value)
                } else {
                    quoted.unicodeScalars.append(scalar)
                }
            }
        }
        return quoted + "\""
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(now.tv_nsec / 1_000_000))
    }
}
