import NIOCore

/// Splits the byte stream into frames: a 4-byte big-endian length N, then N bytes of JSON.
///
/// Keepalives (N = 0) are consumed and not passed on. A length above the cap in force fails the
/// stream as soon as the 4 length bytes are in, before anything of that size is allocated.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    /// Read for every frame, so its owner can change the cap of an open connection (the HELLO
    /// raises it, a reload lowers it).
    public let cap: FrameSizeCap

    /// The cap in force now.
    public var maxFrameBytes: Int { cap.bytes }

    /// A decoder with a fixed cap of its own.
    public init(maxFrameBytes: Int) {
        self.cap = FrameSizeCap(bytes: maxFrameBytes)
    }

    /// A decoder reading the cap `cap` holds when each frame's length comes in.
    public init(cap: FrameSizeCap) {
        self.cap = cap
    }

    /// Passes on every complete frame in `buffer` in one call (cheaper than one call per frame).
    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        while let frame = try Framing.nextFrame(in: &buffer, cap: cap.bytes) {
            context.fireChannelRead(Self.wrapInboundOut(frame))
        }
        return .needMoreData
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// The splitting itself for `FrameDecoder` (NIO's `ByteToMessageHandler`, for the client and the
/// fuzz target). The relay's own `FrameSplitter` applies the same rule to bytes in place
/// (`forEachWholeFrame`); `FrameDecoderTests` and Fuzz/fuzz-frame-decoder hold the two to it.
public enum Framing {
    /// Takes the next complete frame off the front of `buffer`, skipping keepalives; nil when the
    /// buffer ends before a whole frame. A length over `cap` (0: no cap) throws as soon as its 4
    /// bytes are in, before anything of that size is allocated.
    @inlinable
    public static func nextFrame(in buffer: inout ByteBuffer, cap: Int) throws(FramingError) -> ByteBuffer? {
        while let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) {
            if length == 0 {
                buffer.moveReaderIndex(forwardBy: 4)
                continue
            }
            if cap > 0 && Int(length) > cap {
                throw .frameTooLarge(length: Int(length), limit: cap)
            }
            guard buffer.readableBytes >= 4 + Int(length) else { return nil }
            buffer.moveReaderIndex(forwardBy: 4)
            return buffer.readSlice(length: Int(length))
        }
        return nil
    }
}

/// The largest frame a connection may send now, in bytes (0: no cap). One per connection, shared by
/// its decoder and the code that changes the cap; confined to the connection's event loop (not
/// Sendable, no lock: the decoder pays one load per frame). Open so that the object that splits
/// the frames can be the cap itself (`FrameReader`, the relay's `ConnectionHandler`): one object
/// per connection fewer.
open class FrameSizeCap {
    public var bytes: Int

    public init(bytes: Int) {
        self.bytes = bytes
    }
}

public enum FramingError: Error, Equatable, CustomStringConvertible {
    case frameTooLarge(length: Int, limit: Int)

    public var description: String {
        switch self {
        case .frameTooLarge(let length, let limit):
            return "frame of \(length) bytes is over the limit of \(limit) bytes"
        }
    }
}

extension ByteBuffer {
    /// Appends a keepalive frame (length 0).
    public mutating func writeKeepalive() {
        writeInteger(UInt32(0))
    }
}
