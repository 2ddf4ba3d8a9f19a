import Configuration
import Foundation
import Synchronization

/// The YAML configuration file: opened through swift-configuration's `FileProvider<YAMLSnapshot>`,
/// with every key checked against the keys the relay knows.
enum ConfigurationFile {
    /// Opens and checks `path`: the provider and the known keys the file sets. Returns `nil` for a
    /// file with no settings at all (empty or only comments). Throws when the file cannot be read
    /// or parsed; keys that are not known are reported to `problems`.
    static func open(
        path: String, keys: [ConfigurationKey], problems: inout ConfigurationLoader.Problems
    ) async throws -> (provider: FileProvider<YAMLSnapshot>, keys: Set<String>)? {
        // The YAML snapshot does not list its keys, but it asks the secrets specifier about each key
        // it stores (every leaf of the YAML tree, dotted): that is where the keys are collected.
        let collector = KeyCollector()
        let secretKeys = Set(keys.filter(\.isSecret).map(\.name))
        let options = YAMLSnapshot.ParsingOptions(
            secretsSpecifier: .dynamic { key, _ in
                collector.add(key)
                return secretKeys.contains(key)
            }
        )
        let provider: FileProvider<YAMLSnapshot>
        do {
            // The `config:` initializer takes the path as a string, so no SystemPackage import is needed.
            let location = ConfigReader(provider: InMemoryProvider(values: ["filePath": ConfigValue(.string(path), isSecret: false)]))
            provider = try await FileProvider<YAMLSnapshot>(parsingOptions: options, config: location)
        } catch {
            if try hasNoSettings(path: path, loadError: error) {
                return nil
            }
            throw ConfigurationError(
                kind: .malformedFile,
                description: "cannot parse configuration file '\(path)': \(firstLine(of: error))"
            )
        }
        let leaves = collector.keys
        try checkKeys(leaves, in: provider, path: path, known: keys, problems: &problems)
        return (provider, Set(leaves))
    }

    /// After the provider failed: throws `.unreadableFile` when the file cannot be read, returns whether
    /// its text holds no YAML content (blank lines, comments and document markers only).
    private static func hasNoSettings(path: String, loadError: any Error) throws -> Bool {
        func unreadable(_ why: String) -> ConfigurationError {
            ConfigurationError(kind: .unreadableFile, description: "cannot read configuration file '\(path)': \(why)")
        }
        let fileManager = FileManager.default
        guard fileManager.fileExists(atPath: path) else {
            throw unreadable("no such file")
        }
        if (try? fileManager.contentsOfDirectory(atPath: path)) != nil {
            throw unreadable("it is a directory")
        }
        guard fileManager.isReadableFile(atPath: path) else {
            throw unreadable("permission denied")
        }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw unreadable(firstLine(of: loadError))
        }
        return text.split(whereSeparator: \.isNewline).allSatisfy { line in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            return trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed == "---" || trimmed == "..."
        }
    }

    /// Every leaf key of the file must be a known key. A section (`limits:`) left empty is fine.
    private static func checkKeys(
        _ leaves: [String],
        in provider: FileProvider<YAMLSnapshot>,
        path: String,
        known: [ConfigurationKey],
        problems: inout ConfigurationLoader.Problems
    ) throws {
        let names = Set(known.map(\.name))
        let sections = Set(known.compactMap { $0.name.split(separator: ".").first.map(String.init) })
        var unknown: [String] = []
        for leaf in leaves where !names.contains(leaf) {
            if sections.contains(leaf) {
                // `mesh:` with every line below it commented out is a null value: an empty section.
                var value = "a list"
                if let result = try? provider.value(forKey: AbsoluteConfigKey([leaf]), type: .string),
                    case .string(let text)? = result.value?.content
                {
                    value = text.trimmingCharacters(in: .whitespaces)
                }
                if Origin.file(path).isNull(value) { continue }
                try problems.report(ConfigurationError(
                    kind: .invalidValue,
                    key: leaf,
                    value: value,
                    description: "'\(leaf)' in \(path) is a section and takes keys (\(leaf): {key: value}), not '\(ConfigurationError.oneLine(value))'"
                ))
                continue
            }
            if let parent = known.first(where: { leaf.hasPrefix($0.name + ".") }) {
                try problems.report(ConfigurationError(
                    kind: .invalidValue,
                    key: parent.name,
                    description: "invalid value for '\(parent.name)' in \(path): expected a value, found a map"
                ))
                continue
            }
            unknown.append(leaf)
        }
        guard let first = unknown.first else { return }
        if !problems.stopAtFirst {
            // One line per problem: each unknown key with its likely meaning.
            for leaf in unknown {
                var description = "unknown configuration key '\(leaf)' in \(path)"
                if let guess = closestKey(to: leaf, among: known.map(\.name)) { description += " (did you mean '\(guess)'?)" }
                try problems.report(ConfigurationError(kind: .unknownKey, key: leaf, description: description))
            }
            return
        }
        var description: String
        if unknown.count == 1 {
            description = "unknown configuration key '\(first)' in \(path)"
            if let guess = closestKey(to: first, among: known.map(\.name)) {
                description += " (did you mean '\(guess)'?)"
            }
        } else {
            let list = unknown.map { "'\($0)'" }.joined(separator: ", ")
            description = "unknown configuration keys \(list) in \(path)"
        }
        try problems.report(ConfigurationError(kind: .unknownKey, key: first, description: description))
    }

    /// The known key nearest to `key` by edit distance, if it is close enough to be a typo.
    static func closestKey(to key: String, among names: [String]) -> String? {
        let lowered = key.lowercased()
        let scored = names.map { ($0, editDistance(lowered, $0)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= 3 else { return nil }
        return best.0
    }

    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }

    /// The gist of a load error on one line. Yams writes `L:C: error: parser: <context>` then
    /// `<problem>:` then a snippet of the file: keep the first two.
    static func firstLine(of error: any Error) -> String {
        let text = String(describing: error)
        if text.hasPrefix("Top level YAML value is not a mapping") {
            return "the top level must be a map of sections (relay:, limits:, ...)"
        }
        let lines = text.split(whereSeparator: \.isNewline).map(String.init)
        var line = lines.first ?? text
        if lines.count > 1, line.contains(" error: "), !line.hasSuffix(":"), lines[1].hasSuffix(":") {
            line += ": " + lines[1]
        }
        if line.hasSuffix(":") {
            line.removeLast()
        }
        return ConfigurationError.oneLine(line, limit: 200)
    }
}

/// Collects the keys the YAML snapshot reports while parsing.
private final class KeyCollector: Sendable {
    private let storage = Mutex<[String]>([])

    func add(_ key: String) {
        storage.withLock { $0.append(key) }
    }

    var keys: [String] {
        storage.withLock { $0 }
    }
}
