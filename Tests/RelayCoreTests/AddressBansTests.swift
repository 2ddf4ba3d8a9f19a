import NIOCore
import XCTest

@testable import RelayCore

/// The ban list: when a ban ends, its size, reloads. A pure value, the time passed in. (When an
/// address is banned is `AcceptLedgerTests`'.)
final class AddressBansTests: XCTestCase {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    private func at(_ seconds: Double) -> NIODeadline { start + .nanoseconds(Int64(seconds * 1e9)) }
    private func key(_ ip: String) -> AddressKey { AddressKey(try! SocketAddress(ipAddress: ip, port: 1))! }

    func testABanEndsAfterItsDurationAndIsNotExtendedMeanwhile() {
        var bans = AddressBans(settings: BanSettings(afterRefusals: 2, duration: .seconds(30)))
        let a = key("192.0.2.1")
        XCTAssertTrue(bans.ban(a, now: at(1)))
        XCTAssertFalse(bans.ban(a, now: at(10)), "banned already: not a new ban, not extended")
        XCTAssertEqual(bans.nextExpiry, at(31))
        XCTAssertTrue(bans.isBanned(a))
        XCTAssertFalse(bans.isBanned(key("192.0.2.2")))
        XCTAssertFalse(bans.expire(now: at(30)), "not yet: it ends at 31 s")
        XCTAssertTrue(bans.expire(now: at(31.5)))
        XCTAssertFalse(bans.isBanned(a))
        XCTAssertNil(bans.nextExpiry)
        XCTAssertTrue(bans.ban(a, now: at(40)), "banned again after its ban ended")
    }

    func testNoBansWhileOffAndTurningThemOffLiftsEveryBan() {
        var bans = AddressBans(settings: BanSettings(afterRefusals: 0, duration: .seconds(60)))
        XCTAssertFalse(bans.ban(key("192.0.2.1"), now: at(0)))
        XCTAssertFalse(bans.update(BanSettings(afterRefusals: 1, duration: .seconds(60))))
        XCTAssertTrue(bans.ban(key("192.0.2.1"), now: at(20)))
        XCTAssertTrue(bans.ban(key("2001:db8:1:2::1"), now: at(20)))
        XCTAssertFalse(bans.update(BanSettings(afterRefusals: 5, duration: .seconds(10))), "still on: the bans stay")
        XCTAssertEqual(bans.nextExpiry, at(80), "a ban keeps its end")
        XCTAssertTrue(bans.update(BanSettings(afterRefusals: 0, duration: .seconds(60))), "off: the bans are lifted")
        XCTAssertTrue(bans.banned.isEmpty)
    }

    func testAnIPv6SlashSixtyFourIsOneAddress() {
        var bans = AddressBans(settings: BanSettings(afterRefusals: 2, duration: .seconds(60)))
        XCTAssertTrue(bans.ban(key("2001:db8:1:2::1"), now: at(0)))
        XCTAssertFalse(bans.ban(key("2001:db8:1:2:ffff::9"), now: at(1)), "the same /64")
        XCTAssertTrue(bans.isBanned(key("2001:db8:1:2::77")))
        XCTAssertFalse(bans.isBanned(key("2001:db8:1:3::1")))
    }

    func testTheListIsCappedAndANewBanReplacesTheOneEndingFirst() {
        var bans = AddressBans(settings: BanSettings(afterRefusals: 1, duration: .seconds(60)))
        for index in 0..<AddressBans.capacity {
            XCTAssertTrue(bans.ban(.v4(0x0A00_0000 + UInt32(index)), now: at(Double(index) / 1000)))
        }
        XCTAssertEqual(bans.banned.count, AddressBans.capacity)
        XCTAssertTrue(bans.ban(.v4(0x0B00_0000), now: at(1)))
        XCTAssertEqual(bans.banned.count, AddressBans.capacity)
        XCTAssertFalse(bans.isBanned(.v4(0x0A00_0000)), "the ban ending first made room")
        XCTAssertTrue(bans.isBanned(.v4(0x0A00_0001)))
        XCTAssertTrue(bans.isBanned(.v4(0x0B00_0000)))
        // The program for a full list of IPv6 prefixes stays within the kernel's limit.
        let prefixes = (0..<UInt64(AddressBans.capacity)).map { AddressKey.v6(prefix: 0x2001_0DB8_0000_0000 + $0) }
        XCTAssertLessThanOrEqual(BanFilterProgram(banning: prefixes).instructions.count, BanFilterProgram.maximumLength)
    }
}

/// The socket filter, run by a classic BPF interpreter written here (the instructions it uses) on
/// SYNs and other segments over IPv4 and IPv6. The kernel runs it in `LimitsTests`.
final class BanFilterProgramTests: XCTestCase {
    /// A segment as the listening socket's filter sees it: the IP header at the network offset,
    /// the TCP header where loads without it start.
    private struct Segment {
        var ipHeader: [UInt8]
        var tcpHeader: [UInt8]

        static func tcp(flags: UInt8) -> [UInt8] {
            var header = [UInt8](repeating: 0, count: 20)
            header[12] = 0x50
            header[13] = flags
            return header
        }

        static func v4(from source: String, flags: UInt8) -> Segment {
            var header = [UInt8](repeating: 0, count: 20)
            header[0] = 0x45
            let parts = source.split(separator: ".").map { UInt8($0)! }
            header[12..<16] = parts[...]
            return Segment(ipHeader: header, tcpHeader: tcp(flags: flags))
        }

        static func v6(prefix: UInt64, host: UInt64, flags: UInt8) -> Segment {
            var header = [UInt8](repeating: 0, count: 40)
            header[0] = 0x60
            for index in 0..<8 {
                header[8 + index] = UInt8(truncatingIfNeeded: prefix >> (56 - 8 * UInt64(index)))
                header[16 + index] = UInt8(truncatingIfNeeded: host >> (56 - 8 * UInt64(index)))
            }
            return Segment(ipHeader: header, tcpHeader: tcp(flags: flags))
        }
    }

    private static let syn: UInt8 = 0x02
    private static let ack: UInt8 = 0x10

    /// The verdict: 0 drops the segment, anything else keeps it.
    private func run(_ program: BanFilterProgram, on segment: Segment) throws -> UInt32 {
        let code = program.instructions
        var a: UInt32 = 0
        var pc = 0
        func load(_ k: UInt32, size: Int) throws -> UInt32 {
            let offset = Int32(bitPattern: k)
            let (bytes, start) =
                offset < 0
                ? (segment.ipHeader, Int(offset - BanFilterProgram.networkOffset)) : (segment.tcpHeader, Int(offset))
            guard start >= 0, start + size <= bytes.count else { throw XCTSkip("load out of the packet at \(offset)") }
            return bytes[start..<start + size].reduce(0) { $0 << 8 | UInt32($1) }
        }
        for _ in 0..<BanFilterProgram.maximumLength {
            let instruction = try XCTUnwrap(code.indices.contains(pc) ? code[pc] : nil, "ran off the program at \(pc)")
            pc += 1
            switch instruction.code {
            case BanFilterProgram.loadByte: a = try load(instruction.k, size: 1)
            case BanFilterProgram.loadWord: a = try load(instruction.k, size: 4)
            case BanFilterProgram.andConstant: a &= instruction.k
            case BanFilterProgram.jumpAlways: pc += Int(instruction.k)
            case BanFilterProgram.jumpIfEqual: pc += Int(a == instruction.k ? instruction.jumpIfTrue : instruction.jumpIfFalse)
            case BanFilterProgram.jumpIfSet: pc += Int(a & instruction.k != 0 ? instruction.jumpIfTrue : instruction.jumpIfFalse)
            case BanFilterProgram.returnConstant: return instruction.k
            default: XCTFail("unknown opcode \(instruction.code)")
            }
        }
        XCTFail("no return")
        return 0
    }

    func testSYNsFromBannedAddressesAreDroppedAndNothingElse() throws {
        let program = BanFilterProgram(banning: [
            .v4(0xC000_0201), .v4(0xC633_6407), .v6(prefix: 0x2001_0DB8_0001_0002), .v6(prefix: 0x2001_0DB8_00FF_0000),
        ])
        XCTAssertEqual(try run(program, on: .v4(from: "192.0.2.1", flags: Self.syn)), BanFilterProgram.drop)
        XCTAssertEqual(try run(program, on: .v4(from: "198.51.100.7", flags: Self.syn)), BanFilterProgram.drop)
        XCTAssertEqual(try run(program, on: .v4(from: "192.0.2.2", flags: Self.syn)), BanFilterProgram.accept)
        XCTAssertEqual(
            try run(program, on: .v4(from: "192.0.2.1", flags: Self.ack)), BanFilterProgram.accept,
            "a segment of an open connection (an accepted socket inherits the filter)")
        XCTAssertEqual(try run(program, on: .v6(prefix: 0x2001_0DB8_0001_0002, host: 77, flags: Self.syn)), BanFilterProgram.drop)
        XCTAssertEqual(try run(program, on: .v6(prefix: 0x2001_0DB8_00FF_0000, host: 1, flags: Self.syn)), BanFilterProgram.drop)
        XCTAssertEqual(
            try run(program, on: .v6(prefix: 0x2001_0DB8_0001_0003, host: 77, flags: Self.syn)), BanFilterProgram.accept, "another /64")
        XCTAssertEqual(
            try run(program, on: .v6(prefix: 0x2001_0DB8_0002_0002, host: 77, flags: Self.syn)), BanFilterProgram.accept,
            "the second word alone matches")
        XCTAssertEqual(try run(program, on: .v6(prefix: 0x2001_0DB8_0001_0002, host: 77, flags: Self.ack)), BanFilterProgram.accept)
    }

    func testAnEmptyListKeepsEverythingAndTheOrderOfTheListDoesNotMatter() throws {
        let empty = BanFilterProgram(banning: [])
        XCTAssertEqual(try run(empty, on: .v4(from: "192.0.2.1", flags: Self.syn)), BanFilterProgram.accept)
        XCTAssertEqual(try run(empty, on: .v6(prefix: 1, host: 1, flags: Self.syn)), BanFilterProgram.accept)
        XCTAssertEqual(
            BanFilterProgram(banning: [.v4(1), .v4(2), .v6(prefix: 3)]), BanFilterProgram(banning: [.v6(prefix: 3), .v4(2), .v4(1)]))
    }

    func testAListOfEveryIPv4AddressInASlashTwentyFourStillJumpsShort() throws {
        let banned = (0..<UInt32(256)).map { AddressKey.v4(0xC000_0200 | $0) }
        let program = BanFilterProgram(banning: banned + [.v6(prefix: 0x2001_0DB8_0000_0001)])
        XCTAssertEqual(try run(program, on: .v4(from: "192.0.2.255", flags: Self.syn)), BanFilterProgram.drop)
        XCTAssertEqual(try run(program, on: .v4(from: "192.0.3.0", flags: Self.syn)), BanFilterProgram.accept)
        XCTAssertEqual(
            try run(program, on: .v6(prefix: 0x2001_0DB8_0000_0001, host: 5, flags: Self.syn)), BanFilterProgram.drop,
            "the IPv6 part is reached past 512 IPv4 instructions")
    }
}
