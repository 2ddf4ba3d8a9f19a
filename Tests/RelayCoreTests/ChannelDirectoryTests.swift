import NIOCore
import XCTest

@testable import RelayCore

/// The CHANNEL announcements a new client is sent (`ChannelDirectory`): live ones only, an
/// expired one dropped from the table when it is asked for.
final class ChannelDirectoryTests: XCTestCase {
    func testOnlyLiveAnnouncementsAreCurrentAndExpiredOnesAreDropped() {
        let directory = ChannelDirectory(ttl: 10)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        XCTAssertEqual(directory.current(now: start), [], "nothing announced")
        directory.update(channelID: "old", frame: ByteBuffer(string: "old"), now: start)
        directory.update(channelID: "new", frame: ByteBuffer(string: "new"), now: start + .seconds(5))
        XCTAssertEqual(Set(directory.current(now: start + .seconds(9)).map { String(buffer: $0) }), ["old", "new"])
        XCTAssertEqual(directory.count, 2)
        XCTAssertEqual(directory.current(now: start + .seconds(12)).map { String(buffer: $0) }, ["new"])
        XCTAssertEqual(directory.count, 1, "the expired announcement left the table")
        // A refresh keeps it: its frame is the latest, its time starts again.
        directory.update(channelID: "new", frame: ByteBuffer(string: "newer"), now: start + .seconds(14))
        XCTAssertEqual(directory.current(now: start + .seconds(20)).map { String(buffer: $0) }, ["newer"])
        XCTAssertEqual(directory.current(now: start + .seconds(30)), [])
        XCTAssertEqual(directory.count, 0)
    }
}
