import Foundation

/// Output of the client: stdout carries only what a command produces (the received messages, the
/// outcome of a send, the routes, a punch report), one line or one JSON object each; every
/// diagnostic goes to stderr. Both are written unbuffered, so each line is out when the call returns.
enum Console {
    /// Writes `line` and a newline to stdout in one write.
    static func output(_ line: some Sequence<UInt8>) {
        var data = Data(line)
        data.append(UInt8(ascii: "\n"))
        write(data, to: .standardOutput)
    }

    /// Writes `text` and a newline to stderr.
    static func diagnostic(_ text: String) {
        write(Data((text + "\n").utf8), to: .standardError)
    }

    private static func write(_ data: Data, to handle: FileHandle) {
        do {
            try handle.write(contentsOf: data)
        } catch {
            // Nowhere left to report it: stdout or stderr is gone (a closed pipe).
        }
    }
}
