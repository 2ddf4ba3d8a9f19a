import ArgumentParser
import Foundation
import Logging
import NIOCore
import PTPProtocol
import RelayConfig
import RelayCore
import RelayOps
import RelayStore

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the relay (the default when no subcommand is given)."
    )

    @Option(name: .long, help: "Address to accept nodes on, HOST:PORT (repeatable; default 0.0.0.0:9001).")
    var listen: [String] = []

    @Option(name: .long, help: "Directory for the relay's persistent state (default ./ptpchat-data).")
    var dataDir: String?

    @Option(name: .long, help: "The relay's node id (GUID); by default generated once and kept in the data directory.")
    var nodeId: String?

    @Option(name: .long, help: "The relay's display name, letters and digits only (default relay).")
    var name: String?

    @Option(name: .long, help: "Event loop threads (default: one per core).")
    var threads: Int?

    @Option(name: .long, help: "Stats endpoint HOST:PORT, or off (default 127.0.0.1:9002).")
    var stats: String?

    @Option(name: .long, help: "YAML configuration file (keys in docs/configuration.md); SIGHUP reads it again.")
    var config: String?

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?

    var overrides: [String: String] {
        var overrides: [String: String] = [:]
        if !listen.isEmpty { overrides["relay.listen"] = listen.joined(separator: ",") }
        if let dataDir { overrides["relay.data_dir"] = dataDir }
        if let nodeId { overrides["relay.node_id"] = nodeId }
        if let name { overrides["relay.name"] = name }
        if let threads { overrides["relay.threads"] = String(threads) }
        if let stats { overrides["stats.listen"] = stats }
        if let logLevel { overrides["log.level"] = logLevel }
        return overrides
    }

    func run() async throws {
        let signals = SignalStream([SIGINT, SIGTERM, SIGHUP])
        let configuration: RelayConfiguration
        do {
            configuration = try await ConfigurationLoader.load(file: config, overrides: overrides)
        } catch {
            fail("\(error)")
        }
        let level = SharedLogLevel(configuration.logLevel)
        LoggingSystem.bootstrap { label in KeyValueLogHandler(label: label, level: level) }
        let logger = Logger(label: "ptpchat-relay")
        switch ProcessHeap.keepFreedMemory() {
        case .kept:
            logger.debug("heap: freed memory kept for reuse", metadata: ["trim_threshold": "\(ProcessHeap.trimThreshold)"])
        case .leftToTheEnvironment:
            logger.info("heap: malloc's thresholds left as the environment sets them")
        case .refused:
            logger.warning("heap: glibc refused the trim threshold; freed pages go back to the kernel at once")
        }

        // What the relay creates (the data directory, the store, node-id) is its own: stored
        // messages are not for other local users to read (docs/security.md).
        umask(0o077)
        let identity: NodeAddress
        let lock: DataDirectoryLock
        let store: MessageStore
        do {
            identity = try RelayIdentity.load(
                name: configuration.relay.name, configuredID: configuration.relay.nodeID, dataDir: configuration.relay.dataDir)
            lock = try DataDirectoryLock(directory: configuration.relay.dataDir)
            store = try MessageStore(
                path: MessageStore.path(inDataDirectory: configuration.relay.dataDir),
                settings: StoreSettings(configuration.store), logger: logger)
        } catch {
            fail("\(error)")
        }
        defer { withExtendedLifetime(lock) {} }
        warnIfOthersCanRead(configuration.relay.dataDir, logger: logger)

        let readiness = Readiness()
        let server: RelayServer
        do {
            server = try RelayServer(
                configuration: configuration, identity: identity, logger: logger, store: ThreadedStoreAccess(store: store))
        } catch {
            fail("\(error)")
        }
        let collector = StatsCollector(readiness: readiness, routes: { server.routes() }) { try await server.snapshot() }
        let statsServer = configuration.stats.listen == nil ? nil : StatsServer(collector: collector, readiness: readiness, logger: logger)

        // Listening sockets from systemd (socket activation) replace binding.
        let inherited = Systemd.listeners()
        let relaySockets = inherited.filter { $0.name != "stats" && $0.name != "tls" }.map(\.descriptor)
        let tlsSockets = inherited.filter { $0.name == "tls" }.map(\.descriptor)
        let statsSocket = inherited.first { $0.name == "stats" }?.descriptor
        do {
            if relaySockets.isEmpty && tlsSockets.isEmpty {
                try await server.start()
            } else {
                try await server.start(inheritedListeners: relaySockets, tlsListeners: tlsSockets)
            }
            if let statsServer {
                if let statsSocket {
                    try await statsServer.start(descriptor: statsSocket)
                } else if let address = configuration.stats.listen {
                    let (host, port) = try ConfigurationLoader.parseHostPort(address)
                    do {
                        try await statsServer.start(host: host, port: port)
                    } catch let error as IOError {
                        throw RelayServer.ListenError(address: address, reason: String(cString: strerror(error.errnoCode)).lowercased())
                    }
                }
            }
        } catch {
            try? await server.shutdown()
            await statsServer?.shutdown()
            fail("\(error)")
        }

        readiness.set(.serving)
        Systemd.ready(status: "serving")
        logger.info(
            "relay started",
            metadata: [
                "node_id": "\(identity.id)", "name": "\(configuration.relay.name)",
                "threads": "\(server.group.makeIterator().map { $0 }.count)",
            ])

        let background = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await reportStatus(collector: collector) }
                if let period = Systemd.watchdogPeriod() {
                    logger.info("systemd watchdog on", metadata: ["period_s": "\(period)"])
                    group.addTask { await feedWatchdog(server: server, period: period, logger: logger) }
                }
            }
        }

        var current = configuration
        var stopSignal: Int32 = SIGTERM
        for await signal in signals.signals {
            if signal == SIGHUP {
                current = await reload(from: current, server: server, readiness: readiness, level: level, logger: logger)
                continue
            }
            stopSignal = signal
            break
        }

        readiness.set(.stopping)
        Systemd.stopping()
        logger.info("stopping", metadata: ["signal": "\(stopSignal.signalName)", "timeout_s": "\(current.timeouts.shutdown)"])
        background.cancel()
        // A second signal, or the shutdown timeout, ends the process at once.
        let hurry = Task {
            for await signal in signals.signals where signal != SIGHUP {
                logger.warning("second signal: exiting now", metadata: ["signal": "\(signal.signalName)"])
                Foundation.exit(1)
            }
        }
        // 0: no deadline (connections are closed at once in any case).
        let timeout = current.timeouts.shutdown
        let watchdog: Task<Void, Error>? = timeout <= 0 ? nil : Task {
            try await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
            logger.error("shutdown took longer than timeouts.shutdown: exiting now", metadata: ["timeout_s": "\(timeout)"])
            Foundation.exit(1)
        }
        // The stats endpoint goes last: /readyz answers 503 while the relay stops.
        try? await server.shutdown()
        await statsServer?.shutdown()
        watchdog?.cancel()
        hurry.cancel()
        logger.info("stopped")
    }

    /// SIGHUP: read the configuration again and apply what can change without a restart. An
    /// invalid file is refused and the settings in force stay.
    private func reload(
        from current: RelayConfiguration, server: RelayServer, readiness: Readiness, level: SharedLogLevel, logger: Logger
    ) async -> RelayConfiguration {
        readiness.set(.reloading)
        Systemd.reloading()
        defer {
            readiness.set(.serving)
            Systemd.ready(status: "serving")
        }
        let new: RelayConfiguration
        do {
            new = try await ConfigurationLoader.load(file: config, overrides: overrides)
        } catch {
            logger.error("reload refused: the configuration stays as it was", metadata: ["reason": "\(error)"])
            return current
        }
        do {
            let needsRestart = try await server.apply(new)
            level.value = new.logLevel
            logger.info(
                "configuration reloaded",
                metadata: needsRestart.isEmpty ? [:] : ["unchanged_until_restart": "\(needsRestart.joined(separator: ","))"])
        } catch {
            logger.error("reload failed", metadata: ["reason": "\(error)"])
            return current
        }
        return new
    }
}

/// `STATUS=` every few seconds: connections, nodes, messages per second.
private func reportStatus(collector: StatsCollector) async {
    while !Task.isCancelled {
        if let snapshot = try? await collector.sample() {
            let rate = collector.rates(for: snapshot)["messages_relayed_per_s"] ?? 0
            Systemd.status(
                "clients \(snapshot.clients), peers \(snapshot.mesh.peersUp), routes \(snapshot.mesh.routes), "
                    + "\(Int(rate)) msg/s, stored \(snapshot.storeMessages)")
        }
        try? await Task.sleep(nanoseconds: 1_000_000_000)
    }
}

/// `WATCHDOG=1` every half period, only while every event loop answers in time: a stuck loop
/// stops the pings and systemd restarts the relay.
private func feedWatchdog(server: RelayServer, period: Double, logger: Logger) async {
    let interval = period / 2
    while !Task.isCancelled {
        if await server.loopsAnswer(within: .nanoseconds(Int64(interval * 1e9))) {
            Systemd.watchdogPing()
        } else {
            logger.error("an event loop did not answer in time: no watchdog ping")
        }
        try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
    }
}

/// A data directory made before the relay ran may let other local users read stored messages.
private func warnIfOthersCanRead(_ directory: String, logger: Logger) {
    var info = stat()
    guard stat(directory, &info) == 0, info.st_mode & 0o077 != 0 else { return }
    logger.warning(
        "data directory is open to other local users: chmod 700 it",
        metadata: ["path": "\(directory)", "mode": "\(String(info.st_mode & 0o777, radix: 8))"])
}
