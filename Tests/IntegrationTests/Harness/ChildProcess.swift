#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A child process whose stdout and stderr go to files, so the test can poll them without pipe
/// buffers filling up or a reader thread. With `environment` it starts from a minimal environment
/// (`baseEnvironment` plus those variables) instead of the test's own, so that nothing from the
/// test runner (a `LOG_LEVEL`, a `NOTIFY_SOCKET`, `LISTEN_FDS`) reaches it by accident.
final class ChildProcess {
    let name: String
    let process = Process()
    let stdoutURL: URL
    let stderrURL: URL

    /// The variables every process started with an `environment` gets: what a service manager
    /// would pass.
    static var baseEnvironment: [String: String] {
        let own = ProcessInfo.processInfo.environment
        var environment: [String: String] = ["LANG": "C.UTF-8"]
        for key in ["PATH", "HOME", "TMPDIR", "LD_LIBRARY_PATH"] {
            if let value = own[key] { environment[key] = value }
        }
        return environment
    }

    /// Starts `executable` with `arguments`; the output files go into `directory`. With `input` its
    /// stdin is that text (from a file), else /dev/null.
    init(
        executable: URL, arguments: [String], environment: [String: String]? = nil, input: String? = nil, directory: URL, name: String
    ) throws {
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
        if let environment {
            process.environment = Self.baseEnvironment.merging(environment) { $1 }
        }
        process.standardOutput = stdout
        process.standardError = stderr
        guard let input else {
            process.standardInput = FileHandle.nullDevice
            try process.run()
            return
        }
        let inputURL = directory.appendingPathComponent("\(name).stdin")
        try Data(input.utf8).write(to: inputURL)
        let stdin = try FileHandle(forReadingFrom: inputURL)
        defer { try? stdin.close() }
        process.standardInput = stdin
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

    var pid: Int32 { process.processIdentifier }
    var stderrBytes: [UInt8] { (try? [UInt8](Data(contentsOf: stderrURL))) ?? [] }

    /// Sends `signal` to the process.
    func signal(_ number: Int32) {
        if process.isRunning { kill(process.processIdentifier, number) }
    }

    /// How the process ended: `exit 0`, `exit 1`, `signal 9`; nil while it runs.
    var ending: String? {
        guard !process.isRunning else { return nil }
        switch process.terminationReason {
        case .exit: return "exit \(process.terminationStatus)"
        case .uncaughtSignal: return "signal \(process.terminationStatus)"
        @unknown default: return "status \(process.terminationStatus)"
        }
    }

    /// How the process ended, once it ended within `timeout` seconds; nil if it still runs.
    func waitForEnding(timeout: Double) -> String? {
        guard Deadline.poll(timeout: timeout, { !process.isRunning }) else { return nil }
        process.waitUntilExit()
        return ending
    }

    /// Polls stderr for a complete line containing every one of `texts`, after the first `skip`
    /// lines. Returns the line, or nil when the deadline passed or the process ended without it.
    func waitForStderrLine(containing texts: [String], after skip: Int = 0, timeout: Double) -> String? {
        var found: String?
        _ = Deadline.poll(timeout: timeout) {
            found = stderrLines.dropFirst(skip).first { line in texts.allSatisfy { line.contains($0) } }
            return found != nil || !process.isRunning
        }
        return found ?? stderrLines.dropFirst(skip).first { line in texts.allSatisfy { line.contains($0) } }
    }

    func waitForStderrLine(containing text: String, after skip: Int = 0, timeout: Double) -> String? {
        waitForStderrLine(containing: [text], after: skip, timeout: timeout)
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

    /// The last `count` lines of stdout and stderr, for failure messages.
    func outputTail(_ count: Int = 60) -> String {
        let out = stdout
        let err = stderr.split(separator: "\n", omittingEmptySubsequences: false).suffix(count).joined(separator: "\n")
        return (out.isEmpty ? "" : "stdout:\n\(out)\n") + "stderr:\n\(err)"
    }
}
