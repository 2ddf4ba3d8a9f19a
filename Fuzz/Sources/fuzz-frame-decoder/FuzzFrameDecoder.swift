import FuzzSupport
import NIOCore
import NIOEmbedded
import PTPProtocol

/// Both framers, `FrameDecoder` (NIO's `ByteToMessageHandler`, the client's) and `FrameReader` (the
/// relay's `FrameSplitter`, which its connection handler holds, as a handler), on an arbitrary byte stream cut into chunks at points the fuzzer chooses, the cap
/// changed mid-stream as the relay changes it (the HELLO raises it, a reload lowers it).
///
/// Input: byte 0 picks the frame cap (0 = none, else 1...255 bytes, so that both "over the cap"
/// and "waiting for a large frame" are reached); byte 1: its low 4 bits are the number of cuts
/// (0...15), its high 4 bits the cut after which the cap changes (0: never); then that many cut
/// lengths (one byte each); then, when the cap changes, the new cap (one byte); then the stream.
///
/// Without a change the frames passed on, and whether the decoder fails, must be exactly those of
/// a whole-stream reference reading wherever the stream is cut. With one, those of a reference
/// that reads chunk by chunk and checks each length against the cap in force when the chunk came.
// One channel for every input (a fresh decoder is added to it each time and removed after):
// creating an EmbeddedChannel per input made this target three times slower.
let channel = EmbeddedChannel()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard size >= 2 else { return 0 }
    let firstCap = Int(input[0])
    let cutCount = Int(input[1] & 0x0F)
    let changeAfter = Int(input[1] >> 4)
    let header = 2 + cutCount + (changeAfter > 0 ? 1 : 0)
    guard size >= header else { return 0 }
    let cuts = (0..<cutCount).map { Int(input[2 + $0]) }
    let secondCap = changeAfter > 0 ? Int(input[2 + cutCount]) : firstCap
    let stream = UnsafeRawBufferPointer(rebasing: input[header...])

    // The chunks, as written: the cut lengths, then the rest in one.
    var chunks: [Range<Int>] = []
    var offset = 0
    for cut in cuts where offset < stream.count {
        let length = min(cut, stream.count - offset)
        chunks.append(offset..<(offset + length))
        offset += length
    }
    if offset < stream.count { chunks.append(offset..<stream.count) }
    func capBefore(chunk index: Int) -> Int { changeAfter > 0 && index >= changeAfter ? secondCap : firstCap }

    let expected = changeAfter == 0
        ? wholeStreamReference(stream, cap: firstCap)
        : chunkwiseReference(stream, chunks: chunks, cap: capBefore(chunk:))

    for useReader in [false, true] {
        let name = useReader ? "FrameReader" : "FrameDecoder"
        let cap: FrameSizeCap
        let handler: any RemovableChannelHandler
        if useReader {
            let reader = FrameReader(maxFrameBytes: firstCap)
            (cap, handler) = (reader, reader)
        } else {
            let decoderCap = FrameSizeCap(bytes: firstCap)
            (cap, handler) = (decoderCap, ByteToMessageHandler(FrameDecoder(cap: decoderCap)))
        }
        do {
            try channel.pipeline.syncOperations.addHandler(handler)
        } catch {
            fuzzFailure("\(name) could not be added: \(error)", input)
        }
        var received: [[UInt8]] = []
        var failed = false
        func drain() {
            while let frame = try? channel.readInbound(as: ByteBuffer.self) { received.append(frame.fuzzBytes) }
        }
        for (index, range) in chunks.enumerated() where !failed {
            cap.bytes = capBefore(chunk: index)
            var chunk = channel.allocator.buffer(capacity: range.count)
            chunk.writeBytes(UnsafeRawBufferPointer(rebasing: stream[range]))
            do {
                try channel.writeInbound(chunk)
            } catch let error as FramingError {
                guard case .frameTooLarge(let length, let limit) = error else { fuzzFailure("unknown framing error", input) }
                fuzzCheck(limit == cap.bytes && length > limit, "\(name): frameTooLarge(\(length), \(limit)) with cap \(cap.bytes)", input)
                failed = true
            } catch {
                fuzzFailure("\(name): unexpected error \(error)", input)
            }
            drain()
        }
        drain()
        // The framer leaves as a pipeline change removes it; bytes NIO's decoder still held are
        // passed on then and are no frames: dropped, and the channel is empty for the next input.
        channel.pipeline.syncOperations.removeHandler(handler, promise: nil)
        channel.embeddedEventLoop.run()
        while (try? channel.readInbound(as: ByteBuffer.self)) != nil {}
        try? channel.throwIfErrorCaught()

        fuzzCheck(received == expected.frames, "\(name) passed on \(received.count) frames, the reference \(expected.frames.count)", input)
        fuzzCheck(failed == expected.tooLarge, "\(name) failed: \(failed), reference: \(expected.tooLarge)", input)
    }
    return 0
}

/// Reads length-prefixed frames from `bytes` from `offset` on: keepalives skipped, stopping at the
/// first length over `cap` (an error) or at an incomplete frame (waiting for more).
func readFrames(_ bytes: UnsafeRawBufferPointer, from offset: inout Int, cap: Int, into frames: inout [[UInt8]]) -> Bool {
    while bytes.count - offset >= 4 {
        let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        if length == 0 {
            offset += 4
            continue
        }
        if cap > 0 && length > cap { return true }
        guard bytes.count - offset - 4 >= length else { break }
        frames.append(Array(bytes[(offset + 4)..<(offset + 4 + length)]))
        offset += 4 + length
    }
    return false
}

/// The stream read in one piece.
func wholeStreamReference(_ stream: UnsafeRawBufferPointer, cap: Int) -> (frames: [[UInt8]], tooLarge: Bool) {
    var frames: [[UInt8]] = []
    var offset = 0
    let tooLarge = readFrames(stream, from: &offset, cap: cap, into: &frames)
    return (frames, tooLarge)
}

/// The stream read as the chunks come, each time with the cap in force for that chunk.
func chunkwiseReference(_ stream: UnsafeRawBufferPointer, chunks: [Range<Int>], cap: (Int) -> Int) -> (frames: [[UInt8]], tooLarge: Bool) {
    var frames: [[UInt8]] = []
    var offset = 0
    for (index, range) in chunks.enumerated() {
        let available = UnsafeRawBufferPointer(rebasing: stream[..<range.upperBound])
        if readFrames(available, from: &offset, cap: cap(index), into: &frames) { return (frames, true) }
    }
    return (frames, false)
}
