import NIOCore

/// A channel handler that splits the byte stream into frames (`FrameSplitter`) and passes each on
/// in a buffer of its own: the relay's framing for the tests' clients and simulated links. The
/// relay's own connections split in `ConnectionHandler` (one handler hop per read instead of two
/// per frame).
///
/// It does what NIO's `ByteToMessageHandler(FrameDecoder)` does, with less: no queue of buffers, no
/// decoder state machine, and nothing kept between reads unless a frame is cut across them. The
/// client keeps `FrameDecoder`.
///
/// Frames are handed on synchronously; nothing above this handler feeds bytes back into it.
///
/// It is its own `FrameSizeCap`: `bytes` is read for every frame.
public final class FrameReader: FrameSizeCap, ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    // Owned by the connection's event loop.
    private var splitter = FrameSplitter()
    /// A frame was over the cap: the error went up (the connection closes) and anything more the
    /// peer sends is dropped unread.
    private var failed = false

    public init(maxFrameBytes: Int) {
        super.init(bytes: maxFrameBytes)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var input = unwrapInboundIn(data)
        do {
            let allocator = context.channel.allocator
            try splitter.split(&input, cap: bytes, allocator: allocator) { frame in
                var copy = allocator.buffer(capacity: frame.count)
                copy.writeBytes(frame)
                context.fireChannelRead(wrapInboundOut(copy))
            }
        } catch {
            failed = true
            splitter.reset()
            context.fireErrorCaught(error)
        }
    }

    /// The capacity held for a frame cut across reads (for tests).
    var heldCapacity: Int { splitter.heldCapacity }
}

/// Splits the bytes of a connection's reads into frames (as `Framing.nextFrame`: a 4-byte
/// big-endian length, then the JSON; keepalives dropped), lending each frame's bytes where they
/// were read, without a copy. Only a frame cut across reads is copied, and nothing is kept between
/// reads otherwise.
///
/// `FrameReader` is this as a channel handler; the relay's `ConnectionHandler` holds one itself, so
/// a frame reaches the shard with no channel handler hop (`NIOAny`) of its own.
public struct FrameSplitter {
    /// The start of a frame cut across reads; nil between whole frames.
    @usableFromInline var partial: ByteBuffer?

    public init() {}

    /// The capacity held for a frame cut across reads.
    public var heldCapacity: Int { partial?.capacity ?? 0 }

    /// Forgets a frame begun in earlier reads (after a framing error the stream is not read on).
    public mutating func reset() {
        partial = nil
    }

    /// Calls `body` with the bytes of each whole frame of `input` (after its length prefix), after
    /// the rest of a frame begun in earlier reads, and keeps the start of a frame that `input`
    /// cuts. A length over `cap` (0: no cap) throws as soon as its 4 bytes are in. The bytes are
    /// lent for the call: the frames read whole are walked in place, with no reference to the
    /// buffer's storage taken per frame (a slice each was a retain and a release per frame).
    @inlinable
    public mutating func split(
        _ input: inout ByteBuffer, cap: Int, allocator: ByteBufferAllocator, _ body: (UnsafeRawBufferPointer) -> Void
    ) throws(FramingError) {
        // Taken out, not copied: with `partial` still holding it, each write to it would copy the
        // storage.
        if var head = partial.take() {
            guard Self.complete(&head, from: &input, cap: cap) else {
                partial = head
                return
            }
            // `complete` left one whole frame (or a keepalive, or a length over the cap) in it.
            _ = try head.withUnsafeReadableBytes { bytes throws(FramingError) -> Int in
                try Self.forEachWholeFrame(in: bytes, cap: cap, body)
            }
        }
        let consumed = try input.withUnsafeReadableBytes { bytes throws(FramingError) -> Int in
            try Self.forEachWholeFrame(in: bytes, cap: cap, body)
        }
        input.moveReaderIndex(forwardBy: consumed)
        if input.readableBytes > 0 {
            // A copy of its own: holding a slice would keep the whole receive buffer (up to
            // 32 KiB) and make NIO allocate a new one for the next read. Sized for the bytes that
            // came, never for the length announced: four bytes must not make the relay reserve a
            // frame of up to the cap (found by Fuzz/fuzz-frame-decoder).
            var head = allocator.buffer(capacity: input.readableBytes)
            head.writeBuffer(&input)
            partial = head
        }
    }

    /// The splitter's one walk over frames (the rule of `Framing.nextFrame`, which NIO's
    /// `FrameDecoder` uses, over bytes in place): calls `body` with each whole frame's bytes, skips
    /// keepalives, and returns how many bytes it went through (the frames and keepalives before a
    /// cut frame or the end). Throws at a length over `cap` (0: no cap) once its 4 bytes are in.
    @inlinable
    static func forEachWholeFrame(
        in bytes: UnsafeRawBufferPointer, cap: Int, _ body: (UnsafeRawBufferPointer) -> Void
    ) throws(FramingError) -> Int {
        var offset = 0
        while bytes.count - offset >= 4 {
            let length = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            if length == 0 {
                offset += 4
                continue
            }
            if cap > 0 && length > cap {
                throw .frameTooLarge(length: length, limit: cap)
            }
            guard bytes.count - offset - 4 >= length else { break }
            body(UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<(offset + 4 + length)]))
            offset += 4 + length
        }
        return offset
    }

    /// The length prefix plus the body of the frame at the front of `bytes`, once its length is in.
    @inlinable
    static func frameSize(startingWith bytes: ByteBuffer) -> Int? {
        bytes.getInteger(at: bytes.readerIndex, as: UInt32.self).map { 4 + Int($0) }
    }

    /// Moves bytes from the front of `input` into `head` until `head` holds one whole frame (or a
    /// length over `cap`, for `Framing.nextFrame` to refuse); false when `input` ran out first.
    @inlinable
    static func complete(_ head: inout ByteBuffer, from input: inout ByteBuffer, cap: Int) -> Bool {
        func move(_ count: Int) {
            var slice = input.readSlice(length: min(count, input.readableBytes))!
            head.writeBuffer(&slice)
        }
        if head.readableBytes < 4 {
            move(4 - head.readableBytes)
            guard head.readableBytes == 4 else { return false }
        }
        let size = frameSize(startingWith: head)!
        if cap > 0 && size - 4 > cap { return true }
        // Grows with what arrives (see `split`).
        move(size - head.readableBytes)
        return head.readableBytes == size
    }
}
