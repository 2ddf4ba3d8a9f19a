import Foundation
import XCTest

/// Base of the NAT lab tests: skips where no lab can be built (not root), builds labs, starts the
/// relay and clients inside them, and removes everything in tearDown, failed test or not. When a
/// test fails, every process's output is printed and the work folder kept.
class NATLabTestCase: XCTestCase {
    /// Seconds a punch (from the initiator's start to its JSON line) may take before the test
    /// calls the client hung: the product's own deadline is well below this.
    let punchTimeout: Double = 20

    private var workDirectory: URL?
    private var labs: [NATLab] = []
    private var children: [ChildProcess] = []

    override func setUpWithError() throws {
        try super.setUpWithError()
        if let reason = NATLab.unavailableReason() {
            throw XCTSkip("NAT lab not available here: \(reason)")
        }
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("ptpchat-natlab-\(name.filter { $0.isLetter || $0.isNumber })-\(Ids.make().prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        workDirectory = directory
    }

    override func tearDown() {
        children.forEach { $0.stop(grace: 2) }
        labs.forEach { $0.remove() }
        let failed = (testRun?.failureCount ?? 0) + (testRun?.unexpectedExceptionCount ?? 0) > 0
        if failed {
            for child in children {
                print("---- \(child.name) stdout ----\n\(child.stdout)---- \(child.name) stderr ----\n\(child.outputTail(40))----")
            }
            if let workDirectory { print("kept \(workDirectory.path)") }
        } else if let workDirectory {
            try? FileManager.default.removeItem(at: workDirectory)
        }
        children = []
        labs = []
        super.tearDown()
    }

    var directory: URL {
        get throws { try XCTUnwrap(workDirectory, "no work directory") }
    }

    /// A lab with these sites (removed in tearDown).
    func makeLab(_ sites: [(name: String, kind: NATLab.Kind, behaviour: NATLab.Behaviour)], delayMilliseconds: Double = 20) throws -> NATLab {
        let lab = try NATLab(sites: sites, delayMilliseconds: delayMilliseconds, logDirectory: try directory)
        labs.append(lab)
        return lab
    }

    /// A process inside one of the lab's namespaces, stopped in tearDown.
    func start(
        in namespace: String, _ lab: NATLab, executable: String, arguments: [String], environment: [String: String]? = nil, name: String
    ) throws -> ChildProcess {
        let child = try lab.start(
            in: namespace, executable: executable, arguments: arguments, environment: environment, directory: try directory, name: name)
        children.append(child)
        return child
    }

    // MARK: The relay

    /// The relay's node id in the lab (fixed, so tests can address discovery CONNECTs to it).
    let relayNodeID = Ids.make()

    /// Starts the real relay on the lab's internet segment, listening on both lab ports, with the
    /// limits that many clients behind one NAT address would trip (per-IP accepts, CONNECT rate)
    /// off. Returns once it has logged that it started.
    @discardableResult
    func startRelay(in lab: NATLab, extraEnvironment: [String: String] = [:]) throws -> ChildProcess {
        let data = try directory.appendingPathComponent("relay-data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let environment = [
            "LIMITS_CONNECT_PER_MINUTE": "100000", "LIMITS_CONNECT_PAIR_PER_MINUTE": "0", "LIMITS_PER_IP_CONNECTIONS": "0",
            "LIMITS_PER_IP_NEW_PER_SECOND": "0",
        ].merging(extraEnvironment) { $1 }
        let relay = try start(
            in: lab.relayNamespace, lab, executable: try Binaries.path("ptpchat-relay").path,
            arguments: [
                "--listen", lab.relayAddress, "--listen", lab.relaySecondAddress, "--data-dir", data.path, "--node-id", relayNodeID,
                "--stats", "off", "--log-level", "debug",
            ],
            environment: environment, name: "relay")
        let started = Deadline.poll(timeout: RelayProcess.startTimeout) {
            (relay.stdout + relay.stderr).contains("relay started") || !relay.isRunning
        }
        guard started, relay.isRunning else {
            throw NATLab.Failure(description: "the relay did not start in the lab:\n\(relay.outputTail())")
        }
        return relay
    }

    // MARK: The reference client (lab/refpunch.py)

    /// Starts `refpunch.py COMMAND ARGUMENTS` in `namespace` (a site's host, or the relay's).
    func startReference(_ command: String, _ arguments: [String], in namespace: String, _ lab: NATLab, name: String) throws -> ChildProcess {
        try start(
            in: namespace, lab, executable: "/usr/bin/env",
            arguments: ["python3", NATLab.scripts.appendingPathComponent("refpunch.py").path, command] + arguments, name: name)
    }

    /// Runs `refpunch.py` to its end in `namespace` and returns its JSON lines.
    func runReference(
        _ command: String, _ arguments: [String], in namespace: String, _ lab: NATLab, name: String, timeout: Double = 15,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> [[String: Any]] {
        let child = try startReference(command, arguments, in: namespace, lab, name: name)
        guard let status = child.waitForExit(timeout: timeout) else {
            XCTFail("\(name) did not finish within \(timeout) s: hung", file: file, line: line)
            return []
        }
        XCTAssertEqual(status, 0, "\(name) failed:\n\(child.outputTail())", file: file, line: line)
        return jsonLines(child)
    }

    /// The JSON objects a process printed, one a line.
    func jsonLines(_ child: ChildProcess) -> [[String: Any]] {
        child.stdoutLines.compactMap { JSON.object(Array($0.utf8)) }
    }

    /// Waits until `child` printed a JSON line for which `accept` holds, and returns it.
    func waitForJSON(
        _ child: ChildProcess, timeout: Double, file: StaticString = #filePath, line: UInt = #line, _ accept: ([String: Any]) -> Bool
    ) -> [String: Any]? {
        var found: [String: Any]?
        _ = Deadline.poll(timeout: timeout) {
            found = jsonLines(child).first(where: accept)
            return found != nil || !child.isRunning
        }
        found = found ?? jsonLines(child).first(where: accept)
        if found == nil {
            XCTFail("\(child.name) printed no such JSON line within \(timeout) s:\n\(child.outputTail())", file: file, line: line)
        }
        return found
    }
}
