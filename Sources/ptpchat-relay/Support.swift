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

/// Waits for the first of some signals; the default action of each is turned off meanwhile.
enum SignalWaiter {
    static func wait(for signals: [Int32]) async -> Int32 {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            let state = SignalState(continuation: continuation)
            for number in signals {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { state.fire(number) }
                source.resume()
                state.keep(source)
            }
        }
    }

    private final class SignalState: @unchecked Sendable {
        private let lock = NSLock()
        private var continuation: CheckedContinuation<Int32, Never>?
        private var sources: [DispatchSourceSignal] = []

        init(continuation: CheckedContinuation<Int32, Never>) {
            self.continuation = continuation
        }

        func keep(_ source: DispatchSourceSignal) {
            lock.withLock { sources.append(source) }
        }

        func fire(_ number: Int32) {
            let pending = lock.withLock { () -> CheckedContinuation<Int32, Never>? in
                defer { continuation = nil }
                return continuation
            }
            pending?.resume(returning: number)
        }
    }
}
