import ArgumentParser
import Foundation
import PTPProtocol

@main
struct RelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ptpchat-relay",
        abstract: "The ptpchat relay: entry point, relay and mesh member of the ptpchat network.",
        version: ProjectVersion.number,
        subcommands: [ServeCommand.self, MailboxCommand.self, CheckConfigCommand.self],
        defaultSubcommand: ServeCommand.self
    )

    /// Parse errors in one line (`ptpchat-relay: <reason>`), help and version as usual.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                exit(withError: error)
            }
            let message = fullMessage(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            let trimmed = message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message
            FileHandle.standardError.write(Data("ptpchat-relay: \(trimmed)\n".utf8))
            Foundation.exit(code.rawValue)
        }
    }
}

/// Prints `ptpchat-relay: <reason>` and exits with status 1.
func fail(_ reason: String) -> Never {
    FileHandle.standardError.write(Data("ptpchat-relay: \(reason)\n".utf8))
    exit(1)
}
