import NIOCore
import NIOEmbedded
import XCTest

@testable import RelayCore

/// Stands for `ConnectionHandler`: takes each buffer passed on as one frame that is not an answer,
/// and tells the limiter so.
private final class FrameSink: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var frames = 0
    var limiter: NodeRateLimiter?
}

extension FrameSink {
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        frames += 1
        limiter?.countFrame()
    }
}

/// The rates the test sets, and the throttling episodes it counts.
private final class TestPolicy: NodeRatePolicy {
    var nodeRates = NodeRates(messagesPerSecond: 100, messagesBurst: 10, bytesPerSecond: 0, bytesBurst: 0)
    var throttles = 0

    func noteThrottled(_ channel: Channel) { throttles += 1 }
}

final class NodeRateLimiterTests: XCTestCase {
    private let policy = TestPolicy()
    private var rates: NodeRates {
        get { policy.nodeRates }
        set { policy.nodeRates = newValue }
    }
    private var throttles: Int { policy.throttles }
    private var counter = ReadCounter()
    private var sink = FrameSink()

    private func makeChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        let limiter = NodeRateLimiter(policy: policy)
        sink.limiter = limiter
        try channel.pipeline.syncOperations.addHandlers([counter, limiter, sink])
        return channel
    }

    private func send(_ channel: EmbeddedChannel, frames: Int, size: Int = 10) throws {
        for _ in 0..<frames {
            try channel.writeInbound(ByteBuffer(repeating: 0x41, count: size))
        }
    }

    private func readsPerCycle(_ channel: EmbeddedChannel) throws -> UInt? {
        try channel.syncOptions?.getOption(ChannelOptions.maxMessagesPerRead)
    }

    func testReadsPassUnderBudget() throws {
        let channel = try makeChannel()
        defer { _ = try? channel.finish() }
        try send(channel, frames: 5)
        channel.read()
        XCTAssertEqual(counter.reads, 1)
        XCTAssertEqual(sink.frames, 5)
        XCTAssertEqual(throttles, 0)
    }

    func testOverBudgetHoldsTheReadUntilTheBudgetAllowsMore() throws {
        let channel = try makeChannel()
        defer { _ = try? channel.finish() }
        // 30 frames against a burst of 10: 20 in debt, 100/s pays it back in 200 ms.
        try send(channel, frames: 30)
        XCTAssertEqual(sink.frames, 30, "frames already decoded are all delivered")
        channel.read()
        XCTAssertEqual(counter.reads, 0, "read held back")
        XCTAssertEqual(throttles, 1)
        XCTAssertEqual(try readsPerCycle(channel), 1, "small reads while throttled")
        channel.read()
        XCTAssertEqual(counter.reads, 0, "a second read while held is held too")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(150))
        XCTAssertEqual(counter.reads, 0)
        // Resumes when 50 ms worth (5 frames) are back: 20 + 5 tokens at 100/s.
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        XCTAssertEqual(counter.reads, 1, "read again once the budget allows")
        XCTAssertEqual(throttles, 1)

        // Still over budget on the next read: the same episode, counted once.
        try send(channel, frames: 20)
        channel.read()
        XCTAssertEqual(counter.reads, 1)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        XCTAssertEqual(counter.reads, 2)
        XCTAssertEqual(throttles, 1, "one episode while the sender stays over budget")

        // A read that passes at once ends the episode; the next one counts again.
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        XCTAssertEqual(try readsPerCycle(channel), 1, "still the same episode")
        channel.read()
        XCTAssertEqual(counter.reads, 3)
        XCTAssertEqual(
            try readsPerCycle(channel), NodeRateLimiter.Reads.normalMaxMessagesPerRead, "normal reads once the sender is back under budget")
        try send(channel, frames: 30)
        channel.read()
        XCTAssertEqual(counter.reads, 3)
        XCTAssertEqual(throttles, 2)
    }

    func testBytesBudget() throws {
        rates = NodeRates(messagesPerSecond: 0, messagesBurst: 0, bytesPerSecond: 1000, bytesBurst: 1000)
        let channel = try makeChannel()
        defer { _ = try? channel.finish() }
        try send(channel, frames: 1, size: 3000)
        channel.read()
        XCTAssertEqual(counter.reads, 0)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1999))
        XCTAssertEqual(counter.reads, 0)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        XCTAssertEqual(counter.reads, 1)
    }

    func testUnlimitedNeverHolds() throws {
        rates = .unlimited
        let channel = try makeChannel()
        defer { _ = try? channel.finish() }
        try send(channel, frames: 10_000)
        channel.read()
        XCTAssertEqual(counter.reads, 1)
        XCTAssertEqual(throttles, 0)
    }

    func testAProvenPeerIsExemptAndAHeldReadGoesOn() throws {
        let channel = try makeChannel()
        defer { _ = try? channel.finish() }
        try send(channel, frames: 30)
        channel.read()
        XCTAssertEqual(counter.reads, 0)
        channel.pipeline.triggerUserOutboundEvent(PeerRelayProven(), promise: nil)
        XCTAssertEqual(counter.reads, 1, "the held read goes on at once")
        try send(channel, frames: 10_000)
        channel.read()
        XCTAssertEqual(counter.reads, 2)
        channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        XCTAssertEqual(counter.reads, 2, "no timer left behind")
    }

    func testAReloadAppliesToAnOpenConnection() throws {
        let channel = try makeChannel()
        defer { _ = try? channel.finish() }
        try send(channel, frames: 30)
        channel.read()
        XCTAssertEqual(counter.reads, 0)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        XCTAssertEqual(counter.reads, 1)
        // Lowered to 1 message a second, burst 1: the next frames hold the read for seconds.
        rates = NodeRates(messagesPerSecond: 1, messagesBurst: 1, bytesPerSecond: 0, bytesBurst: 0)
        try send(channel, frames: 3)
        channel.read()
        XCTAssertEqual(counter.reads, 1)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(2500))
        XCTAssertEqual(counter.reads, 1)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(600))
        XCTAssertEqual(counter.reads, 2)
        // Raised to unlimited: reads pass at once.
        rates = .unlimited
        try send(channel, frames: 1000)
        channel.read()
        XCTAssertEqual(counter.reads, 3)
    }
}
