import Foundation

/// What the connections counted; each event loop owns one and they are added up at the end (and,
/// for the progress bar, a few of them are published while the run goes on).
public struct BenchCounters: Sendable, Equatable {
    /// MESSAGEs written by the senders.
    public var sent: UInt64 = 0
    /// Bench MESSAGEs of this run that reached the connection they were sent to.
    public var delivered: UInt64 = 0
    /// The relay's ACKs for this run's MESSAGEs, at their senders.
    public var acked: UInt64 = 0
    /// The relay's NACKs for this run's MESSAGEs.
    public var nacked: UInt64 = 0
    /// Frames that belong to no message of this run, or reached the wrong connection.
    public var unexpected: UInt64 = 0
    /// Connections that broke or were closed by the relay during the run.
    public var connectionErrors: UInt64 = 0
    /// Deliveries, ACKs and payload bytes inside the measurement window (after the warm-up, until
    /// the send phase ended): the rates are these over the window's length.
    public var deliveredInWindow: UInt64 = 0
    public var ackedInWindow: UInt64 = 0
    public var payloadBytesInWindow: UInt64 = 0

    public init() {}

    public static func += (lhs: inout BenchCounters, rhs: BenchCounters) {
        lhs.sent += rhs.sent
        lhs.delivered += rhs.delivered
        lhs.acked += rhs.acked
        lhs.nacked += rhs.nacked
        lhs.unexpected += rhs.unexpected
        lhs.connectionErrors += rhs.connectionErrors
        lhs.deliveredInWindow += rhs.deliveredInWindow
        lhs.ackedInWindow += rhs.ackedInWindow
        lhs.payloadBytesInWindow += rhs.payloadBytesInWindow
    }
}

/// The result of one run: rates, latency percentiles, what went wrong; rendered as a table or JSON.
public struct BenchSummary: Sendable {
    public var relay: String
    public var shape: BenchShape
    public var threads: Int
    public var counters: BenchCounters
    /// Send time to delivery at the recipient (relay-load's `lat_*`).
    public var delivery: LatencyHistogram
    /// Send time to the relay's ACK back at the sender (relay-load's `ack_*`).
    public var ack: LatencyHistogram
    /// Seconds from the start of the send phase to its end (deadline, all messages ACKed, or Ctrl-C).
    public var sendSeconds: Double
    /// Seconds of the measurement window: `sendSeconds` less the warm-up.
    public var windowSeconds: Double
    /// The run was stopped by SIGINT.
    public var interrupted: Bool
    /// The reason of the first NACK, to tell the user why messages were refused.
    public var firstNackReason: String?

    public init(
        relay: String, shape: BenchShape, threads: Int, counters: BenchCounters, delivery: LatencyHistogram, ack: LatencyHistogram,
        sendSeconds: Double, windowSeconds: Double, interrupted: Bool, firstNackReason: String? = nil
    ) {
        self.relay = relay
        self.shape = shape
        self.threads = threads
        self.counters = counters
        self.delivery = delivery
        self.ack = ack
        self.sendSeconds = sendSeconds
        self.windowSeconds = windowSeconds
        self.interrupted = interrupted
        self.firstNackReason = firstNackReason
    }

    /// MESSAGEs delivered to their recipients per second (relay-load's `delivered_per_s`).
    public var messagesPerSecond: Double { rate(counters.deliveredInWindow) }
    public var acksPerSecond: Double { rate(counters.ackedInWindow) }
    public var payloadMegabytesPerSecond: Double { rate(counters.payloadBytesInWindow) / 1_000_000 }

    /// Sent but never delivered (by the end of the drain).
    public var lost: UInt64 { counters.sent > counters.delivered ? counters.sent - counters.delivered : 0 }
    /// Sent but never ACKed (by the end of the drain).
    public var unacked: UInt64 { counters.sent > counters.acked ? counters.sent - counters.acked : 0 }
    /// NACKs, broken connections and frames that belong to no message of this run.
    public var errors: UInt64 { counters.nacked + counters.connectionErrors + counters.unexpected }

    /// Every message was delivered and ACKed, and nothing went wrong.
    public var isClean: Bool { lost == 0 && unacked == 0 && errors == 0 }

    public static let percentiles: [(label: String, value: Double)] = [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]

    private func rate(_ count: UInt64) -> Double { windowSeconds > 0 ? Double(count) / windowSeconds : 0 }

    /// The summary as a person reads it.
    public func table() -> String {
        var lines: [String] = []
        lines.append(
            "ptpchat bench \(relay): pattern \(shape.pattern.rawValue), \(shape.connections) connections, window \(shape.window), "
                + "payload \(shape.payload) B, \(threads) threads, \(shape.head.rawValue) head")
        var ran = "ran \(Self.fixed(sendSeconds, 2)) s"
        if shape.warmup > 0 { ran += " (measured the last \(Self.fixed(windowSeconds, 2)) s after \(Self.fixed(shape.warmup, 2)) s warm-up)" }
        if interrupted { ran += ", interrupted (Ctrl-C): the summary so far" }
        lines.append(ran)
        lines.append("")
        let rows: [(String, String)] = [
            ("msgs/s (delivered)", Self.grouped(UInt64(messagesPerSecond.rounded()))),
            ("acks/s", Self.grouped(UInt64(acksPerSecond.rounded()))),
            ("payload MB/s", Self.fixed(payloadMegabytesPerSecond, 2)),
            ("sent", Self.grouped(counters.sent)),
            ("delivered", Self.grouped(counters.delivered)),
            ("acked", Self.grouped(counters.acked)),
            ("lost (sent, never delivered)", Self.grouped(lost)),
            ("unacked (sent, never ACKed)", Self.grouped(unacked)),
            ("errors", Self.grouped(errors) + (errors == 0 ? "" : " (NACKs \(counters.nacked), connections \(counters.connectionErrors), unexpected frames \(counters.unexpected))")),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        for (name, value) in rows {
            lines.append(Self.pad(name, width) + "  " + value)
        }
        if let firstNackReason { lines.append("first NACK reason: \(firstNackReason)") }
        lines.append("")
        let columns = Self.percentiles.map(\.label) + ["max", "mean"]
        lines.append(Self.pad("latency (µs)", 16) + columns.map { Self.leftPad($0, 11) }.joined())
        for (name, histogram) in [("send → delivery", delivery), ("send → ACK", ack)] {
            let values = Self.percentiles.map { histogram.value(atPercentile: $0.value) }.map { Double($0) / 1000 }
                + [Double(histogram.max) / 1000, histogram.mean / 1000]
            lines.append(Self.pad(name, 16) + values.map { Self.leftPad(Self.fixed($0, 1), 11) }.joined())
        }
        lines.append("(\(Self.grouped(delivery.count)) deliveries and \(Self.grouped(ack.count)) ACKs timed, HDR histogram, 3 significant digits)")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The summary as one JSON object (keys sorted), for scripts.
    public func json() -> String {
        func latency(_ histogram: LatencyHistogram) -> Report.Latency {
            let us = { (value: Double) in (value * 10).rounded() / 10 }
            return Report.Latency(
                count: histogram.count,
                p50_us: us(Double(histogram.value(atPercentile: 50)) / 1000), p90_us: us(Double(histogram.value(atPercentile: 90)) / 1000),
                p99_us: us(Double(histogram.value(atPercentile: 99)) / 1000),
                p999_us: us(Double(histogram.value(atPercentile: 99.9)) / 1000), max_us: us(Double(histogram.max) / 1000),
                mean_us: us(histogram.mean / 1000))
        }
        let report = Report(
            relay: relay, pattern: shape.pattern.rawValue, head: shape.head.rawValue, conns: shape.connections, window: shape.window, payload: shape.payload,
            threads: threads, duration_s: shape.duration, messages_limit: shape.messages, warmup_s: shape.warmup,
            send_s: (sendSeconds * 1000).rounded() / 1000, window_s: (windowSeconds * 1000).rounded() / 1000,
            interrupted: interrupted, msgs_per_s: messagesPerSecond.rounded(), acks_per_s: acksPerSecond.rounded(),
            payload_mb_per_s: (payloadMegabytesPerSecond * 1000).rounded() / 1000,
            sent: counters.sent, delivered: counters.delivered, acked: counters.acked, nacked: counters.nacked,
            lost: lost, unacked: unacked, connection_errors: counters.connectionErrors, unexpected_frames: counters.unexpected,
            errors: errors, first_nack_reason: firstNackReason, latency: latency(delivery), ack_latency: latency(ack))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding plain numbers and strings cannot fail.
        return String(decoding: try! encoder.encode(report), as: UTF8.self) + "\n"
    }

    /// The JSON document; its names are part of the command's interface (docs, scripts).
    struct Report: Encodable {
        struct Latency: Encodable {
            var count: UInt64
            var p50_us, p90_us, p99_us, p999_us, max_us, mean_us: Double
        }

        var relay: String
        var pattern: String
        /// `spec` or `client`: the head keys of the bench's own frames.
        var head: String
        var conns, window, payload, threads: Int
        var duration_s: Double
        var messages_limit: UInt64
        var warmup_s, send_s, window_s: Double
        var interrupted: Bool
        var msgs_per_s, acks_per_s, payload_mb_per_s: Double
        var sent, delivered, acked, nacked, lost, unacked, connection_errors, unexpected_frames, errors: UInt64
        var first_nack_reason: String?
        var latency: Latency
        var ack_latency: Latency
    }

    /// 1234567 → "1,234,567"
    public static func grouped(_ value: UInt64) -> String {
        let digits = Array(String(value))
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return out
    }

    /// `value` with `places` decimals.
    public static func fixed(_ value: Double, _ places: Int) -> String {
        String(format: "%.\(places)f", value)
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    static func leftPad(_ text: String, _ width: Int) -> String {
        text.count >= width ? " " + text : String(repeating: " ", count: width - text.count) + text
    }
}

/// The one-line progress bar on a terminal: elapsed of the duration (or sent of `--messages`,
/// whichever is further along), with the rate so far.
public enum ProgressLine {
    public static func render(elapsed: Double, duration: Double, sent: UInt64, limit: UInt64, acked: UInt64, width: Int = 30) -> String {
        let byTime = duration > 0 ? elapsed / duration : 0
        let byCount = limit > 0 ? Double(sent) / Double(limit) : 0
        let fraction = Swift.min(1, Swift.max(0, Swift.max(byTime, byCount)))
        let filled = Int((fraction * Double(width)).rounded(.down))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let rate = elapsed > 0 ? Double(acked) / elapsed : 0
        return "[\(bar)] \(String(format: "%3.0f", fraction * 100))%  \(BenchSummary.fixed(elapsed, 1)) s  "
            + "\(BenchSummary.grouped(sent)) sent  \(BenchSummary.grouped(UInt64(rate.rounded()))) acks/s"
    }
}
