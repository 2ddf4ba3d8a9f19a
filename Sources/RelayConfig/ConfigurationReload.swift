/// What a reload (SIGHUP) applies, key by key, as each ``ConfigurationKey`` declares it (in the
/// manner of nats-server's reload.go: every option says whether a reload applies it).
extension ConfigurationLoader {
    /// Whether a reload applies a changed value of `key`; nil for a key the relay does not know.
    public static func appliesOnReload(_ key: String) -> Bool? {
        ConfigurationKey.all.first { $0.name == key }.map { $0.reload == .applies }
    }

    /// One key of a configuration as `check-config` prints it.
    public struct Setting: Sendable, Equatable {
        public var key: String
        /// As it would be written in the file; secret values are never shown.
        public var value: String
        public var appliesOnReload: Bool
    }

    /// Every key's value in `configuration`, in the order of the documentation. A secret key shows
    /// only whether it is set.
    public static func settings(of configuration: RelayConfiguration) -> [Setting] {
        ConfigurationKey.all.map { key in
            var value = key.field.text(configuration)
            if key.isSecret { value = value == "~" ? "~" : "(set, not shown)" }
            return Setting(key: key.name, value: value, appliesOnReload: key.reload == .applies)
        }
    }

    /// The keys whose change needs a restart, in the order of the documentation.
    public static var restartKeys: [String] {
        ConfigurationKey.all.filter { $0.reload == .needsRestart }.map(\.name)
    }
}

extension RelayConfiguration {
    /// The keys that need a restart whose value differs between `old` and this configuration.
    public func keysNeedingRestart(comparedTo old: RelayConfiguration) -> [String] {
        ConfigurationKey.all.filter { $0.reload == .needsRestart && $0.field.differs(old, self) }.map(\.name)
    }

    /// This configuration with the old values of the keys that need a restart: what a reload applies.
    public func keepingRestartKeys(of old: RelayConfiguration) -> RelayConfiguration {
        var kept = self
        for key in ConfigurationKey.all where key.reload == .needsRestart {
            key.field.copy(&kept, old)
        }
        return kept
    }
}
