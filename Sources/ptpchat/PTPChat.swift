import ArgumentParser
import PTPProtocol

/// `ptpchat`: a small command-line client of a ptpchat relay, for tests and operators.
@main
struct PTPChat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ptpchat",
        abstract: "A minimal ptpchat client: receive or send chat messages through a relay.",
        discussion: """
            Exit status: 0 success, \(ClientError.refusedExitCode) refused by the relay (NACK), \
            \(ClientError.connectionExitCode) connection failed or lost, \(ClientError.timeoutExitCode) timed out, \
            64 bad usage.
            """,
        version: ProjectVersion.number,
        subcommands: [Listen.self, Send.self, Punch.self, Bench.self]
    )
}
