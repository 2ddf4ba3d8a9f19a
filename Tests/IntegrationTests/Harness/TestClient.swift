#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import XCTest

/// One frame from the relay: its bytes (without the length) and its decoded JSON object.
struct ReceivedFrame {
    var bytes: [UInt8]
    var json: [String: Any]
}

/// A blocking test client over a real TCP socket to the relay. Every frame it receives is checked
/// against PROFILE.md section 1 (ASCII only, one JSON object); keepalives are counted and skipped.
final class TestClient {
    let label: String
    private var fd: Int32
    private var buffer: [UInt8] = []
    private(set) var isClosed = false
    private(set) var keepalivesReceived = 0
    /// Why the connection ended, when it did.
    private(set) var closeReason: String?

    /// Frames larger than this from the relay are treated as a broken stream.
    static let maxInboundFrame = 16 << 20

    /// `source`: the loopback address the connection comes from (see `Sockets.connected`).
    init(port: UInt16, label: String, source: String? = nil) throws {
        self.label = label
        self.fd = try Sockets.connected(port: port, source: source)
    }

    /// A client on a connected stream socket made elsewhere (one end of a TLS bridge).
    init(descriptor: Int32, label: String) {
        self.label = label
        self.fd = descriptor
    }

    deinit { close() }

    func close() {
        if fd >= 0 {
            Sockets.closeSocket(fd)
            fd = -1
        }
        isClosed = true
    }

    // MARK: Sending

    /// Writes `bytes` as they are. Returns false when the connection is gone.
    @discardableResult
    func sendRaw(_ bytes: [UInt8]) -> Bool {
        guard fd >= 0 else { return false }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Sockets.sendSome(fd, $0) }
            if written < 0 {
                if errno == EINTR { continue }
                closeReason = closeReason ?? "send failed: \(String(cString: strerror(errno)))"
                return false
            }
            offset += written
        }
        return true
    }

    /// Writes one frame: a 4-byte big-endian length, then `payload`.
    @discardableResult
    func sendFrame(_ payload: [UInt8]) -> Bool {
        sendRaw(Self.lengthPrefix(payload.count) + payload)
    }

    /// Writes `json` as one frame (compact JSON, UTF-8).
    @discardableResult
    func send(json: [String: Any]) -> Bool {
        sendFrame(JSON.data(json))
    }

    /// Writes the JSON text as one frame, byte for byte (for the existing client's exact frames).
    @discardableResult
    func send(text: String) -> Bool {
        sendFrame(Array(text.utf8))
    }

    @discardableResult
    func sendKeepalive() -> Bool {
        sendRaw([0, 0, 0, 0])
    }

    static func lengthPrefix(_ length: Int) -> [UInt8] {
        let value = UInt32(length)
        return [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    // MARK: Receiving

    /// The next frame within `timeout` seconds (keepalives skipped), or nil on timeout or close.
    func receiveFrame(timeout: Double, file: StaticString = #filePath, line: UInt = #line) -> ReceivedFrame? {
        let deadline = Deadline(timeout)
        while true {
            if let payload = takeFrame() {
                if payload.isEmpty {
                    keepalivesReceived += 1
                    continue
                }
                if let index = payload.firstIndex(where: { $0 >= 0x80 }) {
                    XCTFail("\(label): the relay sent a frame with a non-ASCII byte at \(index): \(Self.text(payload))", file: file, line: line)
                }
                guard let json = JSON.object(payload) else {
                    XCTFail("\(label): the relay sent a frame that is not a JSON object: \(Self.text(payload))", file: file, line: line)
                    continue
                }
                return ReceivedFrame(bytes: payload, json: json)
            }
            if isClosed || deadline.hasPassed { return nil }
            readMore(waitingMilliseconds: deadline.remainingMilliseconds)
        }
    }

    /// The first frame of `verb` within `timeout`, with its bytes.
    func receiveFrame(verb: String, timeout: Double, file: StaticString = #filePath, line: UInt = #line) -> ReceivedFrame? {
        let deadline = Deadline(timeout)
        while let frame = receiveFrame(timeout: deadline.remaining, file: file, line: line) {
            if frame.json.verb == verb { return frame }
        }
        return nil
    }

    /// The next frame's JSON within `timeout` seconds, or nil.
    func receive(timeout: Double = 3, file: StaticString = #filePath, line: UInt = #line) -> [String: Any]? {
        receiveFrame(timeout: timeout, file: file, line: line)?.json
    }

    /// The first frame within `timeout` for which `predicate` holds; frames before it are dropped.
    func receive(
        timeout: Double = 3, file: StaticString = #filePath, line: UInt = #line, where predicate: ([String: Any]) -> Bool
    ) -> [String: Any]? {
        let deadline = Deadline(timeout)
        while let frame = receiveFrame(timeout: deadline.remaining, file: file, line: line) {
            if predicate(frame.json) { return frame.json }
        }
        return nil
    }

    /// The first frame of `verb` within `timeout`, skipping frames of other verbs.
    func receive(verb: String, timeout: Double = 3, file: StaticString = #filePath, line: UInt = #line) -> [String: Any]? {
        receive(timeout: timeout, file: file, line: line) { $0.verb == verb }
    }

    /// Reads (and drops) frames until the relay closes the connection. True when it closed within
    /// `timeout` seconds.
    func expectClosed(timeout: Double) -> Bool {
        let deadline = Deadline(timeout)
        while !isClosed {
            if deadline.hasPassed { return false }
            _ = takeFrame()
            readMore(waitingMilliseconds: deadline.remainingMilliseconds)
        }
        return true
    }

    /// Frames received within `timeout` seconds, until then or the close.
    func drain(timeout: Double) -> [[String: Any]] {
        let deadline = Deadline(timeout)
        var frames: [[String: Any]] = []
        while let frame = receiveFrame(timeout: deadline.remaining) { frames.append(frame.json) }
        return frames
    }

    /// A whole frame from the buffer (an empty array for a keepalive), or nil.
    private func takeFrame() -> [UInt8]? {
        guard buffer.count >= 4 else { return nil }
        let length = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
        if length > Self.maxInboundFrame {
            XCTFail("\(label): the relay sent a length header of \(length) bytes")
            buffer.removeAll()
            close()
            return nil
        }
        guard buffer.count >= 4 + length else { return nil }
        let payload = Array(buffer[4..<(4 + length)])
        buffer.removeFirst(4 + length)
        return payload
    }

    /// Waits up to `waitingMilliseconds` for bytes, appends what came; marks the close.
    private func readMore(waitingMilliseconds: Int32) {
        guard fd >= 0, !isClosed else { return }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, waitingMilliseconds)
        guard ready > 0 else { return }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { Sockets.receiveSome(fd, $0) }
        if count > 0 {
            buffer.append(contentsOf: chunk[0..<count])
        } else if count == 0 {
            closeReason = closeReason ?? "closed by the relay"
            isClosed = true
        } else if errno != EINTR && errno != EAGAIN {
            closeReason = closeReason ?? "recv failed: \(String(cString: strerror(errno)))"
            isClosed = true
        }
    }

    static func text(_ bytes: [UInt8], limit: Int = 600) -> String {
        let text = String(decoding: bytes.prefix(limit), as: UTF8.self)
        return bytes.count > limit ? text + "…" : text
    }
}
