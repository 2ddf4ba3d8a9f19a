import NIOCore
import PTPProtocol

/// A broken invariant: prints what broke and traps, which libFuzzer reports as a crash and saves
/// the input (`crash-<sha1>`).
@inline(never)
public func fuzzFailure(_ message: String, _ bytes: UnsafeRawBufferPointer) -> Never {
    let shown = bytes.prefix(256).map { $0 >= 0x20 && $0 < 0x7F ? String(UnicodeScalar($0)) : "\\x\(String($0, radix: 16))" }.joined()
    fatalError("fuzz invariant broken: \(message); input (\(bytes.count) bytes, first 256): \(shown)")
}

@inline(__always)
public func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String, _ bytes: UnsafeRawBufferPointer) {
    if !condition { fuzzFailure(message(), bytes) }
}

extension ByteBuffer {
    /// The readable bytes as an array (for checks only; the relay never copies like this).
    public var fuzzBytes: [UInt8] { getBytes(at: readerIndex, length: readableBytes) ?? [] }
}

/// Splits length-prefixed frames written by `FrameWriter`/`MeshFrames`; nil when the buffer does
/// not consist of whole frames.
public func splitWrittenFrames(_ buffer: ByteBuffer) -> [[UInt8]]? {
    var buffer = buffer
    var frames: [[UInt8]] = []
    while buffer.readableBytes > 0 {
        guard let length = buffer.readInteger(as: UInt32.self), let body = buffer.readBytes(length: Int(length)) else {
            return nil
        }
        frames.append(body)
    }
    return frames
}
