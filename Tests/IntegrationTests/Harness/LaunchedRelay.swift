#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A `ptpchat-relay` started with an environment chosen by the test: listening on a
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
    let child: ChildProcess

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
        child = try ChildProcess(
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
