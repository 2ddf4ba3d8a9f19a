import ArgumentParser
import Foundation
import NIOCore
import PTPBench
import RelayTLS

/// `ptpchat bench`: a load test of a live relay, like `nats bench`.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load-test a relay: many connections send MESSAGEs to each other and count the ACKs.",
        discussion: """
            Opens --conns connections (spread over --threads event loops), each a node of its own, \
            waits until the relay bound them all, then every sending connection keeps --window \
            MESSAGEs of --payload base64 characters outstanding to its peer (--pattern pair: 2i and \
            2i+1 send to each other; oneway: 2i to 2i+1; ring: i to i+1), as ../shared/bench's \
            relay-load does. Recipients ACK every MESSAGE; the relay ACKs back to the sender. The run \
            ends after --duration seconds or once --messages were sent and answered, whichever comes \
            first; Ctrl-C ends it early (a second Ctrl-C at once). Then it waits up to --drain seconds \
            for outstanding answers and prints a summary: delivered messages per second, latency \
            percentiles from an HDR histogram (send to delivery, and send to the relay's ACK), and \
            what was lost (sent, never delivered), unACKed or refused. A progress bar is shown when \
            stdout is a terminal. A relay's default limits (200 messages/s per node, 64 connections \
            per address) cap a load test: raise them for the relay you measure (README).

            Exit status: 0 every message delivered and ACKed, 1 messages lost, unACKed or refused, \
            or a connection broke, \(ClientError.connectionExitCode) the connections could not be \
            made or bound, \(ClientError.timeoutExitCode) the handshakes timed out, 130 interrupted \
            (after the summary).
            """
    )

    @Option(name: .long, help: ArgumentHelp("The relay to load.", valueName: "host:port"))
    var relay: Endpoint

    @Option(help: ArgumentHelp("Connections (nodes) to open.", valueName: "n"))
    var conns: Int = 10

    @Option(help: ArgumentHelp("Who sends to whom: pair, oneway or ring.", valueName: "pattern"))
    var pattern: BenchPattern = .pair

    @Option(help: ArgumentHelp("MESSAGEs a sender keeps outstanding (un-ACKed) at most.", valueName: "w"))
    var window: Int = 16

    @Option(help: ArgumentHelp("Base64 characters of each message's text (at least 16: the send time).", valueName: "bytes"))
    var payload: Int = 64

    @Option(help: ArgumentHelp("Seconds to send for at most.", valueName: "seconds"))
    var duration: Double = 10

    @Option(help: ArgumentHelp("MESSAGEs to send at most, over all senders.", valueName: "n"))
    var messages: UInt64 = 1_000_000

    @Option(help: ArgumentHelp("Seconds at the start left out of the rates and latencies.", valueName: "seconds"))
    var warmup: Double = 0

    @Option(help: ArgumentHelp("Seconds to wait for outstanding answers after sending stopped.", valueName: "seconds"))
    var drain: Double = 2

    @Option(
        help: ArgumentHelp(
            "The head of the bench's own frames: spec (msg_type, ttl, flood, msg_data: SPEC.md's frame, as relay-load sends) "
                + "or client (also msg_id, sender_id, target_id, as ptpchat send writes: about 120 bytes more a frame).",
            valueName: "head"))
    var head: BenchFrameHead = .spec

    @Option(help: ArgumentHelp("Event loop threads (default: one per core).", valueName: "n"))
    var threads: Int = System.coreCount

    @Flag(help: "Print the summary as one JSON object.")
    var json = false

    @Flag(name: .customLong("tls"), help: "Speak TLS to the relay (its certificate is verified against --ca, else the system's roots).")
    var useTLS = false

    @Option(help: ArgumentHelp("CA certificates (PEM) to verify the relay's certificate with.", valueName: "file"))
    var ca: String?

    func validate() throws {
        guard (2...19_000).contains(conns) else { throw ValidationError("--conns must be 2 to 19000") }
        guard pattern.senderCount(of: conns) > 0 else { throw ValidationError("--pattern \(pattern) needs more connections") }
        guard (1...65_536).contains(window) else { throw ValidationError("--window must be 1 to 65536") }
        guard (BenchShape.minimumPayload...(512 * 1024)).contains(payload) else {
            throw ValidationError("--payload must be \(BenchShape.minimumPayload) to \(512 * 1024) bytes")
        }
        guard duration > 0, duration <= 86_400 else { throw ValidationError("--duration must be more than 0 and at most 86400 seconds") }
        guard messages > 0 else { throw ValidationError("--messages must be at least 1") }
        guard warmup >= 0, warmup < duration else { throw ValidationError("--warmup must be at least 0 and less than --duration") }
        guard drain >= 0, drain <= 60 else { throw ValidationError("--drain must be 0 to 60 seconds") }
        guard (1...256).contains(threads) else { throw ValidationError("--threads must be 1 to 256") }
        if ca != nil && !useTLS { throw ValidationError("--ca needs --tls") }
    }

    func run() async throws {
        let shape = BenchShape(
            connections: conns, pattern: pattern, window: window, payload: payload, duration: duration, messages: messages,
            warmup: warmup, drain: drain, head: head)
        let showProgress = !json && isatty(STDOUT_FILENO) == 1
        let summary: BenchSummary
        do {
            var tls: ClientTLS?
            if useTLS {
                do {
                    tls = try ClientTLS(files: ClientTLSFiles(trustRoots: ca, certificateChain: nil, privateKey: nil))
                } catch {
                    throw ClientError.connectFailed("TLS: \(error)", endpoint: relay)
                }
            }
            var progress: (@Sendable (String) -> Void)?
            if showProgress { progress = { @Sendable line in ProgressBar.show(line) } }
            let runner = BenchRunner(endpoint: relay, tls: tls, shape: shape, threads: threads, progress: progress)
            summary = try await runner.run()
        } catch let error as ClientError {
            Console.diagnostic("ptpchat bench: \(error)")
            throw ExitCode(error.exitCode)
        }
        if showProgress { ProgressBar.show(nil) }
        ProgressBar.write(json ? summary.json() : summary.table())
        if summary.interrupted { throw ExitCode(130) }
        if !summary.isClean { throw ExitCode(1) }
    }
}

extension BenchPattern: ExpressibleByArgument {}
extension BenchFrameHead: ExpressibleByArgument {}
