import Dispatch
import Foundation

/// Catches some signals from the moment it is made (make it before any thread starts, so every
/// thread inherits the handling) and delivers them, in order, through `signals`.
final class SignalStream: @unchecked Sendable {
    let signals: AsyncStream<Int32>
    private let sources: [DispatchSourceSignal]

    init(_ numbers: [Int32]) {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        signals = stream
        var sources: [DispatchSourceSignal] = []
        for number in numbers {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }
}

extension Int32 {
    var signalName: String {
        switch self {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGHUP: "SIGHUP"
        default: "signal \(self)"
        }
    }
}
