#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest

/// One NAT lab, built by `lab/natlab.py` (its header describes the topology): an "internet"
/// router namespace that delays every packet it forwards, a relay host on it, and private sites,
/// each a host namespace behind its own NAT router namespace. Real kernel NAT (nftables
/// masquerade), real processes started inside the namespaces with `ip netns exec`.
///
/// Owned by one test: built in the test, removed by `remove()` from its tearDown. A test process
/// that is killed leaves its namespaces behind; the next lab built on the machine removes them
/// (`natlab.py sweep`, keyed on the owner pid in the namespace names).
final class NATLab {
    /// How a site's router maps and filters TCP (RFC 4787 terms).
    enum Kind: String, CaseIterable, Sendable {
        /// Endpoint-independent mapping and filtering ("full cone").
        case cone
        /// Endpoint-independent mapping, address-and-port-dependent filtering: plain masquerade.
        case portRestricted = "port-restricted"
        /// Endpoint-dependent mapping: masquerade with a random port per connection.
        case symmetric
    }

    /// What a site's router does with an unsolicited inbound SYN that no mapping admits.
    enum Behaviour: String, CaseIterable, Sendable {
        /// The router's own stack answers RST (Linux with no firewall rule).
        case rst
        /// Dropped by a firewall rule, as home routers do.
        case drop
    }

    struct Site {
        let name: String
        let kind: Kind
        let behaviour: Behaviour
        let hostNamespace: String
        let routerNamespace: String
        /// The host's private address (10.N.0.2), behind the router.
        let hostIP: String
        /// The router's internet address (198.18.N.2): what the relay sees of the host.
        let publicIP: String
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The folder of natlab.py, refpunch.py and nfq-delay.c.
    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("lab")
    static let relayPorts: (first: UInt16, second: UInt16) = (9001, 9002)

    /// Namespace-name prefix of this lab (`ptpnl-OWNERPID-RANDOM`).
    let prefix: String
    let relayNamespace: String
    let relayIP: String
    let delayMilliseconds: Double
    private(set) var sites: [String: Site] = [:]
    private var removed = false

    /// The relay's first and second listening address (two ports, for symmetric-NAT detection).
    var relayAddress: String { "\(relayIP):\(Self.relayPorts.first)" }
    var relaySecondAddress: String { "\(relayIP):\(Self.relayPorts.second)" }

    /// Why no lab can be built here (not root, no namespaces, tools missing), or nil.
    static func unavailableReason() -> String? {
        guard let result = try? run(["check"]) else { return "natlab.py could not be run (python3 missing?)" }
        if result.status == 0 { return nil }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) + result.stderr
    }

    /// Builds a lab with `sites` (name, kind, behaviour) and `delayMilliseconds` each way on the
    /// internet router. nfq-delay's log goes into `logDirectory`.
    init(sites specs: [(name: String, kind: Kind, behaviour: Behaviour)], delayMilliseconds: Double = 20, logDirectory: URL) throws {
        var arguments = ["up", "--owner", String(getpid()), "--delay-ms", String(delayMilliseconds), "--log-dir", logDirectory.path]
        for spec in specs {
            arguments += ["--site", "\(spec.name)=\(spec.kind.rawValue),\(spec.behaviour.rawValue)"]
        }
        let result = try Self.run(arguments)
        guard result.status == 0,
            let object = JSON.object(Array(result.stdout.utf8)),
            let prefix = object["prefix"] as? String,
            let relay = object["relay"] as? [String: Any], let relayNamespace = relay["ns"] as? String,
            let relayIP = relay["ip"] as? String,
            let sites = object["sites"] as? [String: [String: Any]]
        else {
            throw Failure(description: "natlab.py up failed (exit \(result.status)):\n\(result.stdout)\n\(result.stderr)")
        }
        self.prefix = prefix
        self.relayNamespace = relayNamespace
        self.relayIP = relayIP
        self.delayMilliseconds = delayMilliseconds
        for spec in specs {
            guard let site = sites[spec.name], let host = site["host_ns"] as? String, let router = site["router_ns"] as? String,
                let hostIP = site["host_ip"] as? String, let publicIP = site["public_ip"] as? String
            else {
                remove()
                throw Failure(description: "natlab.py up described no site '\(spec.name)': \(result.stdout)")
            }
            self.sites[spec.name] = Site(
                name: spec.name, kind: spec.kind, behaviour: spec.behaviour, hostNamespace: host, routerNamespace: router,
                hostIP: hostIP, publicIP: publicIP)
        }
    }

    deinit { remove() }

    /// Ends every process in the lab's namespaces and removes them. Safe to call twice.
    func remove() {
        guard !removed else { return }
        removed = true
        _ = try? Self.run(["down", prefix])
    }

    func site(_ name: String) throws -> Site {
        guard let site = sites[name] else { throw Failure(description: "the lab has no site '\(name)'") }
        return site
    }

    /// Starts `executable` inside `namespace` (`ip netns exec`, which execs it: the child's pid is
    /// the program's). Output goes to files in `directory`, as with every `ChildProcess`.
    func start(
        in namespace: String, executable: String, arguments: [String], environment: [String: String]? = nil, directory: URL, name: String
    ) throws -> ChildProcess {
        try ChildProcess(
            executable: URL(fileURLWithPath: try Self.ipTool()), arguments: ["netns", "exec", namespace, executable] + arguments,
            environment: environment, directory: directory, name: name)
    }

    // MARK: Running the helper scripts

    struct Outcome {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `natlab.py` with `arguments` to the end (it builds or removes a lab in about a second).
    static func run(_ arguments: [String]) throws -> Outcome {
        try runToEnd(executable: "/usr/bin/env", arguments: ["python3", scripts.appendingPathComponent("natlab.py").path] + arguments)
    }

    static func runToEnd(executable: String, arguments: [String]) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Both are small (a JSON object, an error message); read before waiting so neither fills.
        let stdout = output.fileHandleForReading.readDataToEndOfFile()
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// iproute2's `ip`, which is in /usr/sbin or /sbin (not always on a test runner's PATH).
    static func ipTool() throws -> String {
        for candidate in ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw Failure(description: "iproute2's 'ip' was not found: run scripts/install-deps.sh")
    }
}
