import Foundation
import XCTest

/// What the relay stores is not for other local users (docs/security.md, "A local user").
final class DataDirectoryTests: RelayTestCase {
    private func mode(_ url: URL) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
        return try XCTUnwrap(attributes[.posixPermissions] as? Int, "no permissions for \(url.path)")
    }

    func testADataDirectoryTheRelayMakesIsItsOwnAndSoIsEveryFileInIt() throws {
        let fresh = try directory.appendingPathComponent("made-by-relay/data")
        // The last --data-dir wins: the relay, not the harness, makes this one.
        let relay = try startRelay(arguments: ["--data-dir", fresh.path])
        XCTAssertEqual(try mode(fresh), 0o700, "the data directory is open to others")
        let files = try FileManager.default.contentsOfDirectory(at: fresh, includingPropertiesForKeys: nil)
        XCTAssertFalse(files.isEmpty)
        for file in files {
            XCTAssertEqual(try mode(file) & 0o077, 0, "\(file.lastPathComponent) is readable by others")
        }
        XCTAssertFalse(relay.log.contains("open to other local users"), "warned about its own directory: \(relay.logTail(5))")
    }

    func testADataDirectoryOpenToOthersIsNamedInAWarning() throws {
        // The harness makes the data directory before the relay starts, with the usual 0755.
        let relay = try startRelay()
        XCTAssertNotEqual(try mode(relay.dataDirectory) & 0o077, 0)
        let line = relay.child.waitForStderrLine(containing: "open to other local users", timeout: expectWithin)
        XCTAssertNotNil(line, "no warning: \(relay.logTail(10))")
        XCTAssertTrue(line?.contains(relay.dataDirectory.path) ?? false, "the warning does not name the directory: \(line ?? "")")
    }
}
