import Foundation

/// Certificates made by the `openssl` command line for one test: a CA, relay certificates
/// (subjectAltName `IP:127.0.0.1` and `DNS:localhost`, usable as server and as mesh client) and
/// node certificates (subjectAltName `URI:urn:uuid:<GUID>`), each signed by the CA. EC P-256
/// keys, PEM files in `directory`.
struct TestCertificates {
    /// A certificate and its key, as file paths.
    struct Pair {
        var cert: String
        var key: String
    }

    let directory: URL
    let name: String
    var ca: String { directory.appendingPathComponent("\(name).pem").path }

    /// Makes the CA `name` in `directory`.
    init(in directory: URL, name: String = "ca") throws {
        self.directory = directory
        self.name = name
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Self.shell(
            """
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
              -subj "/CN=ptpchat test CA \(name)" -keyout \(name).key -out \(name).pem \
              -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
            """, in: directory)
    }

    /// A relay certificate signed by this CA (`file`.pem and `file`.key).
    func relay(_ file: String = "relay") throws -> Pair {
        try issue(file, subject: "/CN=localhost", extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth,clientAuth")
    }

    /// A node certificate proving `id` (`urn:uuid:` in its subjectAltName).
    func node(_ id: String, file: String? = nil) throws -> Pair {
        try issue(file ?? "node-\(id.prefix(8))", subject: "/CN=\(id)", extensions: "subjectAltName=URI:urn:uuid:\(id)\\nextendedKeyUsage=clientAuth")
    }

    /// A client certificate that names no node id.
    func anonymous(_ file: String) throws -> Pair {
        try issue(file, subject: "/CN=\(file)", extensions: "subjectAltName=DNS:\(file).example\\nextendedKeyUsage=clientAuth")
    }

    private func issue(_ file: String, subject: String, extensions: String) throws -> Pair {
        try Self.shell(
            """
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "\(subject)" -keyout \(file).key -out \(file).csr
            printf '\(extensions)\\n' > \(file).ext
            openssl x509 -req -in \(file).csr -CA \(name).pem -CAkey \(name).key -CAcreateserial -days 30 -extfile \(file).ext -out \(file).pem
            """, in: directory)
        return Pair(cert: directory.appendingPathComponent("\(file).pem").path, key: directory.appendingPathComponent("\(file).key").path)
    }

    /// Runs `script` with `bash -euo pipefail` in `directory`; throws with its output when it fails.
    @discardableResult
    static func shell(_ script: String, in directory: URL) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-euo", "pipefail", "-c", script]
        process.currentDirectoryURL = directory
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let bytes = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: bytes, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw Sockets.Failure(description: "shell script failed (status \(process.terminationStatus)):\n\(script)\n\(text)")
        }
        return text
    }
}
