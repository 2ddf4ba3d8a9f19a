import CSystemd
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// systemd's service protocol through libsystemd. Outside systemd (no `NOTIFY_SOCKET`, no
/// `WATCHDOG_USEC`, no `LISTEN_FDS`) every call is a no-op.
public enum Systemd {
    /// Sends `state` (`READY=1`, `STATUS=…`, …) to the service manager; false when not under one.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    public static func ready(status: String? = nil) {
        notify(["READY=1", "MAINPID=\(getpid())", status.map { "STATUS=\($0)" }].compactMap { $0 }.joined(separator: "\n"))
    }

    public static func reloading() {
        notify("RELOADING=1\nMONOTONIC_USEC=\(monotonicMicroseconds())")
    }

    public static func stopping() {
        notify("STOPPING=1")
    }

    public static func status(_ text: String) {
        notify("STATUS=\(text)")
    }

    public static func watchdogPing() {
        notify("WATCHDOG=1")
    }

    /// The watchdog period systemd asked for (`WATCHDOG_USEC`, for this process), in seconds.
    public static func watchdogPeriod() -> Double? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return Double(microseconds) / 1_000_000
    }

    /// Listening sockets passed by systemd (`LISTEN_FDS`, names from `FileDescriptorName=`). The
    /// environment variables are removed so that child processes do not take them.
    public static func listeners() -> [(descriptor: Int32, name: String)] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [] }
        defer {
            if let names {
                for index in 0..<Int(count) { free(names[index]) }
                free(names)
            }
        }
        return (0..<Int(count)).map { index in
            let name = names?[index].map { String(cString: $0) } ?? "unknown"
            return (Int32(SD_LISTEN_FDS_START) + Int32(index), name)
        }
    }

    /// `CLOCK_MONOTONIC` in microseconds, as `MONOTONIC_USEC=` wants it.
    public static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }
}
