import FuzzSupport
import NIOCore
import NIOEmbedded
import PTPProtocol

/// `FrameDecoder` on an arbitrary byte stream cut into chunks at points the fuzzer chooses.
///
/// Input: byte 0 picks the frame cap (0 = none, else 1...255 bytes, so that both "over the cap"
/// and "waiting for a large frame" are reached), byte 1 is the number of cuts (0...15), then
/// that many cut lengths (one byte each), then the stream. The frames the decoder passes on and
/// whether it fails must be exactly those of a whole-stream reference reading, wherever the
/// stream is cut.
// One channel for every input (a fresh decoder is added to it each time and removed after):
// creating an EmbeddedChannel per input made this target ten times slower than the others.
let channel = EmbeddedChannel()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard size >= 2 else { return 0 }
    let cap = Int(input[0])
    let cutCount = Int(input[1] & 0x0F)
    guard size >= 2 + cutCount else { return 0 }
    let cuts = (0..<cutCount).map { Int(input[2 + $0]) }
    let stream = UnsafeRawBufferPointer(rebasing: input[(2 + cutCount)...])

    let expected = referenceFrames(stream, cap: cap)

    let decoder = ByteToMessageHandler(FrameDecoder(maxFrameBytes: cap))
    do {
        try channel.pipeline.syncOperations.addHandler(decoder)
    } catch {
        fuzzFailure("the decoder could not be added: \(error)", input)
    }
    var received: [[UInt8]] = []
    var failed = false
    var offset = 0
    var cutIndex = 0
    func drain() {
        while let frame = try? channel.readInbound(as: ByteBuffer.self) { received.append(frame.fuzzBytes) }
    }
    while offset < stream.count && !failed {
        let length = cutIndex < cuts.count ? min(cuts[cutIndex], stream.count - offset) : stream.count - offset
        cutIndex += 1
        var chunk = channel.allocator.buffer(capacity: length)
        chunk.writeBytes(UnsafeRawBufferPointer(rebasing: stream[offset..<(offset + length)]))
        offset += length
        do {
            try channel.writeInbound(chunk)
        } catch let error as FramingError {
            guard case .frameTooLarge(let length, let limit) = error else { fuzzFailure("unknown framing error", input) }
            fuzzCheck(limit == cap && length > cap, "frameTooLarge(\(length), \(limit)) with cap \(cap)", input)
            failed = true
        } catch {
            fuzzFailure("unexpected error \(error)", input)
        }
        drain()
    }
    drain()
    // The decoder leaves as a pipeline change removes it; the bytes it still held are passed on
    // then and are no frames: dropped, and the channel is empty for the next input.
    channel.pipeline.syncOperations.removeHandler(decoder, promise: nil)
    channel.embeddedEventLoop.run()
    while (try? channel.readInbound(as: ByteBuffer.self)) != nil {}
    try? channel.throwIfErrorCaught()

    fuzzCheck(received == expected.frames, "decoder passed on \(received.count) frames, the reference \(expected.frames.count)", input)
    fuzzCheck(failed == expected.tooLarge, "decoder failed: \(failed), reference: \(expected.tooLarge)", input)
    return 0
}

/// The stream read in one piece: length-prefixed frames, keepalives skipped, stopping at the
/// first length over the cap (an error) or at an incomplete frame (waiting for more).
func referenceFrames(_ stream: UnsafeRawBufferPointer, cap: Int) -> (frames: [[UInt8]], tooLarge: Bool) {
    var frames: [[UInt8]] = []
    var offset = 0
    while stream.count - offset >= 4 {
        let length = Int(stream[offset]) << 24 | Int(stream[offset + 1]) << 16 | Int(stream[offset + 2]) << 8 | Int(stream[offset + 3])
        if length == 0 {
            offset += 4
            continue
        }
        if cap > 0 && length > cap { return (frames, true) }
        guard stream.count - offset - 4 >= length else { break }
        frames.append(Array(stream[(offset + 4)..<(offset + 4 + length)]))
        offset += 4 + length
    }
    return (frames, false)
}
