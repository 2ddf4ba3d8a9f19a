import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Who writes a plaintext connection's flushed output: the relay, straight to the socket (one
/// `send`), or NIO.
///
/// NIO's write path (the pipeline's write and flush, its queue of pending writes, the
/// bookkeeping after the system call) cost about 3,300 of the relay's 16,500 instructions per
/// message with a pair of clients (`lat`: Benchmarks/instructions.sh, callgrind), where the C
/// baseline writes with one call. So while NIO holds none of a connection's output, a flush sends
/// it directly; what the socket does not take goes to NIO, which queues it, waits for the socket
/// to drain and applies the water marks (the outbound limits) as for any write. From then until
/// NIO has written all it was given, flushes go through NIO too, each with a promise that counts
/// it done, so the bytes keep their order. A socket error also hands the output to NIO, which
/// meets the same error and closes the channel as usual; this connection never writes directly
/// again.
///
/// Only for plaintext connections (TLS must encrypt first). The socket is looked up (by
/// reflection, `ChannelSocket`) at the connection's first flush, before NIO was given anything of
/// it: from then on every write handed to NIO is tracked. (Looked up at the 16th flush, as at
/// first, a handshake's two writes went through NIO's write path: about 6,000 of the 105,000
/// instructions a handshake costs, `Benchmarks/instructions-hs.sh`.) The socket is written only
/// while the channel is active, on its own loop: NIO closes it there, and marks the channel
/// inactive as it does.
struct DirectSocketWrites {
    /// Flushes before the connection counts as busy (`isBusy`).
    static let busyAfterFlushes: UInt8 = 16
    /// `descriptor` before the first flush looked the socket up.
    private static let notLookedUp: Int32 = -2

    /// The socket, once found; `notLookedUp` before the first flush; -1 for good where there is
    /// none to use.
    private var descriptor: Int32
    /// Flushes left before the connection counts as busy; 0 after.
    private var flushesUntilBusy = Self.busyAfterFlushes
    /// Writes handed to NIO while direct writes are on, not completed yet.
    private var writesInNIO: UInt32 = 0

    /// `plaintext`: nothing between the relay and the socket transforms the bytes.
    init(plaintext: Bool) {
        descriptor = plaintext ? Self.notLookedUp : -1
    }

    enum Route {
        /// Written to the socket, all of it.
        case written
        /// For NIO to write; `tracked`: with a promise whose completion is told to
        /// `nioWriteCompleted` (direct writes wait for it).
        case throughNIO(ByteBuffer, tracked: Bool)
    }

    /// Sends `output`, or says how NIO should: always with `onlyThroughNIO` (a write whose
    /// completion the caller waits for).
    mutating func send(_ output: ByteBuffer, on channel: Channel, onlyThroughNIO: Bool = false) -> Route {
        if flushesUntilBusy > 0 { flushesUntilBusy -= 1 }
        if descriptor < 0 {
            guard descriptor == Self.notLookedUp else { return .throughNIO(output, tracked: false) }
            // The first flush: NIO holds nothing of this connection's, and what it is given from
            // here on is tracked.
            descriptor = ChannelSocket.descriptor(of: channel) ?? -1
            guard descriptor >= 0 else { return .throughNIO(output, tracked: false) }
        }
        guard writesInNIO == 0, !onlyThroughNIO, channel.isActive else { return throughNIO(output) }
        let length = output.readableBytes
        // errno read next to the call: a release or a free after it may change it.
        let (sent, error) = output.withUnsafeReadableBytes { bytes in
            let sent = Glibc.send(descriptor, bytes.baseAddress, length, Int32(MSG_NOSIGNAL))
            return (sent, sent < 0 ? errno : 0)
        }
        if sent == length { return .written }
        if sent >= 0 {
            var rest = output
            rest.moveReaderIndex(forwardBy: sent)
            return throughNIO(rest)
        }
        if error != EAGAIN && error != EWOULDBLOCK && error != EINTR {
            // NIO meets the error too, and closes the channel.
            descriptor = -1
            return .throughNIO(output, tracked: false)
        }
        return throughNIO(output)
    }

    private mutating func throughNIO(_ output: ByteBuffer) -> Route {
        writesInNIO += 1
        return .throughNIO(output, tracked: true)
    }

    /// A tracked NIO write completed (written, or failed with the channel).
    mutating func nioWriteCompleted(failed: Bool) {
        writesInNIO -= 1
        if failed { descriptor = -1 }
    }

    /// Whether flushes may write to the socket now (tests).
    var writesDirectly: Bool { descriptor >= 0 && writesInNIO == 0 }

    /// The connection writes directly and has flushed `busyAfterFlushes` times: its output
    /// buffer is worth keeping between flushes (`Connection.flushed`).
    var isBusy: Bool { descriptor >= 0 && flushesUntilBusy == 0 }
}
