import Foundation

/// Finds the package's built executables (`ptpchat-relay`, `ptpchat`) next to the test bundle.
enum Binaries {
    struct Missing: Error, CustomStringConvertible {
        var description: String
    }

    /// Folders searched, in order: `$PTPCHAT_BIN_DIR`, the folder of the running test executable
    /// (SwiftPM puts the xctest bundle beside the products), `Bundle.main`'s folder, and
    /// `.build/debug` of the package this file belongs to.
    static var searchDirectories: [URL] {
        var directories: [URL] = []
        if let override = ProcessInfo.processInfo.environment["PTPCHAT_BIN_DIR"], !override.isEmpty {
            directories.append(URL(fileURLWithPath: override))
        }
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directories.append(URL(fileURLWithPath: executable).deletingLastPathComponent())
        }
        let bundle = Bundle.main.bundleURL
        directories.append(bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent() : bundle)
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        directories.append(packageRoot.appendingPathComponent(".build/debug"))
        return directories
    }

    /// The executable `name`, or an error naming every folder looked in.
    static func path(_ name: String) throws -> URL {
        let directories = searchDirectories
        for directory in directories {
            let candidate = directory.appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw Missing(
            description: "the executable '\(name)' was not found; build it first (swift build) or set PTPCHAT_BIN_DIR. "
                + "Looked in: " + directories.map(\.path).joined(separator: ", "))
    }
}
