#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A child process started with an environment chosen by the test (`NOTIFY_SOCKET`,
/// `WATCHDOG_USEC`, `JOURNAL_STREAM`, ...), its stdout and stderr in files. `ChildProcess` passes
/// the test's own environment; this one starts from a minimal one so that nothing from the
/// test runner (a `LOG_LEVEL`, a `NOTIFY_SOCKET`, `LISTEN_FDS`) reaches the relay by accident.
final class LaunchedProcess {
    let name: String
    let process = Process()
    let stdoutURL: URL
    let stderrURL: URL

    /// The variables every launched process gets: what a service manager would pass.
    static var baseEnvironment: [String: String] {
        let own = ProcessInfo.processInfo.environment
        var environment: [String: String] = ["LANG": "C.UTF-8"]
        for key in ["PATH", "HOME", "TMPDIR", "LD_LIBRARY_PATH"] {
            if let value = own[key] { environment[key] = value }
        }
        return environment
    }

    init(executable: URL, arguments: [String], environment: [String: String], directory: URL, name: String) throws {
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
        process.environment = Self.baseEnvironment.merging(environment) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }
    var stderrBytes: [UInt8] { (try? [UInt8](Data(contentsOf: stderrURL))) ?? [] }

    /// Complete lines of stderr (the text after the last newline is still being written).
    var stderrLines: [String] { ChildProcess.completeLines(stderr) }

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

    /// SIGTERM, then SIGKILL if it has not ended within `grace` seconds.
    func stop(grace: Double = 3) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        if waitForEnding(timeout: grace) == nil {
            kill(process.processIdentifier, SIGKILL)
            _ = waitForEnding(timeout: 5)
        }
    }

    /// The last `count` lines of stdout and stderr, for failure messages.
    func outputTail(_ count: Int = 60) -> String {
        let out = stdout
        let err = stderr.split(separator: "\n", omittingEmptySubsequences: false).suffix(count).joined(separator: "\n")
        return (out.isEmpty ? "" : "stdout:\n\(out)\n") + "stderr:\n\(err)"
    }
}

/// A `ptpchat-relay` started by `LaunchedProcess` with the test's environment: listening on a
/// free loopback port, a fresh data folder and node id, its configuration in a file the test may
/// rewrite before a SIGHUP. Unlike `RelayProcess` it returns at once: the test decides what to
/// wait for (a notification, the port).
final class LaunchedRelay {
    let port: UInt16
    let nodeID: String
    let name = "relay"
    let directory: URL
    let dataDirectory: URL
    /// The `--config` file (always given, so that a reload has a file to read).
    let configFile: URL
    /// The stats endpoint's port, when the test asked for one.
    let statsPort: UInt16?
    let child: LaunchedProcess

    var address: String { "\(name)@\(nodeID)" }
    var endpoint: String { "127.0.0.1:\(port)" }

    /// Starts `ptpchat-relay --listen 127.0.0.1:PORT --data-dir DIR --node-id ID --config FILE`,
    /// with `--log-level LEVEL` when `logLevel` is given (it then wins over the file on reloads too),
    /// `--stats 127.0.0.1:STATS` when `stats` is true (else `--stats off`), then `arguments`.
    init(
        in directory: URL, config: String = "", logLevel: String? = "debug", stats: Bool = false, arguments: [String] = [],
        environment: [String: String] = [:], dataDirectory: URL? = nil, nodeID: String? = nil
    ) throws {
        self.directory = directory
        port = try Sockets.freePort()
        self.nodeID = nodeID ?? Ids.make()
        let dataDir = dataDirectory ?? directory.appendingPathComponent("data")
        self.dataDirectory = dataDir
        try FileManager.default.createDirectory(at: dataDir, withIntermediateDirectories: true)
        configFile = directory.appendingPathComponent("relay.yaml")
        try config.write(to: configFile, atomically: true, encoding: .utf8)
        statsPort = stats ? try Sockets.freePort() : nil
        var all = ["--listen", "127.0.0.1:\(port)", "--data-dir", dataDir.path, "--node-id", self.nodeID, "--config", configFile.path]
        if let logLevel { all += ["--log-level", logLevel] }
        all += ["--stats", statsPort.map { "127.0.0.1:\($0)" } ?? "off"]
        all += arguments
        child = try LaunchedProcess(
            executable: try Binaries.path("ptpchat-relay"), arguments: all, environment: environment, directory: directory, name: "relay")
    }

    var isListening: Bool {
        guard let fd = try? Sockets.connected(port: port) else { return false }
        Sockets.closeSocket(fd)
        return true
    }

    /// Polls the relay port until it accepts a connection; throws with the relay's output if the
    /// relay ends or the deadline passes first.
    func waitUntilListening(timeout: Double = RelayProcess.startTimeout) throws {
        let deadline = Deadline(timeout)
        while !isListening {
            if !child.isRunning {
                throw Sockets.Failure(
                    description: "the relay ended (\(child.ending ?? "?")) before listening on \(endpoint):\n\(child.outputTail())")
            }
            if deadline.hasPassed {
                throw Sockets.Failure(description: "the relay did not listen on \(endpoint) within \(timeout) s:\n\(child.outputTail())")
            }
            usleep(10_000)
        }
    }

    /// Replaces the configuration file's text (for a reload).
    func writeConfig(_ text: String) throws {
        try text.write(to: configFile, atomically: true, encoding: .utf8)
    }
}
