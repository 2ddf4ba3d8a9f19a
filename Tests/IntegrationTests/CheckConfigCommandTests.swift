import Foundation
import XCTest

/// `ptpchat-relay check-config FILE` (as `nginx -t`) and `--version`, run as an operator would.
final class CheckConfigCommandTests: RelayTestCase {
    private struct Run {
        var status: Int32?
        var stdout: String
        var stderr: String
        var stdoutLines: [String] { stdout.split(separator: "\n").map(String.init) }
        var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
    }

    private func relayCommand(_ arguments: [String], environment: [String: String]? = nil) throws -> Run {
        let child = try runRelayBinary(arguments, environment: environment, name: "relay-command-\(Ids.make().prefix(8))")
        let status = child.waitForExit(timeout: expectWithin)
        return Run(status: status, stdout: child.stdout, stderr: child.stderr)
    }

    private func write(_ yaml: String) throws -> String {
        let url = try directory.appendingPathComponent("relay-\(Ids.make().prefix(8)).yaml")
        try yaml.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// The row of `key` in the settings table, split into its columns.
    private func row(_ key: String, in run: Run) -> [String]? {
        guard let line = run.stdoutLines.first(where: { $0.hasPrefix(key + " ") }) else { return nil }
        return line.components(separatedBy: "  ").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func testAValidFilePrintsTheEffectiveSettingsWithTheirSourceAndExitsZero() throws {
        let file = try write("relay:\n  name: alpha\nlimits:\n  max_frame_bytes: 65536\nmesh:\n  key: \"a-secret-key-of-32-bytes-length!\"\n")
        let run = try relayCommand(["check-config", file], environment: ["LIMITS_FLOOD_BURST": "7"])
        XCTAssertEqual(run.status, 0, "stdout:\n\(run.stdout)\nstderr:\n\(run.stderr)")
        XCTAssertEqual(run.stderr, "", "nothing on stderr when valid")
        XCTAssertTrue(run.stdoutLines.first?.contains("is valid") ?? false, run.stdout)
        XCTAssertEqual(row("relay.name", in: run), ["relay.name", "alpha", "file", "needs restart"])
        XCTAssertEqual(row("limits.max_frame_bytes", in: run), ["limits.max_frame_bytes", "65536", "file", "applies"])
        XCTAssertEqual(row("limits.flood_burst", in: run), ["limits.flood_burst", "7", "environment LIMITS_FLOOD_BURST", "applies"])
        XCTAssertEqual(row("relay.listen", in: run), ["relay.listen", "[0.0.0.0:9001]", "default", "needs restart"])
        XCTAssertEqual(row("mesh.key", in: run)?.dropFirst().first, "(set, not shown)")
        XCTAssertFalse(run.stdout.contains("a-secret-key"), "a secret in the output")
    }

    func testEveryProblemIsOneLineOnStandardErrorAndTheExitIsOne() throws {
        let file = try write("relay:\n  nam: x\n  threads: -3\nlimits:\n  max_frame_byte: 5\ntimeouts:\n  idle: soon\n")
        let run = try relayCommand(["check-config", file])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stdout, "", "no settings table when the file is not valid")
        let lines = run.stderrLines
        XCTAssertEqual(lines.count, 4, run.stderr)
        XCTAssertTrue(lines.allSatisfy { $0.hasPrefix("ptpchat-relay: ") }, run.stderr)
        XCTAssertTrue(lines.contains { $0.contains("'relay.nam'") && $0.contains("did you mean 'relay.name'") }, run.stderr)
        XCTAssertTrue(lines.contains { $0.contains("'limits.max_frame_byte'") }, run.stderr)
        XCTAssertTrue(lines.contains { $0.contains("'-3'") && $0.contains("relay.threads") }, run.stderr)
        XCTAssertTrue(lines.contains { $0.contains("'soon'") && $0.contains("timeouts.idle") }, run.stderr)
    }

    func testTLSFilesAreLoadedAsAtStart() throws {
        let certificates = try TestCertificates(in: try directory)
        let relay = try certificates.relay()
        let good = try write("tls:\n  listen: [\"127.0.0.1:9443\"]\n  cert: \(relay.cert)\n  key: \(relay.key)\n")
        XCTAssertEqual(try relayCommand(["check-config", good]).status, 0)

        let missing = try write("tls:\n  listen: [\"127.0.0.1:9443\"]\n  cert: \(relay.cert).gone\n  key: \(relay.key)\n")
        let run = try relayCommand(["check-config", missing])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderrLines.count, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("TLS files cannot be used"), run.stderr)
    }

    func testAnUnreadableFileIsOneProblem() throws {
        let run = try relayCommand(["check-config", "/nonexistent/relay.yaml"])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderrLines, ["ptpchat-relay: cannot read configuration file '/nonexistent/relay.yaml': no such file"])
    }

    func testTheShippedConfigurationIsValid() throws {
        let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/relay.yaml").path
        let run = try relayCommand(["check-config", shipped])
        XCTAssertEqual(run.status, 0, run.stderr)
        let rows = run.stdoutLines.dropFirst(2).map { line in line.components(separatedBy: "  ").filter { !$0.isEmpty } }
        XCTAssertTrue(rows.allSatisfy { $0.count == 4 }, "four columns in every row:\n\(run.stdout)")
        let keys = rows.compactMap(\.first)
        XCTAssertEqual(Set(keys).count, keys.count, "a key listed twice")
        for key in ["relay.listen", "stats.listen", "limits.max_connections", "store.max_bytes", "routing.to_clients", "mesh.peers", "tls.cert"] {
            XCTAssertTrue(keys.contains(key), "\(key) missing:\n\(run.stdout)")
        }
    }

    func testVersion() throws {
        let run = try relayCommand(["--version"])
        XCTAssertEqual(run.status, 0)
        XCTAssertTrue(run.stdout.range(of: #"^\d+\.\d+\.\d+\n$"#, options: .regularExpression) != nil, "--version: \(run.stdout)")
    }
}
