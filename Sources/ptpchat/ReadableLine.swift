import Foundation
import PTPProtocol

/// The human form of what `listen` receives: one line per MESSAGE (and per JOIN, LEAVE, CHANNEL with
/// `--all`), safe to print on a terminal. Read from the frame's JSON line (`InboundFrame.line`); the
/// client is not a hot path, so Foundation's JSON reader is good enough here.
enum ReadableLine {
    /// `HH:mm:ss alice (GUID) #channel: text`, or nil when `line` is not a frame this shows.
    /// `time` is when the frame arrived (the sender's `timestamp` is its own clock's, and absent
    /// from some clients); `path` is added with `--accept-punch`.
    static func format(_ line: [UInt8], at time: Date, path: String? = nil) -> String? {
        guard let frame = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any],
            let verb = frame["msg_type"] as? String
        else { return nil }
        let data = frame["msg_data"] as? [String: Any] ?? [:]
        let clock = clockFormat.format(time)
        let who = sender(frame, data)
        let channel = (data["channel"] as? String).flatMap { $0.isEmpty ? nil : $0 }
        switch verb {
        case "MESSAGE":
            let text = (data["message"] as? String).map(MessageText.display) ?? ""
            // `cli` is the channel `ptpchat send` puts its direct messages on: not worth a column.
            let place = channel.flatMap { $0 == "cli" ? nil : " #" + safe($0) } ?? ""
            let via = path.map { " [\($0)]" } ?? ""
            return "\(clock) \(who)\(place)\(via): \(safe(text))"
        case "JOIN":
            return "\(clock) \(who) joined #\(safe(channel ?? "?"))"
        case "LEAVE":
            return "\(clock) \(who) left #\(safe(channel ?? "?"))"
        case "CHANNEL":
            let members = (data["members"] as? [Any])?.count ?? 0
            let closed = data["closed"] as? Bool == true ? " (closed)" : ""
            return "\(clock) \(who) announced #\(safe(channel ?? "?"))\(closed): \(members) member\(members == 1 ? "" : "s")"
        default:
            return nil
        }
    }

    /// `name (GUID)` of the head `sender_id` (`name@GUID`), else of `msg_data.node_id`.
    private static func sender(_ frame: [String: Any], _ data: [String: Any]) -> String {
        let address = (frame["sender_id"] as? String).flatMap(NodeAddress.init) ?? (data["node_id"] as? String).flatMap(NodeAddress.init)
        guard let address else { return "(unknown sender)" }
        return "\(address.name.map(safe) ?? "?") (\(address.id))"
    }

    /// `text` with every character a terminal would act on written as an escape instead: control
    /// characters (C0, DEL, C1: escape sequences, carriage returns, bells), line and paragraph
    /// separators, and the bidirectional overrides that can make a line read as something else.
    /// A newline becomes `\n`, so a message stays on one line.
    static func safe(_ text: String) -> String {
        var out = ""
        out.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if isUnsafe(scalar) {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    private static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: true  // C0, DEL, C1 (0x9B is a one-byte CSI)
        case 0x2028, 0x2029: true  // line and paragraph separator
        case 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0x061C: true  // bidirectional marks and overrides
        default: false
        }
    }

    private static let clockFormat = Date.VerbatimFormatStyle(
        format: "\(hour: .twoDigits(clock: .twentyFourHour, hourCycle: .zeroBased)):\(minute: .twoDigits):\(second: .twoDigits)",
        timeZone: .current, calendar: Calendar(identifier: .gregorian))
}
