import Foundation

/// The bench's progress bar: one line on stdout, rewritten in place (carriage return, erase line).
/// Only used when stdout is a terminal.
enum ProgressBar {
    /// Shows `line`, or erases the bar with nil.
    static func show(_ line: String?) {
        write("\r\u{1B}[K" + (line ?? ""))
    }

    /// Writes `text` to stdout unbuffered (as `Console` does), so the bar and the summary never interleave.
    static func write(_ text: String) {
        do {
            try FileHandle.standardOutput.write(contentsOf: Data(text.utf8))
        } catch {
            // stdout is gone (a closed pipe): nothing to show it on.
        }
    }
}
