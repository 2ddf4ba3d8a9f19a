import NIOCore
import NIOEmbedded
import XCTest

@testable import PTPProtocol

final class FrameDecoderTests: XCTestCase {
    private func makeChannel(maxFrameBytes: Int) -> EmbeddedChannel {
        EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes)))
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

    func testFrameSplitInUnevenChunks() throws {
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

    func testSeveralFramesInOneWrite() throws {
        let channel = makeChannel(maxFrameBytes: 1024)
        let bodies = ["{\"n\":1}", "{\"n\":22}", "[]", "{\"n\":\"three\"}"]
        try channel.writeInbound(buffer(bodies.flatMap(frameBytes)))
        XCTAssertEqual(try readFrames(channel), bodies)
        XCTAssertTrue(try channel.finish().isClean)
    }

    /// The cap is read when each frame's length comes in: its owner changes it between frames
    /// (the HELLO raises it, a reload lowers it) without touching the pipeline.
    func testASharedCapChangedBetweenFramesAppliesToTheNextFrame() throws {
        let cap = FrameSizeCap(bytes: 16)
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(cap: cap)))
        let long = "{\"text\":\"0123456789\"}"
        XCTAssertThrowsError(try channel.writeInbound(buffer(frameBytes(long)))) { error in
            XCTAssertEqual(error as? FramingError, .frameTooLarge(length: long.utf8.count, limit: 16))
        }
        let reopened = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(cap: cap)))
        try reopened.writeInbound(buffer(frameBytes("{}")))
        cap.bytes = 1024
        try reopened.writeInbound(buffer(frameBytes(long)))
        XCTAssertEqual(try readFrames(reopened), ["{}", long])
        cap.bytes = 8
        XCTAssertThrowsError(try reopened.writeInbound(buffer(frameBytes(long))))
        cap.bytes = 0
        let unlimited = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(cap: cap)))
        try unlimited.writeInbound(buffer(frameBytes(String(repeating: "x", count: 100_000))))
        XCTAssertEqual(try readFrames(unlimited).first?.count, 100_000, "0 is no cap")
    }

    func testKeepalivesAreSkipped() throws {
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

    func testWriteKeepaliveWritesZeroLength() {
        var out = ByteBuffer()
        out.writeKeepalive()
        XCTAssertEqual(out.readableBytesView.map { $0 }, [0, 0, 0, 0])
    }

    func testOversizedLengthFailsAsSoonAsLengthIsIn() throws {
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

    func testHugeLengthFailsBeforeBody() throws {
        let channel = makeChannel(maxFrameBytes: 1_048_576)
        XCTAssertThrowsError(try channel.writeInbound(buffer([0xFF, 0xFF, 0xFF, 0xFF]))) { error in
            XCTAssertEqual(error as? FramingError, .frameTooLarge(length: 0xFFFF_FFFF, limit: 1_048_576))
            XCTAssertTrue("\(error)".contains("4294967295"), "\(error)")
        }
        _ = try? channel.finish()
    }

    func testOversizedFrameAfterValidFrameInSameWrite() throws {
        let channel = makeChannel(maxFrameBytes: 16)
        XCTAssertThrowsError(try channel.writeInbound(buffer(frameBytes("{\"a\":1}") + [0, 0, 1, 0]))) { error in
            XCTAssertEqual(error as? FramingError, .frameTooLarge(length: 256, limit: 16))
        }
        XCTAssertEqual(try readFrames(channel), ["{\"a\":1}"])
        _ = try? channel.finish()
    }

    func testFrameExactlyAtLimitIsAccepted() throws {
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

    func testZeroLimitMeansUnlimited() throws {
        let body = "{\"k\":\"" + String(repeating: "y", count: 5000) + "\"}"
        let channel = makeChannel(maxFrameBytes: 0)
        try channel.writeInbound(buffer(frameBytes(body)))
        XCTAssertEqual(try readFrames(channel), [body])
        XCTAssertTrue(try channel.finish().isClean)
    }
}
