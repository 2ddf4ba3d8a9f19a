import Foundation

/// A strict reader of the Prometheus text exposition format 0.0.4, enough to check what the relay
/// exports: every non-comment line is `name{label="value",...} value [timestamp]`, names and label
/// names valid, values numbers, `# HELP` / `# TYPE` at most once per family and before its
/// samples, a family's samples together, no series twice.
struct PrometheusText {
    struct Sample: CustomStringConvertible {
        var name: String
        var labels: [String: String]
        var value: Double
        var line: Int

        var description: String {
            let labels = self.labels.keys.sorted().map { "\($0)=\"\(self.labels[$0]!)\"" }.joined(separator: ",")
            return "\(name){\(labels)} \(value)"
        }
    }

    struct Problem: Error, CustomStringConvertible {
        var line: Int
        var text: String
        var reason: String
        var description: String { "line \(line): \(reason): \(text)" }
    }

    private(set) var samples: [Sample] = []
    /// `# TYPE` by family name.
    private(set) var types: [String: String] = [:]
    /// `# HELP` by family name.
    private(set) var helps: [String: String] = [:]

    static let metricTypes: Set<String> = ["counter", "gauge", "histogram", "summary", "untyped"]

    /// The value of the series `name` with exactly `labels`, if exported.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    /// Every series of `name`.
    func series(_ name: String) -> [Sample] { samples.filter { $0.name == name } }

    var names: Set<String> { Set(samples.map(\.name)) }

    /// The family a sample belongs to: its own name, or for `_bucket`/`_sum`/`_count` the
    /// histogram or summary it was declared under.
    func family(of name: String) -> String {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if let type = types[base], type == "histogram" || type == "summary" { return base }
        }
        return name
    }

    static func isMetricName(_ name: Substring) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || first == ":" || isLetter(first) else { return false }
        return name.unicodeScalars.allSatisfy { $0 == "_" || $0 == ":" || isLetter($0) || isDigit($0) }
    }

    static func isLabelName(_ name: Substring) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || isLetter(first) else { return false }
        return name.unicodeScalars.allSatisfy { $0 == "_" || isLetter($0) || isDigit($0) }
    }

    private static func isLetter(_ scalar: Unicode.Scalar) -> Bool { ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) }
    private static func isDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }

    static func parseValue(_ text: Substring) -> Double? {
        switch text {
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        case "NaN": return .nan
        default:
            // Go's ParseFloat syntax: no hex, no leading/trailing junk.
            guard !text.isEmpty, text.unicodeScalars.allSatisfy({ isDigit($0) || "+-.eE".unicodeScalars.contains($0) }) else { return nil }
            return Double(text)
        }
    }

    init(parsing text: String) throws {
        if !text.isEmpty && !text.hasSuffix("\n") {
            throw Problem(line: 0, text: String(text.suffix(80)), reason: "the text does not end with a newline")
        }
        var seenSeries = Set<String>()
        var finishedFamilies = Set<String>()
        var currentFamily: String?
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated() {
            let number = index + 1
            let line = Substring(raw)
            func problem(_ reason: String) -> Problem { Problem(line: number, text: String(line), reason: reason) }
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            if line.hasPrefix("#") {
                let words = line.dropFirst().split(separator: " ", maxSplits: 3, omittingEmptySubsequences: true)
                guard let keyword = words.first, keyword == "HELP" || keyword == "TYPE" else { continue }
                guard words.count >= 2, Self.isMetricName(words[1]) else { throw problem("\(keyword) without a valid metric name") }
                let name = String(words[1])
                if finishedFamilies.contains(name) || samples.contains(where: { self.family(of: $0.name) == name }) {
                    throw problem("\(keyword) for \(name) after its samples")
                }
                if keyword == "TYPE" {
                    guard words.count == 3, Self.metricTypes.contains(String(words[2])) else { throw problem("TYPE must name one of \(Self.metricTypes.sorted())") }
                    guard types[name] == nil else { throw problem("a second TYPE for \(name)") }
                    types[name] = String(words[2])
                } else {
                    guard helps[name] == nil else { throw problem("a second HELP for \(name)") }
                    helps[name] = words.count > 2 ? words[2...].joined(separator: " ") : ""
                }
                continue
            }

            // name{labels} value [timestamp]
            var rest = line[...]
            let nameEnd = rest.firstIndex { $0 == "{" || $0 == " " } ?? rest.endIndex
            let name = rest[..<nameEnd]
            guard Self.isMetricName(name) else { throw problem("invalid metric name '\(name)'") }
            rest = rest[nameEnd...]
            var labels: [String: String] = [:]
            if rest.first == "{" {
                rest = rest.dropFirst()
                while true {
                    if rest.first == "}" {
                        rest = rest.dropFirst()
                        break
                    }
                    guard let equals = rest.firstIndex(of: "=") else { throw problem("label without '='") }
                    let labelName = rest[..<equals]
                    guard Self.isLabelName(labelName), !labelName.hasPrefix("__") else { throw problem("invalid label name '\(labelName)'") }
                    rest = rest[rest.index(after: equals)...]
                    guard rest.first == "\"" else { throw problem("label value not quoted") }
                    rest = rest.dropFirst()
                    var value = ""
                    var closed = false
                    while let character = rest.first {
                        rest = rest.dropFirst()
                        if character == "\"" {
                            closed = true
                            break
                        }
                        if character == "\\" {
                            guard let escaped = rest.first else { break }
                            rest = rest.dropFirst()
                            switch escaped {
                            case "\\": value.append("\\")
                            case "\"": value.append("\"")
                            case "n": value.append("\n")
                            default: throw problem("invalid escape \\\(escaped) in a label value")
                            }
                        } else {
                            value.append(character)
                        }
                    }
                    guard closed else { throw problem("unterminated label value") }
                    guard labels.updateValue(value, forKey: String(labelName)) == nil else { throw problem("label \(labelName) given twice") }
                    if rest.first == "," {
                        rest = rest.dropFirst()
                    } else if rest.first != "}" {
                        throw problem("expected ',' or '}' after a label")
                    }
                }
            }
            guard rest.first == " " else { throw problem("expected a space before the value") }
            let fields = rest.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count == 1 || fields.count == 2 else { throw problem("expected a value and at most a timestamp") }
            guard let value = Self.parseValue(fields[0]) else { throw problem("value '\(fields[0])' is not a number") }
            if fields.count == 2, Int64(fields[1]) == nil { throw problem("timestamp '\(fields[1])' is not an integer") }

            let sampleFamily = self.family(of: String(name))
            if finishedFamilies.contains(sampleFamily) { throw problem("samples of \(sampleFamily) are not together") }
            if let currentFamily, currentFamily != sampleFamily { finishedFamilies.insert(currentFamily) }
            currentFamily = sampleFamily
            let key = String(name) + "{" + labels.keys.sorted().map { "\($0)=\(labels[$0]!)" }.joined(separator: ",") + "}"
            guard seenSeries.insert(key).inserted else { throw problem("the series \(key) appears twice") }
            switch types[sampleFamily] {
            case "counter":
                guard value >= 0 || value.isNaN else { throw problem("a counter below zero") }
            case "histogram" where name.hasSuffix("_bucket"):
                guard labels["le"] != nil else { throw problem("a histogram bucket without le") }
            default:
                break
            }
            samples.append(Sample(name: String(name), labels: labels, value: value, line: number))
        }
    }
}
