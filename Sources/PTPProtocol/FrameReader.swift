import NIOCore

/// The first handler of the relay's connection pipeline: splits the byte stream into frames
/// (`Framing.nextFrame`: a 4-byte big-endian length, then the JSON; keepalives dropped) and
/// passes each on as a slice of the bytes read, without a copy.
///
/// It does what NIO's `ByteToMessageHandler(FrameDecoder)` did here, with less: no queue of
/// buffers, no decoder state machine, and nothing kept between reads unless a frame is cut across
/// them. That is about 0.35 KiB less per open connection and fewer instructions per frame
/// (docs/performance.md has the measurements). The client keeps `FrameDecoder`.
///
/// Frames are handed on synchronously; nothing above this handler feeds bytes back into it.
///
/// It is the connection's `FrameSizeCap` too: `bytes` is read for every frame; the shard raises it
/// at the HELLO and a reload lowers it.
public final class FrameReader: FrameSizeCap, ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    // Owned by the connection's event loop.
    /// The start of a frame cut across reads; nil between whole frames.
    private var partial: ByteBuffer?
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
            if var head = partial {
                // Only the frame cut across reads is copied; the rest is read in place.
                guard Self.complete(&head, from: &input, cap: bytes) else {
                    partial = head
                    return
                }
                partial = nil
                if let frame = try Framing.nextFrame(in: &head, cap: bytes) {
                    context.fireChannelRead(wrapInboundOut(frame))
                }
            }
            while let frame = try Framing.nextFrame(in: &input, cap: bytes) {
                context.fireChannelRead(wrapInboundOut(frame))
            }
        } catch {
            failed = true
            partial = nil
            context.fireErrorCaught(error)
            return
        }
        if input.readableBytes > 0 {
            // A copy of its own: holding a slice would keep the whole receive buffer (up to
            // 32 KiB) and make NIO allocate a new one for the next read.
            var head = context.channel.allocator.buffer(capacity: Self.frameSize(startingWith: input) ?? 4)
            head.writeBuffer(&input)
            partial = head
        }
    }

    /// The length prefix plus the body of the frame at the front of `bytes`, once its length is in.
    private static func frameSize(startingWith bytes: ByteBuffer) -> Int? {
        bytes.getInteger(at: bytes.readerIndex, as: UInt32.self).map { 4 + Int($0) }
    }

    /// Moves bytes from the front of `input` into `head` until `head` holds one whole frame (or a
    /// length over `cap`, for `Framing.nextFrame` to refuse); false when `input` ran out first.
    private static func complete(_ head: inout ByteBuffer, from input: inout ByteBuffer, cap: Int) -> Bool {
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
        head.reserveCapacity(size)
        move(size - head.readableBytes)
        return head.readableBytes == size
    }
}
