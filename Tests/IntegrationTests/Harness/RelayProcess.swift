import Foundation
import XCTest

/// The real `ptpchat-relay` binary, listening on a free loopback port with a fresh data folder.
final class RelayProcess {
    let port: UInt16
    /// The relay's node id (given with `--node-id`) and the name it writes (`relay`).
    let nodeID: String
    let name = "relay"
    let directory: URL
    /// The relay's `--data-dir`: `directory/data`, or the one given (a restart on the same store).
    let dataDirectory: URL
    let child: ChildProcess

    var address: String { "\(name)@\(nodeID)" }
    var endpoint: String { "127.0.0.1:\(port)" }
    var log: String { child.stdout + child.stderr }

    /// How long the relay may take to start listening.
    static let startTimeout: Double = 20

    /// Starts the relay: `--listen 127.0.0.1:PORT --data-dir DIR --node-id ID --log-level debug`,
    /// with `config` (YAML) written to a file and passed as `--config`, then `arguments`.
    /// Returns once the port accepts connections. `dataDirectory` and `nodeID` (default: a fresh
    /// folder `directory/data` and a fresh id) let a new process take over an earlier relay's store.
    init(
        config: String? = nil, arguments: [String] = [], in directory: URL, dataDirectory: URL? = nil, nodeID: String? = nil,
        port fixedPort: UInt16? = nil
    ) throws {
        self.directory = directory
        port = try fixedPort ?? Sockets.freePort()
        self.nodeID = nodeID ?? Ids.make()
        let dataDir = dataDirectory ?? directory.appendingPathComponent("data")
        self.dataDirectory = dataDir
        try FileManager.default.createDirectory(at: dataDir, withIntermediateDirectories: true)
        var all = ["--listen", "127.0.0.1:\(port)", "--data-dir", dataDir.path, "--node-id", self.nodeID, "--log-level", "debug"]
        if let config {
            let file = directory.appendingPathComponent("relay.yaml")
            try config.write(to: file, atomically: true, encoding: .utf8)
            all += ["--config", file.path]
        }
        // Relays of several tests may run at once: no stats endpoint on the default port unless
        // a test asks for one.
        if !arguments.contains("--stats") && !(config ?? "").contains("stats:") {
            all += ["--stats", "off"]
        }
        all += arguments
        child = try ChildProcess(executable: try Binaries.path("ptpchat-relay"), arguments: all, directory: directory, name: "relay")
        try waitUntilListening()
    }

    /// Polls the port with connection attempts until one succeeds, the process ends, or the
    /// start timeout passes.
    private func waitUntilListening() throws {
        let deadline = Deadline(Self.startTimeout)
        while true {
            if let fd = try? Sockets.connected(port: port) {
                Sockets.closeSocket(fd)
                return
            }
            if !child.isRunning {
                throw Sockets.Failure(
                    description: "the relay exited with status \(child.process.terminationStatus) before listening on \(endpoint); "
                        + "its output:\n\(log)")
            }
            if deadline.hasPassed {
                child.stop()
                throw Sockets.Failure(description: "the relay did not listen on \(endpoint) within \(Self.startTimeout) s; its output:\n\(log)")
            }
            usleep(10_000)
        }
    }

    func stop() {
        child.stop()
    }

    /// The last `count` lines of the relay's output, for failure messages.
    func logTail(_ count: Int = 60) -> String {
        log.split(separator: "\n", omittingEmptySubsequences: false).suffix(count).joined(separator: "\n")
    }
}
