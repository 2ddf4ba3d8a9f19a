import Configuration
import Foundation

/// Loads the relay's settings (PROFILE.md section 11).
///
/// Precedence, highest first: `overrides` (the command line), environment variables, the YAML file,
/// the defaults of ``RelayConfiguration``. Values are read through swift-configuration's `ConfigReader`
/// over an `InMemoryProvider` (overrides), an `EnvironmentVariablesProvider` and a
/// `FileProvider<YAMLSnapshot>`.
public enum ConfigurationLoader {
    /// Every dotted key the relay knows (`relay.listen`, `limits.max_frame_bytes`, ...).
    public static var keys: [String] {
        ConfigurationKey.all.map(\.name)
    }

    /// The environment variable that sets `key`: upper case, `.` and other separators become `_`
    /// (`limits.max_frame_bytes` is `LIMITS_MAX_FRAME_BYTES`), as swift-configuration's
    /// `EnvironmentVariablesProvider` maps keys.
    public static func environmentVariableName(for key: String) -> String {
        String(key.uppercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
    }

    /// Reads the configuration.
    ///
    /// - Parameters:
    ///   - file: the YAML file (`--config FILE`), or `nil` for none. A missing or unreadable file is an
    ///     error; a file with no settings (empty, comments only) gives the defaults.
    ///   - environment: the environment; only the variables named after known keys are used, others
    ///     are ignored.
    ///   - overrides: values from the command line, by dotted key (`["relay.name": "alpha"]`), written
    ///     as in environment variables (a list key takes a comma-separated list). They win over
    ///     everything else. An unknown key here is an error.
    /// - Throws: ``ConfigurationError``, the first problem found.
    public static func load(
        file: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        overrides: [String: String] = [:]
    ) async throws -> RelayConfiguration {
        var problems = Problems(stopAtFirst: true)
        return try await read(file: file, environment: environment, overrides: overrides, problems: &problems).configuration
    }

    /// What `check` found: every problem, and the settings in effect (each key's value where it
    /// could be read, its default where not).
    public struct Check: Sendable {
        public var configuration: RelayConfiguration
        public var problems: [ConfigurationError]
        /// Where each key's value comes from: `default`, `file`, `environment NAME` or `command line`.
        public var sources: [String: String]
    }

    /// Reads the configuration as `load` does, but does not stop at the first problem: every
    /// problem is listed (`ptpchat-relay check-config`). A file that cannot be read or parsed is
    /// one problem, and the other sources are still checked.
    public static func check(
        file: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        overrides: [String: String] = [:]
    ) async -> Check {
        var problems = Problems(stopAtFirst: false)
        do {
            let read = try await read(file: file, environment: environment, overrides: overrides, problems: &problems)
            return Check(configuration: read.configuration, problems: problems.found, sources: read.sources)
        } catch {
            // Not reached: problems are collected, not thrown, when `stopAtFirst` is false.
            return Check(configuration: RelayConfiguration(), problems: problems.found + [Problems.unexpected(error)], sources: [:])
        }
    }

    /// Problems found while reading: `load` throws the first, `check` collects them all.
    struct Problems {
        let stopAtFirst: Bool
        private(set) var found: [ConfigurationError] = []

        init(stopAtFirst: Bool) {
            self.stopAtFirst = stopAtFirst
        }

        mutating func report(_ problem: ConfigurationError) throws {
            if stopAtFirst { throw problem }
            found.append(problem)
        }

        static func unexpected(_ error: any Error) -> ConfigurationError {
            (error as? ConfigurationError) ?? ConfigurationError(kind: .invalidValue, description: "\(error)")
        }
    }

    private static func read(
        file: String?, environment: [String: String], overrides: [String: String], problems: inout Problems
    ) async throws -> (configuration: RelayConfiguration, sources: [String: String]) {
        let keys = ConfigurationKey.all
        let knownNames = Set(keys.map(\.name))

        for name in overrides.keys.sorted() where !knownNames.contains(name) {
            var description = "unknown configuration key '\(name)' (command line)"
            if let guess = ConfigurationFile.closestKey(to: name, among: keys.map(\.name)) {
                description += " (did you mean '\(guess)'?)"
            }
            try problems.report(ConfigurationError(kind: .unknownKey, key: name, description: description))
        }

        var providers: [any ConfigProvider] = []
        if !overrides.isEmpty {
            var values: [AbsoluteConfigKey: ConfigValue] = [:]
            for key in keys {
                guard let text = overrides[key.name] else { continue }
                let content: ConfigContent =
                    switch key.shape {
                    case .scalar: .string(text)
                    case .list: .stringArray(text.isEmpty ? [] : text.split(separator: ",", omittingEmptySubsequences: false).map(String.init))
                    }
                values[AbsoluteConfigKey(ConfigKey(key.name))] = ConfigValue(content, isSecret: key.isSecret)
            }
            providers.append(InMemoryProvider(name: "command line", values: values))
        }

        // Only variables named after a known key reach the provider: nothing else in the environment
        // can change or break the configuration.
        var relevant: [String: String] = [:]
        for key in keys {
            let name = environmentVariableName(for: key.name)
            if let value = environment[name] {
                relevant[name] = value
            }
        }
        let secretVariables = Set(keys.filter(\.isSecret).map { environmentVariableName(for: $0.name) })
        providers.append(
            EnvironmentVariablesProvider(environmentVariables: relevant, secretsSpecifier: .specific(secretVariables))
        )

        var fileKeys: Set<String> = []
        if let file {
            do {
                if let opened = try await ConfigurationFile.open(path: file, keys: keys, problems: &problems) {
                    providers.append(opened.provider)
                    fileKeys = opened.keys
                }
            } catch let problem as ConfigurationError {
                // The file cannot be read or parsed: nothing more to learn from it.
                try problems.report(problem)
            }
        }

        let reader = ConfigReader(providers: providers)
        var configuration = RelayConfiguration()
        var sources: [String: String] = [:]
        for key in keys {
            let origin: Origin =
                if overrides[key.name] != nil {
                    .commandLine
                } else if relevant[environmentVariableName(for: key.name)] != nil {
                    .environment(environmentVariableName(for: key.name))
                } else {
                    .file(file ?? "")
                }
            do {
                try await apply(key, from: reader, origin: origin, to: &configuration)
            } catch let problem as ConfigurationError {
                try problems.report(problem)
            }
            sources[key.name] =
                switch origin {
                case .commandLine: "command line"
                case .environment(let name): "environment \(name)"
                case .file: fileKeys.contains(key.name) ? "file" : "default"
                }
        }
        for problem in consistencyProblems(configuration) {
            try problems.report(problem)
        }
        return (configuration, sources)
    }

    private static func apply(
        _ key: ConfigurationKey,
        from reader: ConfigReader,
        origin: Origin,
        to configuration: inout RelayConfiguration
    ) async throws {
        let configKey = ConfigKey(key.name)
        func invalid(_ value: String, _ reason: String) -> ConfigurationError {
            let shown = key.isSecret ? nil : value
            let quoted = shown.map { " '\(ConfigurationError.oneLine($0))'" } ?? ""
            return ConfigurationError(
                kind: .invalidValue,
                key: key.name,
                value: shown,
                description: "invalid value\(quoted) for '\(key.name)'\(origin.suffix): \(reason)"
            )
        }

        switch key.shape {
        case .scalar:
            let found: String?
            do {
                found = try await reader.fetchString(forKey: configKey, isSecret: key.isSecret)
            } catch {
                // The file holds a list where one value is expected.
                let list = (try? await reader.fetchStringArray(forKey: configKey, isSecret: key.isSecret)) ?? []
                throw invalid("[\(list.joined(separator: ", "))]", "expected a single value, not a list")
            }
            guard let found else { return }
            var text = found.trimmingCharacters(in: .whitespacesAndNewlines)
            if origin.isNull(text) { text = "" }
            do {
                try key.applyScalar(&configuration, text)
            } catch let problem as ValueProblem {
                throw invalid(text, problem.reason)
            }

        case .list:
            let found: [String]?
            do {
                found = try await reader.fetchStringArray(forKey: configKey, isSecret: key.isSecret)
            } catch {
                // A single string in the file: a list of one.
                found = try await reader.fetchString(forKey: configKey, isSecret: key.isSecret).map { [$0] }
            }
            guard let found else { return }
            var texts = found.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            if texts.count == 1 && origin.isNull(texts[0]) { texts = [] }
            do {
                try key.applyList(&configuration, texts)
            } catch let problem as ConfigurationKey.ElementProblem {
                throw invalid(problem.element, problem.problem.reason)
            }
        }
    }

    /// Checks between keys, once every key is read: every pair of values that do not fit together.
    private static func consistencyProblems(_ c: RelayConfiguration) -> [ConfigurationError] {
        var problems: [ConfigurationError] = []
        func inconsistent(_ key: String, _ description: String) {
            problems.append(ConfigurationError(kind: .inconsistent, key: key, description: description))
        }
        if c.relay.listen.isEmpty && c.tls.listen.isEmpty {
            inconsistent("relay.listen", "nothing to listen on: relay.listen and tls.listen are both empty")
        }
        if !c.tls.listen.isEmpty {
            if c.tls.cert == nil { inconsistent("tls.cert", "tls.listen is set but tls.cert is not") }
            if c.tls.key == nil { inconsistent("tls.key", "tls.listen is set but tls.key is not") }
        }
        if c.tls.requireClientCert && c.tls.clientCA == nil {
            inconsistent("tls.require_client_cert", "tls.require_client_cert needs tls.client_ca to verify client certificates with")
        }
        if (c.tls.cert == nil) != (c.tls.key == nil), c.tls.listen.isEmpty {
            let missing = c.tls.cert == nil ? "tls.cert" : "tls.key"
            inconsistent(missing, "tls.cert and tls.key go together: \(missing) is missing")
        }
        let soft = c.limits.outboundBufferBytes, hard = c.limits.outboundBufferMaxBytes
        if soft > 0 && hard > 0 && soft > hard {
            inconsistent(
                "limits.outbound_buffer_bytes",
                "limits.outbound_buffer_bytes (\(soft)) is above limits.outbound_buffer_max_bytes (\(hard))"
            )
        }
        return problems
    }
}

/// Where a value came from, for error messages.
enum Origin {
    case commandLine
    case environment(String)
    case file(String)

    var suffix: String {
        switch self {
        case .commandLine: " (command line)"
        case .environment(let name): " (environment variable \(name))"
        case .file(let path): " in \(path)"
        }
    }

    /// An empty value; in YAML also the null spellings (`key:`, `key: ~`, `key: null`).
    func isNull(_ text: String) -> Bool {
        if text.isEmpty { return true }
        if case .file = self { return ["~", "null", "Null", "NULL"].contains(text) }
        return false
    }
}
