import ArgumentParser
import Foundation
import Logging
import PTPProtocol
import RelayConfig
import RelayCore
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

    @Option(name: .long, help: "YAML configuration file (keys in docs/configuration.md).")
    var config: String?

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?

    func run() async throws {
        let signals = SignalWaiter([SIGINT, SIGTERM])
        var overrides: [String: String] = [:]
        if !listen.isEmpty { overrides["relay.listen"] = listen.joined(separator: ",") }
        if let dataDir { overrides["relay.data_dir"] = dataDir }
        if let nodeId { overrides["relay.node_id"] = nodeId }
        if let name { overrides["relay.name"] = name }
        if let threads { overrides["relay.threads"] = String(threads) }
        if let logLevel { overrides["log.level"] = logLevel }

        let configuration: RelayConfiguration
        do {
            configuration = try await ConfigurationLoader.load(file: config, overrides: overrides)
        } catch {
            fail("\(error)")
        }
        LogSetup.bootstrap(level: configuration.logLevel)
        let logger = Logger(label: "ptpchat-relay")

        let identity: NodeAddress
        do {
            identity = try RelayIdentity.load(
                name: configuration.relay.name, configuredID: configuration.relay.nodeID,
                dataDir: configuration.relay.dataDir)
        } catch {
            fail("\(error)")
        }

        let lock: DataDirectoryLock
        do {
            lock = try DataDirectoryLock(directory: configuration.relay.dataDir)
        } catch {
            fail("\(error)")
        }
        defer { withExtendedLifetime(lock) {} }
        let store: MessageStore
        do {
            store = try MessageStore(
                path: MessageStore.path(inDataDirectory: configuration.relay.dataDir),
                settings: StoreSettings(configuration.store), logger: logger)
        } catch {
            fail("\(error)")
        }
        let server = RelayServer(
            configuration: configuration, identity: identity, logger: logger, store: ThreadedStoreAccess(store: store))
        do {
            try await server.start()
        } catch {
            try? await server.shutdown()
            fail("\(error)")
        }
        logger.info(
            "relay started",
            metadata: [
                "node_id": "\(identity.id)", "name": "\(configuration.relay.name)",
                "threads": "\(server.group.makeIterator().map { $0 }.count)",
            ])

        let signal = await signals.wait()
        logger.info("stopping", metadata: ["signal": "\(signal)"])
        try? await server.shutdown()
        logger.info("stopped")
    }
}
