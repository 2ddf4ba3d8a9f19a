/// One configuration key of PROFILE.md section 11: its dotted name, whether it takes a list, how
/// its text is checked and stored into a ``RelayConfiguration``, and whether a reload applies it.
struct ConfigurationKey {
    /// What a reload (SIGHUP) does with a changed value of the key.
    enum Reload {
        /// The running relay takes the new value (open connections included).
        case applies
        /// The old value stays until a restart; the reload names the key.
        case needsRestart
    }

    /// The field of ``RelayConfiguration`` a key sets, compared and copied through its key path.
    struct Field {
        let differs: (RelayConfiguration, RelayConfiguration) -> Bool
        /// Copies the field's value from the second configuration into the first.
        let copy: (inout RelayConfiguration, RelayConfiguration) -> Void
        /// The value as it would be written in the file (`check-config` prints it).
        let text: (RelayConfiguration) -> String

        init<Value: Equatable>(_ path: WritableKeyPath<RelayConfiguration, Value>) {
            differs = { $0[keyPath: path] != $1[keyPath: path] }
            copy = { $0[keyPath: path] = $1[keyPath: path] }
            text = { Self.written($0[keyPath: path]) }
        }

        /// `[a, b]` for lists, `~` for none, a raw value for enums, `10` rather than `10.0`.
        static func written(_ value: Any) -> String {
            let mirror = Mirror(reflecting: value)
            if mirror.displayStyle == .optional {
                return mirror.children.first.map { written($0.value) } ?? "~"
            }
            switch value {
            case let list as [String]: return "[\(list.joined(separator: ", "))]"
            case let number as Double:
                return number == number.rounded() && abs(number) < 1e15 ? String(Int(number)) : String(number)
            case let raw as any RawRepresentable: return written(raw.rawValue)
            default: return "\(value)"
            }
        }
    }

    enum Shape {
        /// One value.
        case scalar
        /// A list of strings; a single string is accepted as a list of one.
        case list
    }

    let name: String
    let shape: Shape
    let reload: Reload
    let field: Field
    /// Never printed in errors; redacted in swift-configuration's access logs.
    let isSecret: Bool
    /// For `.scalar` keys: receives the trimmed text, `""` for an empty or null value.
    let applyScalar: (inout RelayConfiguration, String) throws -> Void
    /// For `.list` keys: receives the element texts, `[]` for an empty or null value.
    let applyList: (inout RelayConfiguration, [String]) throws -> Void

    /// Thrown by `applyList` to name the element at fault.
    struct ElementProblem: Error {
        var element: String
        var problem: ValueProblem
    }
}

extension ConfigurationKey {
    /// A one-value key that sets the field at `path` (`apply` parses the text into it).
    private static func scalar<Value: Equatable>(
        _ name: String,
        _ path: WritableKeyPath<RelayConfiguration, Value>,
        _ reload: Reload = .applies,
        secret: Bool = false,
        _ apply: @escaping (inout RelayConfiguration, String) throws -> Void
    ) -> ConfigurationKey {
        ConfigurationKey(
            name: name, shape: .scalar, reload: reload, field: Field(path), isSecret: secret, applyScalar: apply,
            applyList: { _, _ in })
    }

    /// A count or a size in bytes, at least `minimum`.
    private static func integer(
        _ name: String,
        _ path: WritableKeyPath<RelayConfiguration, Int>,
        _ reload: Reload = .applies,
        minimum: Int = 0
    ) -> ConfigurationKey {
        scalar(name, path, reload) { config, text in config[keyPath: path] = try ValueParsing.integer(text, minimum: minimum) }
    }

    /// A duration in seconds or a rate, integer or fraction.
    private static func number(
        _ name: String,
        _ path: WritableKeyPath<RelayConfiguration, Double>,
        _ reload: Reload = .applies,
        allowZero: Bool
    ) -> ConfigurationKey {
        scalar(name, path, reload) { config, text in config[keyPath: path] = try ValueParsing.number(text, allowZero: allowZero) }
    }

    /// Optional text: an empty value means none.
    private static func optionalText(
        _ name: String,
        _ path: WritableKeyPath<RelayConfiguration, String?>,
        _ reload: Reload = .applies,
        secret: Bool = false
    ) -> ConfigurationKey {
        scalar(name, path, reload, secret: secret) { config, text in config[keyPath: path] = text.isEmpty ? nil : text }
    }

    private static func list(
        _ name: String,
        _ path: WritableKeyPath<RelayConfiguration, [String]>,
        _ reload: Reload = .applies,
        element: @escaping (String) throws -> String
    ) -> ConfigurationKey {
        ConfigurationKey(
            name: name,
            shape: .list,
            reload: reload,
            field: Field(path),
            isSecret: false,
            applyScalar: { _, _ in },
            applyList: { config, texts in
                config[keyPath: path] = try texts.map { text in
                    do {
                        return try element(text)
                    } catch let problem as ValueProblem {
                        throw ElementProblem(element: text, problem: problem)
                    }
                }
            }
        )
    }

    /// Every key the relay knows, in the order of the documentation.
    static var all: [ConfigurationKey] {
        [
            list("relay.listen", \.relay.listen, .needsRestart, element: ValueParsing.listenAddress),
            scalar("relay.name", \.relay.name, .needsRestart) { $0.relay.name = try ValueParsing.relayName($1) },
            scalar("relay.node_id", \.relay.nodeID, .needsRestart) { $0.relay.nodeID = try $1.isEmpty ? nil : ValueParsing.guid($1) },
            scalar("relay.data_dir", \.relay.dataDir, .needsRestart) { $0.relay.dataDir = try ValueParsing.nonEmpty($1) },
            integer("relay.threads", \.relay.threads, .needsRestart),

            scalar("stats.listen", \.stats.listen, .needsRestart) { config, text in
                if ["off", "false"].contains(text.lowercased()) {
                    config.stats.listen = nil
                } else {
                    do {
                        config.stats.listen = try ValueParsing.listenAddress(text)
                    } catch let problem as ValueProblem {
                        throw ValueProblem("\(problem.reason) (or off)")
                    }
                }
            },

            scalar("log.level", \.logLevel) { $0.logLevel = try ValueParsing.logLevel($1) },

            number("timeouts.handshake", \.timeouts.handshake, allowZero: false),
            number("timeouts.idle", \.timeouts.idle, allowZero: false),
            number("timeouts.keepalive", \.timeouts.keepalive, allowZero: false),
            number("timeouts.hello_refresh", \.timeouts.helloRefresh, allowZero: true),
            number("timeouts.ack", \.timeouts.ack, allowZero: false),
            number("timeouts.shutdown", \.timeouts.shutdown, allowZero: true),

            integer("limits.max_frame_bytes", \.limits.maxFrameBytes),
            integer("limits.max_connections", \.limits.maxConnections),
            integer("limits.per_ip_connections", \.limits.perIPConnections),
            number("limits.per_ip_new_per_second", \.limits.perIPNewPerSecond, allowZero: true),
            integer("limits.per_ip_new_burst", \.limits.perIPNewBurst),
            number("limits.accept_refusals_per_second", \.limits.acceptRefusalsPerSecond, allowZero: true),
            integer("limits.accept_refusals_burst", \.limits.acceptRefusalsBurst),
            integer("limits.ban_after_refusals", \.limits.banAfterRefusals),
            number("limits.ban_seconds", \.limits.banSeconds, allowZero: false),
            number("limits.node_messages_per_second", \.limits.nodeMessagesPerSecond, allowZero: true),
            integer("limits.node_messages_burst", \.limits.nodeMessagesBurst),
            number("limits.node_bytes_per_second", \.limits.nodeBytesPerSecond, allowZero: true),
            integer("limits.node_bytes_burst", \.limits.nodeBytesBurst),
            number("limits.flood_per_second", \.limits.floodPerSecond, allowZero: true),
            integer("limits.flood_burst", \.limits.floodBurst),
            number("limits.connect_per_minute", \.limits.connectPerMinute, allowZero: true),
            number("limits.connect_pair_per_minute", \.limits.connectPairPerMinute, allowZero: true),
            integer("limits.outbound_buffer_bytes", \.limits.outboundBufferBytes),
            integer("limits.outbound_buffer_max_bytes", \.limits.outboundBufferMaxBytes),

            number("flood.window", \.flood.window, allowZero: false),
            number("channels.ttl", \.channels.ttl, allowZero: false),

            scalar("store.sync", \.store.sync, .needsRestart) { $0.store.sync = try ValueParsing.syncMode($1) },
            integer("store.max_attempts", \.store.maxAttempts, .needsRestart, minimum: 1),
            integer("store.per_recipient_messages", \.store.perRecipientMessages, .needsRestart, minimum: 1),
            integer("store.per_recipient_bytes", \.store.perRecipientBytes, .needsRestart, minimum: 1),
            integer("store.per_sender_messages", \.store.perSenderMessages, .needsRestart, minimum: 1),
            integer("store.max_bytes", \.store.maxBytes, .needsRestart, minimum: 1),
            number("store.max_age", \.store.maxAge, .needsRestart, allowZero: false),

            number("routing.interval", \.routing.interval, allowZero: false),
            number("routing.refresh", \.routing.refresh, allowZero: false),
            scalar("routing.to_clients", \.routing.clientView) { config, text in
                if text.lowercased() == "channels" {
                    config.routing.clientView = .channels
                } else {
                    do {
                        config.routing.toClients = try ValueParsing.boolean(text)
                    } catch {
                        throw ValueProblem("expected true, false or channels")
                    }
                }
            },

            list("mesh.peers", \.mesh.peers, element: ValueParsing.dialAddress),
            scalar("mesh.key", \.mesh.key, secret: true) { config, text in
                // PROFILE.md section 9: a short key is refused at start, not used.
                guard text.isEmpty || text.utf8.count >= 16 else {
                    throw ValueProblem("must be at least 16 bytes (it has \(text.utf8.count))")
                }
                config.mesh.key = text.isEmpty ? nil : text
            },

            list("tls.listen", \.tls.listen, .needsRestart, element: ValueParsing.listenAddress),
            optionalText("tls.cert", \.tls.cert),
            optionalText("tls.key", \.tls.key),
            optionalText("tls.client_ca", \.tls.clientCA),
            scalar("tls.require_client_cert", \.tls.requireClientCert) { $0.tls.requireClientCert = try ValueParsing.boolean($1) },

            scalar("compat.legacy_clients", \.compat.legacyClients) { $0.compat.legacyClients = try ValueParsing.boolean($1) },
        ]
    }
}
