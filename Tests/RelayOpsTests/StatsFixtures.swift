import Foundation
import NIOConcurrencyHelpers
import PTPProtocol

@testable import RelayCore
@testable import RelayOps

/// A snapshot source the test controls: `StatsCollector(readiness:source:)` reads it.
final class FakeRelay: Sendable {
    static let nodeID = GUID("5d1c9a4e-2b7f-4e3a-9d61-0c8b7a6f5e41")!
    private let box: NIOLockedValueBox<RelaySnapshot>
    private let failing = NIOLockedValueBox(false)

    init() {
        box = NIOLockedValueBox(
            RelaySnapshot(
                identity: NodeAddress(id: Self.nodeID, name: "relay"), uptime: 12.34, clients: 3, handshaking: 1, nodes: 3,
                counters: RelayCounters(), storeMessages: 5, storeBytes: 512))
    }

    var snapshot: RelaySnapshot { box.withLockedValue { $0 } }

    func change(_ body: (inout RelaySnapshot) -> Void) { box.withLockedValue { body(&$0) } }

    func fail(_ on: Bool) { failing.withLockedValue { $0 = on } }

    struct Unavailable: Error, CustomStringConvertible {
        var description: String { "the loops did not answer" }
    }

    func source() -> StatsCollector.Source {
        { [self] in
            if failing.withLockedValue({ $0 }) { throw Unavailable() }
            return snapshot
        }
    }

    /// Counters after some traffic: 4 MESSAGEs (1000 bytes), 2 JOINs, ACKs, NACKs, drops.
    static func busyCounters() -> RelayCounters {
        var counters = RelayCounters()
        counters.connectionsAccepted = 6
        counters.connectionsClosed = 2
        counters.framesIn = 40
        counters.framesOut = 50
        counters.bytesIn = 4000
        counters.bytesOut = 5000
        for _ in 0..<4 { counters.relayed(.message, bytes: 250) }
        for _ in 0..<2 { counters.relayed(.join, bytes: 100) }
        counters.acksSent = 3
        counters.acksReceived = 4
        counters.nack(.unreachable)
        counters.nack(.invalid)
        counters.nack(.invalid)
        counters.drop(.invalid)
        counters.drop(.invalid)
        counters.drop(.slowConsumer)
        counters.stored = 5
        counters.storedSent = 1
        counters.storedDelivered = 1
        return counters
    }
}

/// `name{labels} value` lines of Prometheus text, by `name{labels}` as written.
func prometheusSeries(_ text: String) -> [String: Double] {
    var series: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        series[String(line[..<space])] = value
    }
    return series
}
