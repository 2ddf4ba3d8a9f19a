import PTPProtocol
import XCTest

@testable import PTPPunch

/// The CONNECT exchange of the initiator as a pure value: events in, actions out.
final class PunchInitiatorTests: XCTestCase {
    let a = GUID("0b370041-cd1e-40ac-ac59-0136bba850fe")!
    let b = GUID("5f715c17-4a41-482a-ab1f-45fa2cdd702b")!
    let relay = GUID("9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4")!
    let discoveryID = GUID("c6a856bb-9057-4318-bca9-d374ecb6ad02")!
    let step1ID = GUID("ddaf46ce-8b60-49fe-8e3e-6df4c0b709a2")!

    func machine(local: String = "10.0.0.2:40000", probes: Bool = false, usesRTTHint: Bool = true) -> PunchInitiator {
        PunchInitiator(
            node: a, peerNode: b, relayID: relay, local: ConnectAddress(parsing: local), probes: probes, usesRTTHint: usesRTTHint,
            discoveryID: discoveryID, step1ID: step1ID)
    }

    func discoveryAnswer(_ src: String) -> PunchInitiator.Event {
        .connect(.init(sourceNode: a, destinationNode: relay, src: src, dst: nil))
    }

    func step4(dst: String?, srcRTT: Int? = nil, dstRTT: Int? = nil) -> PunchInitiator.Event {
        .connect(
            .init(sourceNode: a, destinationNode: b, src: "198.51.100.7:51000", dst: dst, sourceRTTMilliseconds: srcRTT, destinationRTTMilliseconds: dstRTT))
    }

    func testHappyPathWithoutProbeAnnouncesTheObservedPortAndPunchesTheFilledAddress() {
        var exchange = machine()
        XCTAssertEqual(exchange.start(), [.sendDiscovery(id: discoveryID, src: ConnectAddress(parsing: ":40000")!)])
        XCTAssertEqual(exchange.phase, .discovering)

        // The NAT mapped local port 40000 to 51000: step 1 announces 51000 (the relay adds the IP).
        XCTAssertEqual(
            exchange.handle(discoveryAnswer("198.51.100.7:51000")),
            [.sendStep1(id: step1ID, src: ConnectAddress(parsing: ":51000")!, extras: .init())])
        XCTAssertEqual(exchange.phase, .awaitingAnswer)
        XCTAssertEqual(exchange.report.nat, .unknown, "one observation of a NAT tells nothing about its mapping")
        XCTAssertEqual(exchange.report.observed, ConnectAddress(parsing: "198.51.100.7:51000"))

        XCTAssertEqual(exchange.handle(step4(dst: "203.0.113.9:62000")), [.punch(peer: ConnectAddress(parsing: "203.0.113.9:62000")!)])
        XCTAssertEqual(exchange.phase, .punching)
        XCTAssertNil(exchange.report.rttHintMilliseconds, "no RTT keys, no hint")

        XCTAssertEqual(exchange.handle(.linkProven(attempts: 2, milliseconds: 120, via: .dialed)), [.finish])
        XCTAssertEqual(exchange.phase, .finished)
        XCTAssertEqual(exchange.report.result, .direct)
        XCTAssertNil(exchange.report.reason)
        XCTAssertEqual(exchange.report.attempts, 2)
        XCTAssertEqual(exchange.report.timeToDirectMilliseconds, 120)
        XCTAssertEqual(exchange.report.peer, ConnectAddress(parsing: "203.0.113.9:62000"))
        XCTAssertEqual(exchange.handle(.deadlinePassed), [], "a finished exchange ignores what comes later")
    }

    func testFramesThatAreNotTheAwaitedAnswerAreIgnored() {
        var exchange = machine()
        _ = exchange.start()
        // Another node's discovery answer, step 4 before step 1, a NACK of something else.
        XCTAssertEqual(exchange.handle(.connect(.init(sourceNode: b, destinationNode: relay, src: "1.2.3.4:5", dst: nil))), [])
        XCTAssertEqual(exchange.handle(step4(dst: "203.0.113.9:62000")), [])
        XCTAssertEqual(exchange.handle(.nack(messageID: step1ID, reason: "unreachable")), [])
        XCTAssertEqual(exchange.phase, .discovering)
        _ = exchange.handle(discoveryAnswer("198.51.100.7:51000"))
        // Step 4 of another exchange (another peer) is not this one's.
        XCTAssertEqual(exchange.handle(.connect(.init(sourceNode: a, destinationNode: relay, src: "x", dst: "1.2.3.4:5"))), [])
        XCTAssertEqual(exchange.phase, .awaitingAnswer)
    }

    func testNoNATIsEndpointIndependentWithoutAProbe() {
        var exchange = machine(local: "127.0.0.1:40000")
        _ = exchange.start()
        _ = exchange.handle(discoveryAnswer("127.0.0.1:40000"))
        XCTAssertEqual(exchange.report.nat, .endpointIndependent)
        XCTAssertEqual(exchange.report.natReason, "no NAT: the relay sees the local address 127.0.0.1:40000")
    }

    func testSymmetricNATIsDetectedByTheProbeAndNotPunched() {
        var exchange = machine(probes: true)
        _ = exchange.start()
        XCTAssertEqual(exchange.handle(discoveryAnswer("198.51.100.7:51000")), [.runProbe])
        XCTAssertEqual(exchange.phase, .probing)
        XCTAssertEqual(exchange.handle(.probed(ConnectAddress(parsing: "198.51.100.7:51001")!)), [.finish])
        XCTAssertEqual(exchange.report.nat, .symmetric)
        XCTAssertEqual(exchange.report.result, .relay)
        XCTAssertEqual(exchange.report.probeObserved, ConnectAddress(parsing: "198.51.100.7:51001"))
        XCTAssertTrue(exchange.report.reason?.hasPrefix("symmetric NAT") == true, exchange.report.reason ?? "nil")
        XCTAssertEqual(exchange.report.attempts, 0)
    }

    func testAProbeThatSeesTheSameMappingProvesEndpointIndependent() {
        var exchange = machine(probes: true)
        _ = exchange.start()
        _ = exchange.handle(discoveryAnswer("198.51.100.7:51000"))
        XCTAssertEqual(
            exchange.handle(.probed(ConnectAddress(parsing: "198.51.100.7:51000")!)),
            [.sendStep1(id: step1ID, src: ConnectAddress(parsing: ":51000")!, extras: .init())])
        XCTAssertEqual(exchange.report.nat, .endpointIndependent)
    }

    func testAFailedProbeLeavesTheNATUnknownAndPunchesAnyway() {
        var exchange = machine(probes: true)
        _ = exchange.start()
        _ = exchange.handle(discoveryAnswer("198.51.100.7:51000"))
        XCTAssertEqual(exchange.handle(.probeFailed("connection refused")).count, 1)
        XCTAssertEqual(exchange.phase, .awaitingAnswer)
        XCTAssertEqual(exchange.report.nat, .unknown)
        XCTAssertTrue(exchange.report.natReason?.contains("the probe failed: connection refused") == true)
    }

    func testTheRelayRTTHintIsHalfTheSumOfBothKeys() {
        var exchange = machine()
        _ = exchange.start()
        _ = exchange.handle(discoveryAnswer("198.51.100.7:51000"))
        _ = exchange.handle(step4(dst: "203.0.113.9:62000", srcRTT: 41, dstRTT: 80))
        XCTAssertEqual(exchange.report.rttHintMilliseconds, 60)

        var huge = machine()
        _ = huge.start()
        _ = huge.handle(discoveryAnswer("198.51.100.7:51000"))
        _ = huge.handle(step4(dst: "203.0.113.9:62000", srcRTT: Int.max, dstRTT: Int.max))
        XCTAssertNil(huge.report.rttHintMilliseconds, "two huge keys: no hint, no overflow")
    }

    func testNoRTTHintIsAskedForInStep1() {
        var exchange = machine(usesRTTHint: false)
        _ = exchange.start()
        XCTAssertEqual(
            exchange.handle(discoveryAnswer("198.51.100.7:51000")),
            [.sendStep1(id: step1ID, src: ConnectAddress(parsing: ":51000")!, extras: .init(rttHint: false))])
    }

    func testAnUnreachablePeerStaysOnTheRelayWithTheReason() {
        var exchange = machine()
        _ = exchange.start()
        _ = exchange.handle(discoveryAnswer("198.51.100.7:51000"))
        XCTAssertEqual(exchange.handle(.nack(messageID: step1ID, reason: "unreachable")), [.finish])
        XCTAssertEqual(exchange.report.result, .relay)
        XCTAssertEqual(exchange.report.reason, "the peer is not reachable through the relay (NACK unreachable)")
    }

    func testAPeerBehindASymmetricNATIsNotDialed() {
        var exchange = machine()
        _ = exchange.start()
        _ = exchange.handle(discoveryAnswer("198.51.100.7:51000"))
        var answer = InboundFrame.ConnectFields(sourceNode: a, destinationNode: b, src: "198.51.100.7:51000", dst: "203.0.113.9:62000")
        answer.nat = "symmetric"
        XCTAssertEqual(exchange.handle(.connect(answer)), [.finish])
        XCTAssertEqual(exchange.report.result, .relay)
        XCTAssertEqual(exchange.report.peerNAT, .symmetric)
        XCTAssertEqual(exchange.report.reason, "the peer's NAT is symmetric: punching cannot work, not tried")
        XCTAssertEqual(exchange.report.attempts, 0)
    }

    func testAStep4WithoutAHostIsNotDialed() {
        var exchange = machine()
        _ = exchange.start()
        _ = exchange.handle(discoveryAnswer("198.51.100.7:51000"))
        XCTAssertEqual(exchange.handle(step4(dst: ":62000")), [.finish])
        XCTAssertEqual(exchange.report.result, .relay)
        XCTAssertEqual(exchange.report.reason, "the peer's answer (step 4) has no usable address: :62000")
    }

    func testTheDeadlineEndsEveryPhaseWithItsOwnReason() {
        var discovering = machine()
        _ = discovering.start()
        XCTAssertEqual(discovering.handle(.deadlinePassed), [.finish])
        XCTAssertEqual(discovering.report.reason, "no address discovery answer from the relay before the deadline")

        var awaiting = machine()
        _ = awaiting.start()
        _ = awaiting.handle(discoveryAnswer("198.51.100.7:51000"))
        XCTAssertEqual(awaiting.handle(.deadlinePassed), [.finish])
        XCTAssertTrue(awaiting.report.reason?.hasPrefix("the peer did not answer the CONNECT") == true)

        var punching = machine()
        _ = punching.start()
        _ = punching.handle(discoveryAnswer("198.51.100.7:51000"))
        _ = punching.handle(step4(dst: "203.0.113.9:62000"))
        XCTAssertEqual(punching.handle(.deadlinePassed), [], "while punching, the dialer reports the deadline with its attempts")
        XCTAssertEqual(punching.phase, .punching)
        XCTAssertEqual(punching.handle(.punchGaveUp(attempts: 7, lastError: "connection refused")), [.finish])
        XCTAssertEqual(punching.report.result, .relay)
        XCTAssertEqual(punching.report.attempts, 7)
        XCTAssertEqual(punching.report.reason, "no direct connection before the deadline (7 dials, last: connection refused)")
        XCTAssertNil(punching.report.timeToDirectMilliseconds)
    }
}

/// The responder's answer to step 2.
final class PunchResponderTests: XCTestCase {
    let a = GUID("0b370041-cd1e-40ac-ac59-0136bba850fe")!
    let b = GUID("5f715c17-4a41-482a-ab1f-45fa2cdd702b")!
    let observed = ConnectAddress(parsing: "203.0.113.9:62000")!

    func step2(src: String? = "198.51.100.7:51000", srcRTT: Int? = nil, dstRTT: Int? = nil, refused: Bool = false) -> InboundFrame.ConnectFields {
        .init(
            sourceNode: a, destinationNode: b, src: src, dst: nil, sourceRTTMilliseconds: srcRTT, destinationRTTMilliseconds: dstRTT,
            rttHintRefused: refused)
    }

    func testStep2IsRecognisedOnlyForThisNodeWithSrcAndWithoutDst() {
        XCTAssertTrue(PunchResponder.isStepTwo(step2(), for: b))
        XCTAssertFalse(PunchResponder.isStepTwo(step2(), for: a))
        XCTAssertFalse(PunchResponder.isStepTwo(step2(src: nil), for: b))
        var step4 = step2()
        step4.dst = "203.0.113.9:62000"
        XCTAssertFalse(PunchResponder.isStepTwo(step4, for: b))
    }

    func testStep3AnnouncesThePublicPortAndDialsAfterTheHint() throws {
        let answer = try PunchResponder.answer(step2(srcRTT: 40, dstRTT: 81), observed: observed, honoursRTTHint: true).get()
        XCTAssertEqual(answer.peer, ConnectAddress(parsing: "198.51.100.7:51000"))
        XCTAssertEqual(answer.dst, ConnectAddress(parsing: ":62000"))
        XCTAssertEqual(answer.rttHintMilliseconds, 60)
        XCTAssertEqual(answer.dialDelayMilliseconds, 60)
    }

    func testWithoutBothKeysOrWhenAskedNotToTheResponderDialsAtOnce() throws {
        XCTAssertEqual(try PunchResponder.answer(step2(srcRTT: 40), observed: observed, honoursRTTHint: true).get().dialDelayMilliseconds, 0)
        XCTAssertEqual(
            try PunchResponder.answer(step2(srcRTT: 40, dstRTT: 40), observed: observed, honoursRTTHint: false).get().dialDelayMilliseconds, 0)
        let refused = try PunchResponder.answer(step2(srcRTT: 40, dstRTT: 40, refused: true), observed: observed, honoursRTTHint: true).get()
        XCTAssertEqual(refused.dialDelayMilliseconds, 0)
        XCTAssertEqual(refused.rttHintMilliseconds, 40, "the hint is still reported")
    }

    func testAnAbsurdHintIsCapped() throws {
        let answer = try PunchResponder.answer(step2(srcRTT: 60_000, dstRTT: 60_000), observed: observed, honoursRTTHint: true).get()
        XCTAssertEqual(answer.dialDelayMilliseconds, PunchResponder.maxDialDelayMilliseconds)
    }

    func testAHintOutOfRangeIsNoHintAndDoesNotOverflow() throws {
        for (source, destination) in [(Int.max, Int.max), (-1, 40), (40, 60_001)] {
            let answer = try PunchResponder.answer(step2(srcRTT: source, dstRTT: destination), observed: observed, honoursRTTHint: true).get()
            XCTAssertNil(answer.rttHintMilliseconds, "\(source), \(destination)")
            XCTAssertEqual(answer.dialDelayMilliseconds, 0, "\(source), \(destination)")
        }
    }

    func testStep3SaysSoOnlyWhenThisNATIsSymmetric() {
        XCTAssertEqual(PunchResponder.step3Extras(nat: .symmetric), .init(nat: "symmetric"))
        XCTAssertEqual(PunchResponder.step3Extras(nat: .unknown), .init())
        XCTAssertEqual(PunchResponder.step3Extras(nat: .endpointIndependent), .init())
    }

    func testAStep2WithoutAHostIsRefused() {
        guard case .failure(let refusal) = PunchResponder.answer(step2(src: ":51000"), observed: observed, honoursRTTHint: true) else {
            return XCTFail("answered a step 2 without a host")
        }
        XCTAssertTrue(refusal.reason.contains("no usable src"))
    }
}

final class NATTypeTests: XCTestCase {
    func address(_ text: String) -> ConnectAddress { ConnectAddress(parsing: text)! }

    func testClassification() {
        XCTAssertEqual(NATType.classify(local: address("10.0.0.2:4000"), relay: address("1.2.3.4:5000"), probe: address("1.2.3.4:5001")).nat, .symmetric)
        XCTAssertEqual(
            NATType.classify(local: address("10.0.0.2:4000"), relay: address("1.2.3.4:5000"), probe: address("1.2.3.4:5000")).nat, .endpointIndependent)
        XCTAssertEqual(NATType.classify(local: address("10.0.0.2:4000"), relay: address("1.2.3.4:4000"), probe: nil).nat, .unknown)
        XCTAssertEqual(NATType.classify(local: address("1.2.3.4:4000"), relay: address("1.2.3.4:4000"), probe: nil).nat, .endpointIndependent)
        // An IPv4 client seen on a dual-stack socket reads as the same address.
        XCTAssertEqual(NATType.classify(local: address("[::ffff:1.2.3.4]:4000"), relay: address("1.2.3.4:4000"), probe: nil).nat, .endpointIndependent)
        XCTAssertEqual(NATType.classify(local: nil, relay: address("1.2.3.4:4000"), probe: nil).nat, .unknown)
    }
}
