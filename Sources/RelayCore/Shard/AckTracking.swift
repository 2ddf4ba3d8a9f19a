import NIOCore
import PTPProtocol

/// Messages this shard sent to several next hops, counting their answers before the hop they came
/// from gets its ACK (PROFILE.md section 5). A message with one next hop needs no entry here.
/// Owned by the shard's event loop.
struct SplitForwards {
    private struct Entry {
        var outstanding: Int
        var acked: Int
    }

    private var entries: [UInt64: Entry] = [:]
    private var lastToken: UInt64 = 0

    /// Starts counting `outstanding` answers; the token goes into each delivery's `Upstream`.
    mutating func open(outstanding: Int) -> UInt64 {
        lastToken += 1
        entries[lastToken] = Entry(outstanding: outstanding, acked: 0)
        return lastToken
    }

    /// A next hop answered (`acked`, or failed: its NACK already went upstream). True when it was
    /// the last answer and one of them ACKed: the upstream gets its ACK now.
    mutating func answered(_ token: UInt64, acked: Bool) -> Bool {
        guard var entry = entries[token] else { return false }
        entry.outstanding -= 1
        if acked { entry.acked += 1 }
        guard entry.outstanding == 0 else {
            entries[token] = entry
            return false
        }
        entries[token] = nil
        return entry.acked > 0
    }

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }
}

/// Messages from the store out for delivery on this shard, by `seq`: the recipient, the attempts
/// made before this one, and whether the outcome is being written (the row is not read again
/// until it is). Owned by the shard's event loop.
struct StoredInFlight {
    struct Entry {
        var recipient: GUID
        var attempts: Int
        var settling: Bool
    }

    private var entries: [Int64: Entry] = [:]
    /// Reads of the store under way on this shard, and the rows deleted (delivered) meanwhile: a
    /// read may have seen such a row before its delete committed, and must not send it again.
    private var readsUnderWay = 0
    private var deletedDuringReads: Set<Int64> = []

    /// Whether a row read from the store must not be sent: out for delivery, or delivered since
    /// a read under way began.
    func contains(_ seq: Int64) -> Bool { entries[seq] != nil || deletedDuringReads.contains(seq) }

    mutating func readStarted() { readsUnderWay += 1 }

    /// Call after the read's rows went through `contains`.
    mutating func readFinished() {
        readsUnderWay = max(readsUnderWay - 1, 0)
        if readsUnderWay == 0 && !deletedDuringReads.isEmpty { deletedDuringReads = [] }
    }

    /// The row was delivered and its delete committed.
    mutating func deleted(_ seq: Int64) {
        entries[seq] = nil
        if readsUnderWay > 0 { deletedDuringReads.insert(seq) }
    }

    mutating func sent(_ seq: Int64, to recipient: GUID, attemptsBefore attempts: Int) {
        entries[seq] = Entry(recipient: recipient, attempts: attempts, settling: false)
    }

    /// The delivery's outcome is being written: returns the entry unless it already was.
    mutating func settle(_ seq: Int64) -> Entry? {
        guard var entry = entries[seq], !entry.settling else { return nil }
        entry.settling = true
        entries[seq] = entry
        return entry
    }

    /// The store wrote the outcome: the row may be read again.
    mutating func settled(_ seq: Int64) { entries[seq] = nil }
}
