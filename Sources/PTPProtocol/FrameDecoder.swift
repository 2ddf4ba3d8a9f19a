import NIOCore

/// Splits the byte stream into frames: a 4-byte big-endian length N, then N bytes of JSON.
///
/// Keepalives (N = 0) are consumed and not passed on. A length above `maxFrameBytes` fails the
/// stream as soon as the 4 length bytes are in, before anything of that size is allocated.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public let maxFrameBytes: Int

    public init(maxFrameBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
    }

    /// Passes on every complete frame in `buffer` in one call (cheaper than one call per frame).
    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        while let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) {
            if length == 0 {
                buffer.moveReaderIndex(forwardBy: 4)
                continue
            }
            if maxFrameBytes > 0 && Int(length) > maxFrameBytes {
                throw FramingError.frameTooLarge(length: Int(length), limit: maxFrameBytes)
            }
            guard buffer.readableBytes >= 4 + Int(length) else { break }
            buffer.moveReaderIndex(forwardBy: 4)
            let frame = buffer.readSlice(length: Int(length))!
            context.fireChannelRead(Self.wrapInboundOut(frame))
        }
        return .needMoreData
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
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
