#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A child process whose stdout and stderr go to files, so the test can poll them without pipe
/// buffers filling up or a reader thread.
final class ChildProcess {
    let name: String
    let process = Process()
    let stdoutURL: URL
    let stderrURL: URL

    /// Starts `executable` with `arguments`; the output files go into `directory`.
    init(executable: URL, arguments: [String], directory: URL, name: String) throws {
        self.name = name
        stdoutURL = directory.appendingPathComponent("\(name).stdout")
        stderrURL = directory.appendingPathComponent("\(name).stderr")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        let stdout = try FileHandle(forWritingTo: stdoutURL)
        let stderr = try FileHandle(forWritingTo: stderrURL)
        defer {
            try? stdout.close()
            try? stderr.close()
        }
        process.executableURL = executable
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
    }

    var isRunning: Bool { process.isRunning }

    var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// Complete lines of stdout (the text after the last newline is still being written).
    var stdoutLines: [String] { Self.completeLines(stdout) }
    var stderrLines: [String] { Self.completeLines(stderr) }

    static func completeLines(_ text: String) -> [String] {
        var lines = text.components(separatedBy: "\n")
        lines.removeLast()
        return lines
    }

    /// The exit status once the process ended within `timeout` seconds, else nil.
    func waitForExit(timeout: Double) -> Int32? {
        guard Deadline.poll(timeout: timeout, { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }

    /// Polls stderr for a complete line containing `text`.
    func waitForStderrLine(containing text: String, timeout: Double) -> String? {
        var found: String?
        _ = Deadline.poll(timeout: timeout) {
            found = stderrLines.first { $0.contains(text) }
            return found != nil || !process.isRunning
        }
        return found ?? stderrLines.first { $0.contains(text) }
    }

    /// Polls stdout until it has at least `count` complete lines.
    func waitForStdoutLines(_ count: Int, timeout: Double) -> [String] {
        var lines: [String] = []
        _ = Deadline.poll(timeout: timeout) {
            lines = stdoutLines
            return lines.count >= count
        }
        return lines
    }

    /// SIGTERM, then SIGKILL if it has not ended within `grace` seconds.
    func stop(grace: Double = 3) {
        guard process.isRunning else { return }
        process.terminate()
        if waitForExit(timeout: grace) == nil {
            kill(process.processIdentifier, SIGKILL)
            _ = waitForExit(timeout: 5)
        }
    }
}
