import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive lock on `<data dir>/relay.lock` held for the relay's lifetime: two relays on one
/// data directory would share a node id and a store. The `mailbox` command does not take it.
public final class DataDirectoryLock: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    private let descriptor: Int32

    public init(directory: String) throws {
        let path = (directory as NSString).appendingPathComponent("relay.lock")
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw Failure(description: "cannot open \(path): \(String(cString: strerror(errno)).lowercased())")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK
                ? "another relay is running on this data directory" : String(cString: strerror(errno)).lowercased()
            close(descriptor)
            throw Failure(description: "cannot lock \(path): \(reason)")
        }
        _ = ftruncate(descriptor, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { write(descriptor, $0, strlen($0)) }
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }
}
