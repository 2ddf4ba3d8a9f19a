import Foundation
import PTPProtocol

/// The relay's own node id: from the configuration, else kept in `<data dir>/node-id`, generated on
/// first start.
public enum RelayIdentity {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func load(name: String, configuredID: String?, dataDir: String) throws -> NodeAddress {
        guard NodeAddress.isValidName(name) else {
            throw Failure(description: "relay name '\(name)' must be letters and digits only")
        }
        let fileManager = FileManager.default
        do {
            try fileManager.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        } catch {
            throw Failure(description: "cannot create data directory \(dataDir): \(error.localizedDescription)")
        }
        if let configuredID {
            guard let id = GUID(configuredID) else { throw Failure(description: "node id '\(configuredID)' is not a GUID") }
            return NodeAddress(id: id, name: name)
        }
        let path = (dataDir as NSString).appendingPathComponent("node-id")
        if fileManager.fileExists(atPath: path) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw Failure(description: "cannot read \(path)")
            }
            guard let id = GUID(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw Failure(description: "\(path) does not hold a GUID")
            }
            return NodeAddress(id: id, name: name)
        }
        let id = GUID.random()
        do {
            try (id.description + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw Failure(description: "cannot write \(path): \(error.localizedDescription)")
        }
        return NodeAddress(id: id, name: name)
    }
}
