#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// Thin POSIX socket helpers for the harness: loopback only, blocking, close-on-exec (so child
/// processes never inherit a test's connection).
enum Sockets {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func failure(_ what: String) -> Failure {
        Failure(description: "\(what): \(String(cString: strerror(errno))) (errno \(errno))")
    }

    static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    static func makeTCPSocket() throws -> Int32 {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw failure("socket") }
        return fd
    }

    /// Every port `freePort` has handed out in this process.
    private static let handedOut = Mutex<Set<UInt16>>([])

    /// A port that was free a moment ago and that this process was never given before: the kernel
    /// can give the same free port to two `bind(0)` calls in a row, and a test that asked for a
    /// stats port and then a listen port once got one port for both (the relay then failed with
    /// "address already in use" on its second listener).
    static func freePort() throws -> UInt16 {
        for _ in 0..<64 {
            let port = try anyFreePort()
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw Failure(description: "no new free port in 64 tries")
    }

    /// A port that was free a moment ago: bind port 0 on 127.0.0.1, read it, close.
    private static func anyFreePort() throws -> UInt16 {
        let fd = try makeTCPSocket()
        defer { closeSocket(fd) }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw failure("bind 127.0.0.1:0") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw failure("getsockname") }
        return UInt16(bigEndian: address.sin_port)
    }

    /// A listening socket on 127.0.0.1:`port` (to occupy a port); close it with `closeSocket`.
    static func listening(port: UInt16) throws -> Int32 {
        let fd = try makeTCPSocket()
        var address = loopback(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let error = failure("listen on 127.0.0.1:\(port)")
            closeSocket(fd)
            throw error
        }
        return fd
    }

    /// A connected TCP socket to 127.0.0.1:`port` with TCP_NODELAY, or an error (refused, …).
    /// `source` (127.0.0.2, 127.0.0.3, …) binds the client's end to that loopback address first,
    /// so the relay sees the connection come from it.
    static func connected(port: UInt16, source: String? = nil) throws -> Int32 {
        let fd = try makeTCPSocket()
        if let source {
            var local = loopback(port: 0)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else {
                let error = failure("bind to \(source)")
                closeSocket(fd)
                throw error
            }
        }
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let error = failure("connect to 127.0.0.1:\(port)")
            closeSocket(fd)
            throw error
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// Whether a TCP handshake to 127.0.0.1:`port` from `source` completes within `seconds` (the
    /// kernel's part only: a listener whose filter drops the SYNs never answers). The socket is
    /// closed either way.
    static func handshakeCompletes(port: UInt16, source: String, within seconds: Double) throws -> Bool {
        let fd = try makeTCPSocket()
        defer { closeSocket(fd) }
        var local = loopback(port: 0)
        local.sin_addr.s_addr = inet_addr(source)
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw failure("bind to \(source)") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var address = loopback(port: port)
        let started = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if started == 0 { return true }
        guard errno == EINPROGRESS else { throw failure("connect to 127.0.0.1:\(port)") }
        return connectionCompletes(fd, within: seconds)
    }

    /// Whether the non-blocking connect under way on `fd` completes within `seconds`.
    private static func connectionCompletes(_ fd: Int32, within seconds: Double) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&entry, 1, Int32(seconds * 1000)) == 1 else { return false }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error == 0
    }

    /// As `handshakeCompletes`, over IPv6 from ::1 to [::1]:`port`; nil when this machine has no
    /// IPv6 loopback.
    static func handshakeCompletesIPv6(port: UInt16, within seconds: Double) throws -> Bool? {
        #if canImport(Glibc)
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_INET6, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return nil }
        defer { closeSocket(fd) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = port.bigEndian
        address.sin6_addr = in6addr_loopback
        let started = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        if started == 0 { return true }
        if errno == EADDRNOTAVAIL || errno == ENETUNREACH { return nil }
        guard errno == EINPROGRESS else { throw failure("connect to [::1]:\(port)") }
        return connectionCompletes(fd, within: seconds)
    }

    /// `send(2)` without SIGPIPE; returns the bytes written or -1 (errno set).
    static func sendSome(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
    }

    /// `recv(2)`: the bytes read, 0 at end of stream, -1 on error (errno set).
    static func receiveSome(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) -> Int {
        recv(fd, buffer.baseAddress, buffer.count, 0)
    }

    static func closeSocket(_ fd: Int32) {
        _ = close(fd)
    }
}

/// A point in time to poll against.
struct Deadline {
    let end: Date

    init(_ seconds: Double) { end = Date(timeIntervalSinceNow: seconds) }

    var remaining: Double { max(0, end.timeIntervalSinceNow) }
    var hasPassed: Bool { end.timeIntervalSinceNow <= 0 }
    /// Milliseconds left, for `poll(2)`.
    var remainingMilliseconds: Int32 { Int32(min(Double(Int32.max), (remaining * 1000).rounded(.up))) }

    /// Calls `condition` every `interval` seconds until it is true (returns true) or the deadline
    /// passes (returns false after one last try).
    static func poll(timeout: Double, interval: Double = 0.01, _ condition: () -> Bool) -> Bool {
        let deadline = Deadline(timeout)
        while true {
            if condition() { return true }
            if deadline.hasPassed { return false }
            usleep(useconds_t(min(interval, deadline.remaining) * 1_000_000))
        }
    }
}

