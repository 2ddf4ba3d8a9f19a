import NIOCore
import NIOEmbedded
import XCTest

@testable import PTPProtocol

/// Every case runs through both framers: NIO's `ByteToMessageHandler(FrameDecoder)` (the client's,
/// `Framing.nextFrame`) and `FrameReader` (the relay's `FrameSplitter`, which walks the frames in
/// place with a loop of its own). They must behave alike.
final class FrameDecoderTests: XCTestCase {
    fileprivate enum Framer: CaseIterable {
        case decoder, reader
    }

    /// The framer the running case is on (`eachFramer` sets it).
    fileprivate var framer = Framer.decoder

    /// A channel with the framer of the running case, and the cap its owner changes (the reader is
    /// its own cap).
    private func makeChannelAndCap(maxFrameBytes: Int) -> (EmbeddedChannel, FrameSizeCap) {
        switch framer {
        case .decoder:
            let cap = FrameSizeCap(bytes: maxFrameBytes)
            return (EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(cap: cap))), cap)
        case .reader:
            let reader = FrameReader(maxFrameBytes: maxFrameBytes)
            return (EmbeddedChannel(handler: reader), reader)
        }
    }

    private func makeChannel(maxFrameBytes: Int) -> EmbeddedChannel {
        makeChannelAndCap(maxFrameBytes: maxFrameBytes).0
    }

    private func eachFramer(_ body: () throws -> Void) rethrows {
        for framer in Framer.allCases {
            self.framer = framer
            try body()
        }
    }

    /// Failures name the framer they happened on.
    override func recordFailure(withDescription description: String, inFile filePath: String, atLine lineNumber: Int, expected: Bool) {
        super.recordFailure(withDescription: "[\(framer)] \(description)", inFile: filePath, atLine: lineNumber, expected: expected)
    }

    private func buffer(_ bytes: [UInt8]) -> ByteBuffer {
        ByteBuffer(bytes: bytes)
    }

    private func readFrames(_ channel: EmbeddedChannel) throws -> [String] {
        var frames: [String] = []
        while let frame = try channel.readInbound(as: ByteBuffer.self) {
            frames.append(String(buffer: frame))
        }
        return frames
    }

    func testFrameSplitAcrossManyWrites() throws {
        try eachFramer {
            let channel = makeChannel(maxFrameBytes: 1024)
            let bytes = frameBytes("{\"msg_type\":\"HELLO\",\"msg_data\":{}}")
            for (offset, byte) in bytes.enumerated() {
                try channel.writeInbound(buffer([byte]))
                if offset < bytes.count - 1 {
                    XCTAssertNil(try channel.readInbound(as: ByteBuffer.self), "frame passed on after \(offset + 1) bytes")
                }
            }
            XCTAssertEqual(try readFrames(channel), ["{\"msg_type\":\"HELLO\",\"msg_data\":{}}"])
            XCTAssertTrue(try channel.finish().isClean)
        }
    }

    func testFrameSplitInUnevenChunks() throws {
        try eachFramer {
            let channel = makeChannel(maxFrameBytes: 1024)
            let bytes = frameBytes("{\"a\":1}") + frameBytes("{\"b\":2}")
            // 3 bytes: inside the first length; 9: inside the first body; rest: the second frame.
            try channel.writeInbound(buffer(Array(bytes[0..<3])))
            try channel.writeInbound(buffer(Array(bytes[3..<9])))
            XCTAssertEqual(try readFrames(channel), [])
            try channel.writeInbound(buffer(Array(bytes[9..<13])))
            XCTAssertEqual(try readFrames(channel), ["{\"a\":1}"])
            try channel.writeInbound(buffer(Array(bytes[13...])))
            XCTAssertEqual(try readFrames(channel), ["{\"b\":2}"])
            XCTAssertTrue(try channel.finish().isClean)
        }
    }

    func testSeveralFramesInOneWrite() throws {
        try eachFramer {
            let channel = makeChannel(maxFrameBytes: 1024)
            let bodies = ["{\"n\":1}", "{\"n\":22}", "[]", "{\"n\":\"three\"}"]
            try channel.writeInbound(buffer(bodies.flatMap(frameBytes)))
            XCTAssertEqual(try readFrames(channel), bodies)
            XCTAssertTrue(try channel.finish().isClean)
        }
    }

    /// The cap is read when each frame's length comes in: its owner changes it between frames
    /// (the HELLO raises it, a reload lowers it) without touching the pipeline.
    func testACapChangedBetweenFramesAppliesToTheNextFrame() throws {
        try eachFramer {
            let long = "{\"text\":\"0123456789\"}"
            let (first, _) = makeChannelAndCap(maxFrameBytes: 16)
            XCTAssertThrowsError(try first.writeInbound(buffer(frameBytes(long)))) { error in
                XCTAssertEqual(error as? FramingError, .frameTooLarge(length: long.utf8.count, limit: 16))
            }
            let (channel, cap) = makeChannelAndCap(maxFrameBytes: 16)
            try channel.writeInbound(buffer(frameBytes("{}")))
            cap.bytes = 1024
            try channel.writeInbound(buffer(frameBytes(long)))
            XCTAssertEqual(try readFrames(channel), ["{}", long])
            cap.bytes = 8
            XCTAssertThrowsError(try channel.writeInbound(buffer(frameBytes(long))))
            let (unlimited, unlimitedCap) = makeChannelAndCap(maxFrameBytes: 16)
            unlimitedCap.bytes = 0
            try unlimited.writeInbound(buffer(frameBytes(String(repeating: "x", count: 100_000))))
            XCTAssertEqual(try readFrames(unlimited).first?.count, 100_000, "0 is no cap")
        }
    }

    func testKeepalivesAreSkipped() throws {
        try eachFramer {
            let channel = makeChannel(maxFrameBytes: 1024)
            let keepalive: [UInt8] = [0, 0, 0, 0]
            try channel.writeInbound(buffer(keepalive + keepalive + keepalive))
            XCTAssertEqual(try readFrames(channel), [])
            try channel.writeInbound(buffer(keepalive + frameBytes("{\"x\":1}") + keepalive + keepalive + frameBytes("{}") + keepalive))
            XCTAssertEqual(try readFrames(channel), ["{\"x\":1}", "{}"])
            // A keepalive split over two writes.
            try channel.writeInbound(buffer([0, 0]))
            try channel.writeInbound(buffer([0, 0] + frameBytes("{\"y\":2}")))
            XCTAssertEqual(try readFrames(channel), ["{\"y\":2}"])
            XCTAssertTrue(try channel.finish().isClean)
        }
    }

    func testWriteKeepaliveWritesZeroLength() {
        var out = ByteBuffer()
        out.writeKeepalive()
        XCTAssertEqual(out.readableBytesView.map { $0 }, [0, 0, 0, 0])
    }

    func testOversizedLengthFailsAsSoonAsLengthIsIn() throws {
        try eachFramer {
            let channel = makeChannel(maxFrameBytes: 16)
            // Two of the four length bytes: nothing to decide yet.
            XCTAssertNoThrow(try channel.writeInbound(buffer([0x00, 0x00])))
            // The other two: 17 bytes announced, no body byte sent.
            XCTAssertThrowsError(try channel.writeInbound(buffer([0x00, 0x11]))) { error in
                XCTAssertEqual(error as? FramingError, .frameTooLarge(length: 17, limit: 16))
            }
            XCTAssertNil(try channel.readInbound(as: ByteBuffer.self))
            _ = try? channel.finish()
        }
    }

    func testHugeLengthFailsBeforeBody() throws {
        try eachFramer {
            let channel = makeChannel(maxFrameBytes: 1_048_576)
            XCTAssertThrowsError(try channel.writeInbound(buffer([0xFF, 0xFF, 0xFF, 0xFF]))) { error in
                XCTAssertEqual(error as? FramingError, .frameTooLarge(length: 0xFFFF_FFFF, limit: 1_048_576))
                XCTAssertTrue("\(error)".contains("4294967295"), "\(error)")
            }
            _ = try? channel.finish()
        }
    }

    func testOversizedFrameAfterValidFrameInSameWrite() throws {
        try eachFramer {
            let channel = makeChannel(maxFrameBytes: 16)
            XCTAssertThrowsError(try channel.writeInbound(buffer(frameBytes("{\"a\":1}") + [0, 0, 1, 0]))) { error in
                XCTAssertEqual(error as? FramingError, .frameTooLarge(length: 256, limit: 16))
            }
            XCTAssertEqual(try readFrames(channel), ["{\"a\":1}"])
            _ = try? channel.finish()
        }
    }

    func testFrameExactlyAtLimitIsAccepted() throws {
        try eachFramer {
            let body = "{\"k\":\"" + String(repeating: "x", count: 8) + "\"}"  // 16 bytes
            XCTAssertEqual(body.utf8.count, 16)
            let channel = makeChannel(maxFrameBytes: 16)
            try channel.writeInbound(buffer(frameBytes(body)))
            XCTAssertEqual(try readFrames(channel), [body])
            XCTAssertTrue(try channel.finish().isClean)

            let over = makeChannel(maxFrameBytes: 15)
            XCTAssertThrowsError(try over.writeInbound(buffer(frameBytes(body)))) { error in
                XCTAssertEqual(error as? FramingError, .frameTooLarge(length: 16, limit: 15))
            }
            _ = try? over.finish()
        }
    }

    func testZeroLimitMeansUnlimited() throws {
        try eachFramer {
            let body = "{\"k\":\"" + String(repeating: "y", count: 5000) + "\"}"
            let channel = makeChannel(maxFrameBytes: 0)
            try channel.writeInbound(buffer(frameBytes(body)))
            XCTAssertEqual(try readFrames(channel), [body])
            XCTAssertTrue(try channel.finish().isClean)
        }
    }

    /// After a frame over the cap the connection is closing: what the peer sends next is not read
    /// as frames (its bytes would start mid-frame). `FrameReader` drops it quietly; NIO's decoder
    /// raises `dataReceivedInErrorState` for it.
    func testNothingIsPassedOnAfterAFramingError() throws {
        try eachFramer {
            let channel = makeChannel(maxFrameBytes: 16)
            XCTAssertThrowsError(try channel.writeInbound(buffer([0, 0, 1, 0] + frameBytes("{}"))))
            let later = buffer(frameBytes("{\"a\":1}"))
            if framer == .reader {
                XCTAssertNoThrow(try channel.writeInbound(later))
            } else {
                _ = try? channel.writeInbound(later)
            }
            XCTAssertEqual(try readFrames(channel), [])
            _ = try? channel.finish()
        }
    }

    /// A stream of frames of many sizes and keepalives, cut at random points (seeded, so a failure
    /// repeats), comes out as the same frames in order.
    func testRandomCutsGiveTheSameFrames() throws {
        try eachFramer {
            var random = SeededGenerator(seed: 0x5EED)
            for round in 0..<50 {
                let bodies = (0..<Int.random(in: 1...20, using: &random)).map { index in
                    "{\"n\":\"" + String(repeating: "x", count: Int.random(in: 0...3000, using: &random)) + "\(index)\"}"
                }
                var stream: [UInt8] = []
                for body in bodies {
                    if Bool.random(using: &random) { stream += [0, 0, 0, 0] }
                    stream += frameBytes(body)
                }
                let channel = makeChannel(maxFrameBytes: 4096)
                var offset = 0
                while offset < stream.count {
                    let cut = min(stream.count, offset + Int.random(in: 1...5000, using: &random))
                    try channel.writeInbound(buffer(Array(stream[offset..<cut])))
                    offset = cut
                }
                XCTAssertEqual(try readFrames(channel), bodies, "round \(round)")
                XCTAssertTrue(try channel.finish().isClean)
            }
        }
    }
}

extension FrameDecoderTests {
    /// A peer that announces a large frame and sends a few bytes of it gets a buffer for those
    /// bytes, not for the length it announced: a 1 MiB reservation for every 4-byte prefix would let
    /// a few thousand connections take gigabytes (and a length of 4 GiB without a cap crashed it:
    /// Fuzz/fuzz-frame-decoder).
    func testAnAnnouncedLengthReservesNothingBeforeItsBytesCome() throws {
        framer = .reader
        let reader = FrameReader(maxFrameBytes: 1 << 20)
        let channel = EmbeddedChannel(handler: reader)
        try channel.writeInbound(ByteBuffer(bytes: [0x00, 0x10, 0x00, 0x00] + Array(repeating: UInt8(ascii: "x"), count: 10)))
        XCTAssertLessThan(reader.heldCapacity, 1024)
        try channel.writeInbound(ByteBuffer(bytes: Array(repeating: UInt8(ascii: "x"), count: 100)))
        XCTAssertLessThan(reader.heldCapacity, 1024)

        let uncapped = FrameReader(maxFrameBytes: 0)
        let other = EmbeddedChannel(handler: uncapped)
        try other.writeInbound(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0x7B, 0x7D]))
        try other.writeInbound(ByteBuffer(bytes: [0x20]))
        XCTAssertLessThan(uncapped.heldCapacity, 1024)
        XCTAssertNil(try other.readInbound(as: ByteBuffer.self))
    }
}

/// SplitMix64: a repeatable generator for tests that cut streams at random points.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
