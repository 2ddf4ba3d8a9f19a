import Dispatch
import Foundation
import Logging

enum LogSetup {
    static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Catches some signals from the moment it is made: make it before any thread is started, so
/// that every thread inherits the handling (a signal sent to a thread started earlier would be
/// lost), then `wait()` for the first of them.
final class SignalWaiter: @unchecked Sendable {
    private let lock = NSLock()
    private var sources: [DispatchSourceSignal] = []
    private var received: Int32?
    private var continuation: CheckedContinuation<Int32, Never>?

    init(_ signals: [Int32]) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in fire(number) }
            source.resume()
            sources.append(source)
        }
    }

    func wait() async -> Int32 {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            let already = lock.withLock { () -> Int32? in
                if let received { return received }
                self.continuation = continuation
                return nil
            }
            if let already { continuation.resume(returning: already) }
        }
    }

    private func fire(_ number: Int32) {
        let pending = lock.withLock { () -> CheckedContinuation<Int32, Never>? in
            if received == nil { received = number }
            defer { continuation = nil }
            return continuation
        }
        pending?.resume(returning: number)
    }
}
