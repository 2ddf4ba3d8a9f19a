import Foundation
import Glibc
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
        try writeDurably(id.description + "\n", to: path)
        return NodeAddress(id: id, name: name)
    }

    /// Writes `text` to a temporary file next to `path`, syncs it and renames it over `path`. A
    /// crash or power loss right after the first start then leaves either no file (a new id is made)
    /// or the whole id, never an empty `node-id` that the next start refuses as "not a GUID".
    private static func writeDurably(_ text: String, to path: String) throws {
        let temporary = path + ".new"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = written == bytes.count && fsync(fd) == 0
        let failure = errno
        close(fd)
        guard synced, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(synced ? errno : failure))
            unlink(temporary)
            throw Failure(description: "cannot write \(path): \(reason)")
        }
    }
}
