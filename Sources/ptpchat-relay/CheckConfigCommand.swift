import ArgumentParser
import Foundation
import RelayConfig
import RelayCore

/// `ptpchat-relay check-config FILE`, as `nginx -t`: reads the configuration as the relay would at
/// start (the file, then the environment variables over it) and loads its TLS files. Valid: the
/// effective settings on standard output, exit 0. Not: one line per problem on standard error,
/// exit 1.
struct CheckConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check a configuration file and print the settings the relay would run with.",
        discussion: """
            Environment variables named after keys (LIMITS_MAX_FRAME_BYTES, ...) apply over the file, \
            as when the relay starts. Exit status 0: valid; 1: one line per problem on standard error.
            """
    )

    @Argument(help: "The YAML configuration file (keys in docs/configuration.md); none: defaults and environment only.")
    var file: String?

    func run() async throws {
        let check = await ConfigurationLoader.check(file: file)
        var problems = check.problems.map(\.description)
        if problems.isEmpty, let problem = RelayServer.tlsFilesProblem(check.configuration.tls) {
            problems.append("TLS files cannot be used: \(problem)")
        }
        guard problems.isEmpty else {
            for problem in problems {
                FileHandle.standardError.write(Data("ptpchat-relay: \(problem)\n".utf8))
            }
            throw ExitCode.failure
        }
        print("configuration \(file.map { "'\($0)'" } ?? "(defaults and environment)") is valid; the relay would run with:")
        print(Self.table(ConfigurationLoader.settings(of: check.configuration), sources: check.sources), terminator: "")
    }

    /// Aligned columns: key, value, where it comes from, what a reload (SIGHUP) does with it.
    static func table(_ settings: [ConfigurationLoader.Setting], sources: [String: String]) -> String {
        let rows = [["KEY", "VALUE", "FROM", "ON RELOAD"]] + settings.map {
            [$0.key, $0.value, sources[$0.key] ?? "default", $0.appliesOnReload ? "applies" : "needs restart"]
        }
        var widths = [Int](repeating: 0, count: 3)
        for row in rows {
            for column in 0..<3 { widths[column] = max(widths[column], row[column].count) }
        }
        return rows.map { row in
            (0..<3).map { row[$0].padding(toLength: widths[$0] + 2, withPad: " ", startingAt: 0) }.joined() + row[3] + "\n"
        }.joined()
    }
}
