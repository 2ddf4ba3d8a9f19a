import ArgumentParser
import PTPProtocol

/// `ptpchat`: a small command-line client of a ptpchat relay, for tests and operators.
@main
struct PTPChat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ptpchat",
        abstract: "A small ptpchat client: send and receive chat messages through a relay, and show its routes.",
        discussion: """
            Exit status: 0 success (for send: delivered, or stored by the relay for an offline \
            recipient), \(ClientError.refusedExitCode) refused by the relay (NACK), \
            \(ClientError.connectionExitCode) connection failed or lost, \(ClientError.timeoutExitCode) timed out, \
            64 bad usage.
            """,
        version: ProjectVersion.number,
        subcommands: [Listen.self, Send.self, Routes.self, Punch.self, Bench.self]
    )
}
