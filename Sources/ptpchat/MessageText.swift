import Foundation

/// The text of a chat `message`: SPEC.md says base64 of UTF-8, the existing public client sends
/// plain text (CLIENT-FRAMES.md). A value is read as base64 only when it is canonical base64 whose
/// bytes are UTF-8 text without control characters other than tab and line breaks; anything else
/// is plain text. (A short plain word can pass that test, e.g. "Test": such a message reads as
/// its decoding. Senders that want certainty use base64, as SPEC.md says.)
enum MessageText {
    enum Encoding: String {
        case base64
        case plain
    }

    static func decode(_ value: String) -> (text: String, encoding: Encoding) {
        guard !value.isEmpty, value.utf8.count % 4 == 0,
            let data = Data(base64Encoded: value), data.base64EncodedString() == value,
            let text = String(data: data, encoding: .utf8),
            !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control && !"\t\n\r".unicodeScalars.contains($0) })
        else { return (value, .plain) }
        return (text, .base64)
    }

    /// The text to show a person: as `decode`, but base64 whose decoding is UTF-8 with more printable
    /// characters than control characters is decoded too (its escape sequences are then made safe
    /// by `ReadableLine.safe`): `ptpchat send` base64-encodes whatever it is given. "AAAA" (three
    /// NULs) stays as written.
    static func display(_ value: String) -> String {
        let (text, encoding) = decode(value)
        guard encoding == .plain, !value.isEmpty, value.utf8.count % 4 == 0,
            let data = Data(base64Encoded: value), data.base64EncodedString() == value,
            let decoded = String(data: data, encoding: .utf8)
        else { return text }
        let controls = decoded.unicodeScalars.filter { $0.properties.generalCategory == .control }.count
        return decoded.unicodeScalars.count - controls > controls ? decoded : text
    }
}
