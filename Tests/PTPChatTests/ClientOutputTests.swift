import Foundation
import PTPProtocol
import XCTest

@testable import ptpchat

/// The client's output as pure values: readable lines, NACK reasons in words, the outcome of a
/// send, the ROUTING view. The commands themselves run against real relays in IntegrationTests.
final class ClientOutputTests: XCTestCase {
    private let alice = GUID("11111111-1111-4111-8111-111111111111")!
    private let bob = GUID("22222222-2222-4222-8222-222222222222")!
    private let carol = GUID("33333333-3333-4333-8333-333333333333")!

    func testSafeEscapesWhatATerminalWouldActOnAndKeepsTheRest() {
        XCTAssertEqual(ReadableLine.safe("plain \u{e9}\u{1F44B} \\ text"), "plain \u{e9}\u{1F44B} \\ text")
        XCTAssertEqual(ReadableLine.safe("a\nb\tc\rd"), "a\\nb\\tc\\rd")
        XCTAssertEqual(ReadableLine.safe("\u{1b}[2J\u{7}\u{0}\u{7f}\u{9b}"), "\\u{1b}[2J\\u{7}\\u{0}\\u{7f}\\u{9b}")
        XCTAssertEqual(ReadableLine.safe("x\u{202e}y\u{2066}z\u{2028}"), "x\\u{202e}y\\u{2066}z\\u{2028}")
    }

    func testAMessageLineHasTimeSenderChannelAndDecodedText() throws {
        let frame = #"{"msg_type":"MESSAGE","msg_id":"44444444-4444-4444-8444-444444444444","ttl":31,"flood":false,"sender_id":"alice@11111111-1111-4111-8111-111111111111","msg_data":{"channel":"lobby","message":"aGkKdGhlcmU=","msg_id":"44444444-4444-4444-8444-444444444444"}}"#
        let line = try XCTUnwrap(ReadableLine.format(Array(frame.utf8), at: Date(timeIntervalSince1970: 0), path: "direct"))
        XCTAssertTrue(line.hasSuffix(" alice (\(alice)) #lobby [direct]: hi\\nthere"), line)
        XCTAssertNotNil(line.firstMatch(of: #/^\d\d:\d\d:\d\d /#), line)
    }

    func testFloodLinesSayWhatHappened() throws {
        let join = #"{"msg_type":"JOIN","sender_id":"bob@22222222-2222-4222-8222-222222222222","msg_data":{"channel":"lobby","channel_id":"x","msg_id":"y"}}"#
        let leave = join.replacingOccurrences(of: "JOIN", with: "LEAVE")
        let channel = #"{"msg_type":"CHANNEL","msg_data":{"node_id":"22222222-2222-4222-8222-222222222222","channel":"lobby","members":[{"node_id":"a"},{"node_id":"b"}],"closed":true}}"#
        let now = Date()
        XCTAssertTrue(ReadableLine.format(Array(join.utf8), at: now)?.hasSuffix(" bob (\(bob)) joined #lobby") == true)
        XCTAssertTrue(ReadableLine.format(Array(leave.utf8), at: now)?.hasSuffix(" bob (\(bob)) left #lobby") == true)
        XCTAssertTrue(
            ReadableLine.format(Array(channel.utf8), at: now)?.hasSuffix(" ? (\(bob)) announced #lobby (closed): 2 members") == true,
            ReadableLine.format(Array(channel.utf8), at: now) ?? "nil")
        XCTAssertNil(ReadableLine.format(Array(#"{"msg_type":"ROUTING","msg_data":{}}"#.utf8), at: now))
        XCTAssertNil(ReadableLine.format(Array("not json".utf8), at: now))
    }

    func testEveryNackReasonHasASentenceAndAnUnknownOneIsShownAsGiven() {
        for reason in NackReason.allCases {
            for stored in [false, true] {
                let sentence = NackReasonText.sentence(reason.rawValue, stored: stored)
                XCTAssertFalse(sentence.contains(reason.rawValue), "\(reason): the code, not words: \(sentence)")
                XCTAssertGreaterThan(sentence.count, 20, "\(reason)")
            }
        }
        XCTAssertTrue(NackReasonText.sentence("unreachable", stored: true).contains("delivers it when the recipient connects"))
        XCTAssertEqual(NackReasonText.sentence("brand_new", stored: false), "the relay refused it with reason \"brand_new\"")
    }

    func testDeliveryAnswersWaitForEveryRecipientAndSortThemOut() throws {
        let message = GUID.random()
        var answers = DeliveryAnswers(messageID: message, recipients: [alice, bob, carol, alice])
        answers.refused([bob], reason: "unreachable", stored: true)
        XCTAssertNil(answers.report(), "alice and carol are not answered for yet")
        answers.acked()
        let report = try XCTUnwrap(answers.report())
        XCTAssertEqual(report.outcome, .stored)
        XCTAssertEqual(report.delivered, [alice, carol])
        XCTAssertEqual(report.stored, [.init(node: bob, reason: "unreachable")])
        XCTAssertEqual(report.humanLine, "delivered to 2 of 3 recipients; stored by the relay: delivered when \(bob) connects")

        var refused = DeliveryAnswers(messageID: message, recipients: [alice])
        refused.refused([], reason: "queue_full", stored: false)
        let refusal = try XCTUnwrap(refused.report())
        XCTAssertEqual(refusal.outcome, .refused)
        XCTAssertNil(refusal.humanLine)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(refusal.json.utf8)) as? [String: Any])
        XCTAssertEqual(json["outcome"] as? String, "refused")
        XCTAssertEqual((json["refused"] as? [[String: Any]])?.first?["reason"] as? String, "queue_full")

        var delivered = DeliveryAnswers(messageID: message, recipients: [alice])
        delivered.acked()
        XCTAssertEqual(delivered.report()?.humanLine, "delivered to \(alice)")
        XCTAssertEqual(delivered.report()?.outcome, .delivered)
    }

    func testRouteViewAppliesChunksAndWithdrawalsAndSortsByHopsThenName() {
        var view = RouteView()
        view.apply(Array(#"{"msg_type":"ROUTING","msg_data":{"nodes":[{"node_id":"zed@\#(alice)","ttl":2},{"node_id":"amy@\#(bob)","ttl":2}]}}"#.utf8))
        view.apply(Array(#"{"msg_type":"ROUTING","msg_data":{"nodes":[{"node_id":"bea@\#(carol)","ttl":1},{"node_id":"zed@\#(alice)","ttl":32}]}}"#.utf8))
        XCTAssertEqual(view.sorted.map(\.name), ["bea", "amy"], "zed withdrawn, then by hops")
        let table = view.table(endpoint: "127.0.0.1:9001").split(separator: "\n")
        XCTAssertEqual(table.count, 4)
        XCTAssertEqual(Set(table.dropFirst().map(\.count)).count, 1, "aligned: \(table)")
        XCTAssertTrue(RouteView().table(endpoint: "h:1").contains("routing.to_clients"))
    }
}

final class MessageTextDisplayTests: XCTestCase {
    func testDisplayDecodesBase64WithEscapesButNotAWordOfControlCharacters() {
        let hostile = Data("hi \u{1b}[31mred".utf8).base64EncodedString()
        XCTAssertEqual(MessageText.decode(hostile).encoding, .plain, "the JSON line's text keeps its rule")
        XCTAssertEqual(MessageText.display(hostile), "hi \u{1b}[31mred")
        XCTAssertEqual(MessageText.display("AAAA"), "AAAA")
        XCTAssertEqual(MessageText.display("hi from client"), "hi from client")
        XCTAssertEqual(MessageText.display("aGk="), "hi")
    }
}
