import NIOCore
import PTPBench
import PTPProtocol
import PTPPunch

/// One bench connection: says HELLO, waits for the relay's first ROUTING (bound), then keeps
/// `window` MESSAGEs to its peer outstanding, ACKs every MESSAGE it receives, and counts and times
/// what comes back. All of it on the channel's event loop; frames are written into one reused
/// buffer per connection and flushed once per read batch.
final class BenchConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Setup: Sendable {
        var index: Int
        var identity: SenderTag
        /// This connection's MESSAGE, nil when it only receives.
        var message: MessageTemplate?
        /// The index of the connection that sends to this one.
        var expectedSender: Int?
        var budget: UInt64
        var window: Int
        var payload: Int
        var run: UInt16
        var head: BenchFrameHead
    }

    private let setup: Setup
    private let acks: AckFrameTemplate
    /// How the ids of the MESSAGEs this connection expects start (its sender's), and of its own.
    private let expectedIDs: BenchMessageID.TextPrefix?
    private let ownIDs: BenchMessageID.TextPrefix
    private let loop: LoopState
    private let bound: EventLoopPromise<Void>
    private var context: ChannelHandlerContext?
    private var out = ByteBuffer()
    /// The start of a frame whose rest has not come in yet, copied out of the read's buffer (held,
    /// that buffer could not be reused for the next read); empty when none.
    private var partial = ByteBuffer()
    private var hints = ScanHints()
    /// Frames from the relay above this size end the connection (PROFILE.md default limit).
    static let maxFrameBytes = 1 << 20
    private var isBound = false
    private var isSending = false
    private var isFinished = false
    private var budget: UInt64
    private var nextSequence: UInt64 = 0
    private var outstanding = 0
    /// Send times of the outstanding messages by sequence number (a power of two at least twice the
    /// window, so a slot is never reused while its message may still be answered).
    private var sendTimes: [UInt64]
    private let sendTimeMask: UInt64
    private var ackSequence: UInt64 = 0

    var boundFuture: EventLoopFuture<Void> { bound.futureResult }

    init(setup: Setup, loop: LoopState) {
        self.setup = setup
        self.acks = AckFrameTemplate(from: setup.identity, head: setup.head)
        self.expectedIDs = setup.expectedSender.map { BenchMessageID.TextPrefix(connection: UInt32($0), run: setup.run) }
        self.ownIDs = BenchMessageID.TextPrefix(connection: UInt32(setup.index), run: setup.run)
        self.loop = loop
        self.bound = loop.eventLoop.makePromise(of: Void.self)
        self.budget = setup.budget
        var slots = 1
        while slots < setup.window * 2 { slots <<= 1 }
        sendTimes = Array(repeating: 0, count: setup.message == nil ? 0 : slots)
        sendTimeMask = UInt64(slots - 1)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        loop.connections.append(self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        if !isBound {
            isBound = true
            bound.fail(ClientError.connectionLost("the relay closed the connection before the handshake ended"))
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ClientFrames.hello(from: setup.identity)), promise: nil)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if isBound && !loop.control.closing.load(ordering: .relaxed) {
            loop.counters.connectionErrors += 1
        }
        if !isBound {
            isBound = true
            bound.fail(ClientError.connectionLost("the relay closed the connection before the handshake ended"))
        }
        finish(at: RunControl.now())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !isBound {
            isBound = true
            bound.fail(ClientError.connectionLost(String(describing: error)))
        }
        context.close(promise: nil)
    }

    /// Splits the bytes into frames itself and scans each where it lies (no `ByteToMessageHandler`
    /// hop and no slice per frame: a slice retains the buffer); one clock reading per read, as
    /// relay-load takes (the frames of one read arrived together). The ACKs of the read's MESSAGEs
    /// are written into room made once in `out`, for as many as the read can hold.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        let now = RunControl.now()
        // Once per read, as the clock: per message it cost two atomic loads and a retain and release of `control`.
        let measuring = loop.control.isMeasuring(now)
        let mostMessages = (partial.readableBytes + buffer.readableBytes) / Self.smallestMessageFrame + 1
        var withinCap = true
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: mostMessages * acks.count) { room in
            var answers = AckRoom(room)
            withinCap = readFrames(from: &buffer, now: now, measuring: measuring, answers: &answers)
            return answers.used
        }
        if !withinCap { frameTooLarge(context: context) }
    }

    /// Handles the frame `partial` held once it is whole, then every whole frame of `buffer`, and
    /// keeps the start of an incomplete one; false when a frame's length is over the cap.
    private func readFrames(from buffer: inout ByteBuffer, now: UInt64, measuring: Bool, answers: inout AckRoom) -> Bool {
        if partial.readableBytes > 0 {
            guard let whole = completePartial(from: &buffer) else { return false }
            guard whole else { return true }
            partial.withUnsafeReadableBytes { bytes in
                if bytes.count > 4 { handle(UnsafeRawBufferPointer(rebasing: bytes[4...]), now: now, measuring: measuring, answers: &answers) }
            }
            partial.clear()
        }
        let cap = Self.maxFrameBytes
        let consumed = buffer.withUnsafeReadableBytes { bytes -> Int? in
            var offset = 0
            while bytes.count - offset >= 4 {
                let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).bigEndian)
                if length > cap { return nil }
                guard bytes.count - offset - 4 >= length else { break }
                if length > 0 {
                    handle(UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<(offset + 4 + length)]), now: now, measuring: measuring, answers: &answers)
                }
                offset += 4 + length
            }
            return offset
        }
        guard let consumed else { return false }
        buffer.moveReaderIndex(forwardBy: consumed)
        if buffer.readableBytes > 0 { partial.writeBuffer(&buffer) }
        return true
    }

    /// A MESSAGE frame the bench answers has at least `"msg_type":"MESSAGE"` and a 36-character
    /// `"msg_id"` (over 70 bytes with its length prefix): a read of N bytes holds at most N / 64 of them.
    static let smallestMessageFrame = 64

    /// Moves into `partial` only what its frame still lacks from the start of `buffer` (not the
    /// whole read): true when the frame is whole, false when it needs more, nil when its length
    /// is over the cap.
    private func completePartial(from buffer: inout ByteBuffer) -> Bool? {
        func take(upTo total: Int) {
            let count = Swift.min(total - partial.readableBytes, buffer.readableBytes)
            _ = buffer.withUnsafeReadableBytes { partial.writeBytes(UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
            buffer.moveReaderIndex(forwardBy: count)
        }
        if partial.readableBytes < 4 { take(upTo: 4) }
        guard let length = partial.getInteger(at: partial.readerIndex, as: UInt32.self) else { return false }
        guard length <= Self.maxFrameBytes else { return nil }
        take(upTo: 4 + Int(length))
        return partial.readableBytes == 4 + Int(length)
    }

    private func frameTooLarge(context: ChannelHandlerContext) {
        loop.counters.unexpected += 1
        Console.diagnostic("ptpchat bench: connection \(setup.index): a frame over \(Self.maxFrameBytes) bytes; closing it")
        context.close(promise: nil)
    }

    private func handle(_ frame: UnsafeRawBufferPointer, now: UInt64, measuring: Bool, answers: inout AckRoom) {
        let located = BenchFrames.locate(frame, hints: &hints)
        switch located.kind {
        case .message: received(located, in: frame, now: now, measuring: measuring, answers: &answers)
        case .ack:
            let sequence = located.messageID >= 0 ? ownIDs.sequence(of: Self.id(at: located.messageID, in: frame)) : nil
            answered(sequence, acked: true, now: now, measuring: measuring)
        case .nack:
            let scanned = BenchFrames.scan(frame)
            let sequence = scanned.messageID.flatMap { BenchMessageID($0) }.flatMap {
                $0.run == setup.run && Int($0.connection) == setup.index ? $0.sequence : nil
            }
            answered(sequence, acked: false, now: now, measuring: measuring, reason: scanned.reason)
        case .routing:
            if !isBound {
                isBound = true
                bound.succeed()
            }
        case .other:
            break  // the relay's HELLO, floods: not the bench's business
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        pump()
        flush()
        loop.publish()
        context.fireChannelReadComplete()
    }

    /// Called on the loop once every connection is bound: the send phase begins.
    func startSending() {
        guard setup.message != nil, context != nil else {
            finish(at: RunControl.now())
            return
        }
        isSending = true
        pump()
        flush()
    }

    func close() {
        context?.close(promise: nil)
    }

    // MARK: - Receiving

    /// The 36 characters of an id at `offset` of `frame` (`LocatedFrame.messageID`).
    @inline(__always)
    private static func id(at offset: Int, in frame: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: frame[offset..<(offset + 36)])
    }

    /// Whose MESSAGE it is is read from the text of its id (compared, not parsed): the ACK copies
    /// that text as it came.
    private func received(_ located: LocatedFrame, in frame: UnsafeRawBufferPointer, now: UInt64, measuring: Bool, answers: inout AckRoom) {
        guard located.messageID >= 0 else {
            loop.counters.unexpected += 1
            return
        }
        // Every MESSAGE is ACKed, a stranger's too: the relay waits for it.
        ackSequence &+= 1
        acks.write(to: answers.take(acks.count), sequence: ackSequence, acknowledging: frame.baseAddress! + located.messageID)
        guard let expectedIDs, expectedIDs.starts(Self.id(at: located.messageID, in: frame)) else {
            loop.counters.unexpected += 1
            return
        }
        loop.counters.delivered += 1
        if measuring {
            loop.counters.deliveredInWindow += 1
            loop.counters.payloadBytesInWindow += UInt64(setup.payload)
            if located.sendTime >= 0, let sentAt = GUID.hexValue(sixteenDigitsAt: located.sendTime, in: frame), sentAt <= now {
                loop.delivery.record(now - sentAt)
            }
        }
    }

    /// An ACK or NACK of this connection's MESSAGE number `sequence` (nil: not one of its ids in this run).
    private func answered(_ sequence: UInt64?, acked: Bool, now: UInt64, measuring: Bool, reason: String? = nil) {
        guard let sequence, sequence < nextSequence, outstanding > 0 else {
            loop.counters.unexpected += 1
            return
        }
        outstanding -= 1
        if acked {
            loop.counters.acked += 1
            if measuring {
                loop.counters.ackedInWindow += 1
                loop.ack.record(now &- sendTimes[Int(sequence & sendTimeMask)])
            }
        } else {
            loop.counters.nacked += 1
            if loop.firstNackReason == nil { loop.firstNackReason = reason ?? "(none given)" }
        }
    }

    // MARK: - Sending

    /// Tops the window up (within the budget and the send phase).
    private func pump() {
        guard isSending, let message = setup.message else { return }
        let now = RunControl.now()
        guard now < loop.control.sendingUntil.load(ordering: .relaxed) else {
            isSending = false
            return
        }
        let count = min(UInt64(setup.window - outstanding), budget)
        if count > 0 {
            message.write(
                &out, first: BenchMessageID(connection: UInt32(setup.index), run: setup.run, sequence: nextSequence), count: Int(count),
                sentAt: now)
            for _ in 0..<count {
                sendTimes[Int(nextSequence & sendTimeMask)] = now
                nextSequence += 1
            }
            outstanding += Int(count)
            budget -= count
            loop.counters.sent += count
        }
        if budget == 0 && outstanding == 0 {
            isSending = false
            finish(at: now)
        }
    }

    /// Counts this sender as done once (its budget answered, or its connection gone).
    private func finish(at time: UInt64) {
        guard setup.message != nil, !isFinished else { return }
        isFinished = true
        loop.control.senderFinished(at: time)
    }

    private func flush() {
        guard out.readableBytes > 0, let context else { return }
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        // Loopback writes complete inside the flush, so the storage is ours again and is reused.
        out.clear()
    }
}

/// The room made in a connection's output buffer for the ACKs of one read, taken ACK by ACK.
struct AckRoom {
    private let room: UnsafeMutableRawBufferPointer
    private(set) var used = 0

    init(_ room: UnsafeMutableRawBufferPointer) {
        self.room = room
    }

    /// The start of the next `count` bytes.
    mutating func take(_ count: Int) -> UnsafeMutableRawPointer {
        precondition(used + count <= room.count, "more ACKs than the read could hold MESSAGEs")
        defer { used += count }
        return room.baseAddress! + used
    }
}
