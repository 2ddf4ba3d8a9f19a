import Foundation
import PTPProtocol
import XCTest

@testable import RelayCore

final class RelayIdentityTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func testTheFirstStartWritesTheIdAloneAndTheNextStartReadsItBack() throws {
        let dataDir = directory.appendingPathComponent("data").path
        let first = try RelayIdentity.load(name: "relay", configuredID: nil, dataDir: dataDir)
        // Only the id file: no temporary file left beside it.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dataDir), ["node-id"])
        let text = try String(contentsOfFile: dataDir + "/node-id", encoding: .utf8)
        XCTAssertEqual(text, first.id.description + "\n")
        let second = try RelayIdentity.load(name: "relay", configuredID: nil, dataDir: dataDir)
        XCTAssertEqual(second.id, first.id)
    }

    func testAnUnwritableDataDirectoryIsAClearError() throws {
        let dataDir = directory.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: dataDir, withIntermediateDirectories: true)
        // A directory where the temporary file would go makes open() fail even for root.
        try FileManager.default.createDirectory(at: dataDir.appendingPathComponent("node-id.new"), withIntermediateDirectories: true)
        XCTAssertThrowsError(try RelayIdentity.load(name: "relay", configuredID: nil, dataDir: dataDir.path)) { error in
            XCTAssertTrue(String(describing: error).contains("cannot write"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dataDir.appendingPathComponent("node-id").path))
    }
}
