import Dispatch
import Foundation
import NIOCore
import NIOPosix
import PTPBench
import PTPProtocol
import PTPPunch
import RelayTLS

/// Runs one load test: connects every connection (spread over `threads` event loops), waits until
/// the relay bound each one, sends until the deadline, the message budget or Ctrl-C, drains, and
/// sums up what the loops counted.
struct BenchRunner {
    var endpoint: Endpoint
    var tls: ClientTLS?
    var shape: BenchShape
    var threads: Int
    /// Called about 5 times a second with the line for the progress bar; nil: no progress.
    var progress: (@Sendable (String) -> Void)?

    static let handshakeTimeout: Duration = .seconds(10)

    func run() async throws -> BenchSummary {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        do {
            let summary = try await run(on: group)
            try? await group.shutdownGracefully()
            return summary
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private func run(on group: MultiThreadedEventLoopGroup) async throws -> BenchSummary {
        let control = RunControl()
        let loops = Array(group.makeIterator())
        let states = loops.map { LoopState(eventLoop: $0, control: control) }
        let runID = UInt16.random(in: 0...UInt16.max)
        let channelID = GUID.random()
        let timestamp = Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        let identities = (0..<shape.connections).map { SenderTag(NodeAddress(id: .random(), name: "bench\($0)")) }
        let pattern = shape.pattern
        let count = shape.connections
        let senders = pattern.senderCount(of: count)

        // Connect every connection at once; each says HELLO as soon as it is up.
        var ready: [EventLoopFuture<Channel>] = []
        var rank = 0
        for index in 0..<count {
            let peer = pattern.peer(of: index, count: count)
            var budget: UInt64 = 0
            if peer != nil {
                budget = BenchShape.budget(messages: shape.messages, senders: senders, rank: rank)
                rank += 1
            }
            let setup = BenchConnection.Setup(
                index: index, identity: identities[index],
                message: peer.map {
                    MessageTemplate(from: identities[index], to: identities[$0].address.id, channelID: channelID, payload: shape.payload, timestamp: timestamp,
                        head: shape.head)
                },
                expectedSender: pattern.sender(to: index, count: count), budget: budget, window: shape.window, payload: shape.payload,
                run: runID, head: shape.head)
            ready.append(connect(setup, state: states[index % states.count]))
        }

        let channels = try await awaitBound(ready, group: group)
        // From here on the connections are up and bound: close them whatever happens next.
        do {
            let summary = try await load(states: states, control: control, senders: senders)
            control.closing.store(true, ordering: .relaxed)
            for channel in channels { channel.close(promise: nil) }
            return summary
        } catch {
            control.closing.store(true, ordering: .relaxed)
            for channel in channels { channel.close(promise: nil) }
            throw error
        }
    }

    private func connect(_ setup: BenchConnection.Setup, state: LoopState) -> EventLoopFuture<Channel> {
        let endpoint = endpoint
        let tls = tls
        let bootstrap = ClientBootstrap(group: state.eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try tls?.addHandlers(
                        to: channel, host: endpoint.host,
                        observer: TLSHandshakeObserver(failed: { Console.diagnostic("ptpchat bench: TLS handshake failed: \($0)") }))
                    try channel.pipeline.syncOperations.addHandler(BenchConnection(setup: setup, loop: state))
                }
            }
        return bootstrap.connect(host: endpoint.host, port: endpoint.port)
            .flatMapErrorThrowing { error -> Channel in
                throw ClientError.connectFailed(String(describing: error), endpoint: endpoint)
            }
            .flatMap { channel in
                do {
                    let handler = try channel.pipeline.syncOperations.handler(type: BenchConnection.self)
                    return handler.boundFuture.map { channel }
                } catch {
                    return channel.eventLoop.makeFailedFuture(
                        ClientError.connectionLost("the relay closed the connection before the handshake ended"))
                }
            }
    }

    /// Waits until the relay bound every connection; on any failure closes those that are up and
    /// throws the first failure, saying how many connections failed.
    private func awaitBound(_ ready: [EventLoopFuture<Channel>], group: EventLoopGroup) async throws -> [Channel] {
        let all = EventLoopFuture.whenAllComplete(ready, on: group.any())
        let results = try await withThrowingTaskGroup(of: [Result<Channel, any Error>]?.self) { tasks in
            tasks.addTask { try await all.get() }
            tasks.addTask {
                try await Task.sleep(for: Self.handshakeTimeout)
                return nil
            }
            defer { tasks.cancelAll() }
            return try await tasks.next() ?? nil
        }
        guard let results else {
            // Timed out: close whatever came up, and whatever comes up later.
            for future in ready { future.whenSuccess { $0.close(promise: nil) } }
            throw ClientError.timedOut("after \(Self.handshakeTimeout) waiting for the relay to accept \(ready.count) connections")
        }
        var channels: [Channel] = []
        var failures: [any Error] = []
        for result in results {
            switch result {
            case .success(let channel): channels.append(channel)
            case .failure(let error): failures.append(error)
            }
        }
        guard let first = failures.first else { return channels }
        for channel in channels { channel.close(promise: nil) }
        // None came up (nothing listens there, say): the first reason says it all.
        if failures.count == ready.count { throw first }
        let detail = (first as? ClientError).map(String.init(describing:)) ?? String(describing: first)
        throw ClientError.connectionLost(
            "\(failures.count) of \(ready.count) connections failed (\(detail)); a relay limits connections per client address "
                + "(limits.per_ip_connections, limits.per_ip_new_per_second)")
    }

    private func load(states: [LoopState], control: RunControl, senders: Int) async throws -> BenchSummary {
        let signals = InterruptWatch(control: control)
        defer { signals.stop() }

        let start = RunControl.now()
        let deadline = start + UInt64(shape.duration * 1e9)
        control.measureFrom.store(start + UInt64(shape.warmup * 1e9), ordering: .relaxed)
        control.sendingUntil.store(deadline, ordering: .relaxed)
        for state in states { state.eventLoop.execute { state.startSending() } }
        Console.diagnostic(
            "ptpchat bench: \(shape.connections) connections bound to \(endpoint); sending for up to \(shape.duration) s "
                + "or \(shape.messages) messages (Ctrl-C stops)")

        // The send phase: ends at the deadline, when every sender is done, or on Ctrl-C.
        let tick: Duration = progress == nil ? .milliseconds(10) : .milliseconds(200)
        while true {
            let now = RunControl.now()
            if control.interruptedAt.load(ordering: .relaxed) != 0 || now >= deadline { break }
            if control.finishedSenders.load(ordering: .relaxed) >= senders {
                control.stopSending(at: control.lastFinish.load(ordering: .relaxed))
                break
            }
            progress?(
                ProgressLine.render(
                    elapsed: Double(now - start) / 1e9, duration: shape.duration, sent: control.sent.load(ordering: .relaxed),
                    limit: shape.messages, acked: control.acked.load(ordering: .relaxed)))
            try? await Task.sleep(for: tick)
        }
        let sendEnd = min(control.sendingUntil.load(ordering: .relaxed), RunControl.now())
        control.stopSending(at: sendEnd)

        // The drain: wait (at most `drain` seconds) until every message sent was answered.
        let drainEnd = RunControl.now() + UInt64(shape.drain * 1e9)
        for state in states { state.eventLoop.execute { state.publish() } }
        while control.answered.load(ordering: .relaxed) < control.sent.load(ordering: .relaxed), RunControl.now() < drainEnd {
            try? await Task.sleep(for: .milliseconds(5))
        }

        var counters = BenchCounters()
        var delivery = LatencyHistogram()
        var ack = LatencyHistogram()
        var firstNackReason: String?
        for state in states {
            let snapshot = try await state.eventLoop.submit { state.snapshot() }.get()
            counters += snapshot.counters
            delivery.merge(snapshot.delivery)
            ack.merge(snapshot.ack)
            firstNackReason = firstNackReason ?? snapshot.firstNackReason
        }
        let sendSeconds = Double(sendEnd - start) / 1e9
        return BenchSummary(
            relay: endpoint.description, shape: shape, threads: threads, counters: counters, delivery: delivery, ack: ack,
            sendSeconds: sendSeconds, windowSeconds: max(0, sendSeconds - shape.warmup),
            interrupted: control.interruptedAt.load(ordering: .relaxed) != 0, firstNackReason: firstNackReason)
    }
}

/// Ctrl-C during the send phase: the first stops sending (the summary so far follows after a short
/// drain), a second one ends the program at once.
final class InterruptWatch {
    private let source: any DispatchSourceSignal

    init(control: RunControl) {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler {
            if !control.interrupt() { exit(130) }
        }
        source.resume()
    }

    func stop() {
        source.cancel()
        signal(SIGINT, SIG_DFL)
    }
}
