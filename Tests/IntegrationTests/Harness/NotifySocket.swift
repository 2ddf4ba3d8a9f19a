#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A stand-in for systemd's notification socket (`NOTIFY_SOCKET`): a unix datagram socket in /tmp.
/// A thread receives every datagram the relay sends with sd_notify and stamps it with the time it
/// arrived, so tests can wait for a message (with a deadline) and measure the pace of pings.
final class NotifySocket: @unchecked Sendable {
    /// One sd_notify datagram: its text and its `KEY=value` lines.
    struct Message: CustomStringConvertible {
        let text: String
        let at: Date
        /// `KEY=value` lines; a key given twice keeps its last value.
        var fields: [String: String] {
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            return fields
        }

        func has(_ key: String, _ value: String? = nil) -> Bool {
            guard let found = fields[key] else { return false }
            return value.map { $0 == found } ?? true
        }

        var description: String { text.replacingOccurrences(of: "\n", with: "\\n") }
    }

    /// The socket's path: the value for `NOTIFY_SOCKET`.
    let path: String
    private let fd: Int32
    private let condition = NSCondition()
    private var received: [Message] = []
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    init() throws {
        // sun_path holds 108 bytes: a short name directly in /tmp.
        path = "/tmp/ptpn-\(UUID().uuidString.prefix(12).lowercased()).sock"
        #if canImport(Glibc)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        fd = socket(AF_UNIX, SOCK_DGRAM, 0)
        #endif
        guard fd >= 0 else { throw Sockets.failure("socket(AF_UNIX, SOCK_DGRAM)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            let error = Sockets.failure("bind \(path)")
            Sockets.closeSocket(fd)
            throw error
        }
        let thread = Thread { [self] in self.receiveLoop() }
        thread.name = "notify-socket"
        thread.start()
    }

    deinit { close() }

    private func receiveLoop() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            condition.lock()
            let stop = stopping
            condition.unlock()
            if stop { break }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 50) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard count > 0 else { continue }
            let message = Message(text: String(decoding: buffer[0..<count], as: UTF8.self), at: Date())
            condition.lock()
            received.append(message)
            condition.broadcast()
            condition.unlock()
        }
        finished.signal()
    }

    /// Stops the thread, closes and removes the socket. Safe to call twice.
    func close() {
        condition.lock()
        let already = stopping
        stopping = true
        condition.unlock()
        guard !already else { return }
        finished.wait()
        Sockets.closeSocket(fd)
        unlink(path)
    }

    /// Every message so far, in arrival order.
    var messages: [Message] {
        condition.lock()
        defer { condition.unlock() }
        return received
    }

    /// The first message at index `from` or later for which `predicate` holds, with its index;
    /// waits up to `timeout` seconds for it.
    func waitFor(from start: Int = 0, timeout: Double, where predicate: (Message) -> Bool) -> (index: Int, message: Message)? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        var next = start
        while true {
            while next < received.count {
                if predicate(received[next]) { return (next, received[next]) }
                next += 1
            }
            if !condition.wait(until: deadline) && next >= received.count { return nil }
        }
    }

    /// Everything received, one message a line, for failure messages.
    var transcript: String {
        let messages = self.messages
        guard let first = messages.first?.at else { return "(no notification)" }
        return messages.map { String(format: "+%.3fs ", $0.at.timeIntervalSince(first)) + $0.description }.joined(separator: "\n")
    }
}
