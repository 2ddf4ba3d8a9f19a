import NIOConcurrencyHelpers
import NIOCore

/// The latest CHANNEL announcement per `channel_id`, as the frame the relay sends, kept for
/// `channels.ttl` without a refresh and sent to every newly connected client.
final class ChannelDirectory: Sendable {
    private struct Entry {
        var frame: ByteBuffer
        var expires: NIODeadline
    }

    private let ttl: NIOLockedValueBox<TimeAmount>
    private let entries = NIOLockedValueBox<[String: Entry]>([:])

    init(ttl: Double) {
        self.ttl = NIOLockedValueBox(.nanoseconds(Int64(max(ttl, 0.001) * 1e9)))
    }

    func update(ttl: Double) {
        self.ttl.withLockedValue { $0 = .nanoseconds(Int64(max(ttl, 0.001) * 1e9)) }
    }

    func update(channelID: String, frame: ByteBuffer, now: NIODeadline = .now()) {
        let ttl = self.ttl.withLockedValue { $0 }
        entries.withLockedValue { $0[channelID] = Entry(frame: frame, expires: now + ttl) }
    }

    /// The live announcements, expired ones removed. Asked at every HELLO: with none announced it
    /// reads no clock, and the table is rebuilt only when something in it expired.
    func current(now: @autoclosure () -> NIODeadline = .now()) -> [ByteBuffer] {
        entries.withLockedValue { table in
            guard !table.isEmpty else { return [] }
            let now = now()
            if table.values.contains(where: { $0.expires <= now }) {
                table = table.filter { $0.value.expires > now }
            }
            return table.values.map(\.frame)
        }
    }

    var count: Int { entries.withLockedValue { $0.count } }
}
