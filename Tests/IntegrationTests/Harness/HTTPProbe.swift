#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// One HTTP/1.1 response as read off the wire.
struct HTTPProbeResponse: CustomStringConvertible {
    var status: Int
    var statusLine: String
    /// Header names in lower case.
    var headers: [String: String]
    var body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }
    var json: [String: Any]? { JSON.object(body) }

    var description: String {
        "\(statusLine) \(headers) body \(body.count) bytes: \(TestClient.text(body, limit: 300))"
    }
}

/// A minimal HTTP/1.1 client over a raw loopback socket: one request per connection
/// (`Connection: close`), the response read until the server closes or `Content-Length` is met.
/// Raw bytes, so the test sees exactly what the endpoint sent (a HEAD must carry no body).
enum HTTPProbe {
    /// Sends `method path` to 127.0.0.1:`port` and reads the response within `timeout` seconds.
    static func request(_ method: String = "GET", port: UInt16, path: String, timeout: Double = 5) throws -> HTTPProbeResponse {
        let fd = try Sockets.connected(port: port)
        defer { Sockets.closeSocket(fd) }
        let request = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUser-Agent: ptpchat-it\r\nConnection: close\r\n\r\n".utf8)
        var offset = 0
        while offset < request.count {
            let written = request[offset...].withUnsafeBytes { Sockets.sendSome(fd, $0) }
            guard written > 0 else { throw Sockets.failure("send to 127.0.0.1:\(port)") }
            offset += written
        }

        let deadline = Deadline(timeout)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var head: (status: Int, line: String, headers: [String: String], bodyStart: Int)?
        while true {
            if head == nil, let end = find([13, 10, 13, 10], in: bytes) {
                head = try parseHead(Array(bytes[0..<end]), bodyStart: end + 4)
            }
            if let head {
                // A HEAD answer carries no body whatever Content-Length says: read on until the
                // server closes (Connection: close), so that a body sent by mistake is seen.
                if method != "HEAD", let length = head.headers["content-length"].flatMap(Int.init), bytes.count - head.bodyStart >= length { break }
            }
            if deadline.hasPassed {
                if head != nil && method == "HEAD" { break }
                throw Sockets.Failure(description: "\(method) \(path) on port \(port): no complete response within \(timeout) s; got \(bytes.count) bytes")
            }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, deadline.remainingMilliseconds) > 0 else { continue }
            let count = chunk.withUnsafeMutableBytes { Sockets.receiveSome(fd, $0) }
            if count > 0 {
                bytes.append(contentsOf: chunk[0..<count])
            } else if count == 0 {
                break
            } else if errno != EINTR {
                throw Sockets.failure("recv from 127.0.0.1:\(port)")
            }
        }
        if head == nil, let end = find([13, 10, 13, 10], in: bytes) {
            head = try parseHead(Array(bytes[0..<end]), bodyStart: end + 4)
        }
        guard let head else {
            throw Sockets.Failure(description: "\(method) \(path): the server closed without a response head: \(TestClient.text(bytes))")
        }
        var body = Array(bytes[head.bodyStart...])
        if method == "HEAD" {
            // Whatever came after the head is a body the server must not have sent; the test sees it.
            return HTTPProbeResponse(status: head.status, statusLine: head.line, headers: head.headers, body: body)
        }
        if let length = head.headers["content-length"].flatMap(Int.init), body.count > length {
            body = Array(body[0..<length])
        }
        return HTTPProbeResponse(status: head.status, statusLine: head.line, headers: head.headers, body: body)
    }

    /// Polls `GET path` until it answers (any status) or `timeout` passes; the last error otherwise.
    static func waitForAnswer(port: UInt16, path: String = "/healthz", timeout: Double) throws -> HTTPProbeResponse {
        let deadline = Deadline(timeout)
        while true {
            do {
                return try request(port: port, path: path, timeout: max(deadline.remaining, 1))
            } catch {
                if deadline.hasPassed { throw error }
                usleep(20_000)
            }
        }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start
        }
        return nil
    }

    private static func parseHead(_ bytes: [UInt8], bodyStart: Int) throws -> (status: Int, line: String, headers: [String: String], bodyStart: Int) {
        let lines = String(decoding: bytes, as: UTF8.self).components(separatedBy: "\r\n")
        let statusLine = lines.first ?? ""
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw Sockets.Failure(description: "not an HTTP status line: \(statusLine)")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else {
                throw Sockets.Failure(description: "bad header line: \(line)")
            }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, statusLine, headers, bodyStart)
    }
}
