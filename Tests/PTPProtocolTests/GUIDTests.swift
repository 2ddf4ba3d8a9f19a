import XCTest

@testable import PTPProtocol

final class GUIDTests: XCTestCase {
    func testParseBareAnyCase() {
        let lower = GUID("0b370041-cd1e-40ac-ac59-0136bba850fe")
        XCTAssertEqual(lower, GUID(high: 0x0b37_0041_cd1e_40ac, low: 0xac59_0136_bba8_50fe))
        XCTAssertEqual(GUID("0B370041-CD1E-40AC-AC59-0136BBA850FE"), lower)
        XCTAssertEqual(GUID("0b370041-Cd1E-40aC-aC59-0136bBA850fE"), lower)
        XCTAssertEqual(GUID(IDs.zero), .zero)
        XCTAssertTrue(GUID.zero.isZero)
        XCTAssertFalse(lower!.isZero)
        XCTAssertEqual(GUID("ffffffff-ffff-ffff-ffff-ffffffffffff"), GUID(high: .max, low: .max))
    }

    func testGarbageRefused() {
        for text in [
            "", "0b370041cd1e40acac590136bba850fe", "{0b370041-cd1e-40ac-ac59-0136bba850fe}",
            "0b370041-cd1e-40ac-ac59-0136bba850f", "0b370041-cd1e-40ac-ac59-0136bba850fee",
            "0b370041-cd1e-40ac-ac59-0136bba850fg", "0b370041+cd1e-40ac-ac59-0136bba850fe",
            "0b37004-1cd1e-40ac-ac59-0136bba850fe", " 0b370041-cd1e-40ac-ac59-0136bba850f",
            "0b370041-cd1e-40ac-ac59-0136bba850f ", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "not a guid",
            "0b370041-cd1e-40ac-ac59-0136bba850fé",
        ] {
            XCTAssertNil(GUID(text), text)
        }
    }

    /// The parse against a plain byte-by-byte one: every byte of an id replaced by every value.
    func testEveryByteAtEveryPositionAgainstAPlainParse() {
        func reference(_ bytes: [UInt8]) -> GUID? {
            guard bytes.count == 36 else { return nil }
            var digits: [UInt64] = []
            for (offset, byte) in bytes.enumerated() {
                if [8, 13, 18, 23].contains(offset) {
                    guard byte == UInt8(ascii: "-") else { return nil }
                    continue
                }
                guard let value = GUID.hexValue(byte) else { return nil }
                digits.append(UInt64(value))
            }
            let high = digits[..<16].reduce(0) { $0 << 4 | $1 }
            let low = digits[16...].reduce(0) { $0 << 4 | $1 }
            return GUID(high: high, low: low)
        }
        let original = Array("0b370041-Cd1E-40aC-aC59-0136bBA850fE".utf8)
        var refused = 0
        for position in original.indices {
            for byte in UInt8.min...UInt8.max {
                var mutated = original
                mutated[position] = byte
                let parsed = mutated.withUnsafeBytes { GUID(canonical: $0) }
                XCTAssertEqual(parsed, reference(mutated), "byte \(byte) at \(position)")
                if parsed == nil { refused += 1 }
            }
        }
        // At a digit 22 values of 256 are digits; at a dash only the dash.
        XCTAssertEqual(refused, 32 * (256 - 22) + 4 * 255)
    }

    func testFormattingLowerCaseCanonical() {
        let guid = GUID("0B370041-CD1E-40AC-AC59-0136BBA850FE")!
        XCTAssertEqual(guid.description, "0b370041-cd1e-40ac-ac59-0136bba850fe")
        XCTAssertEqual(GUID(high: 0, low: 1).description, "00000000-0000-0000-0000-000000000001")
        XCTAssertEqual(GUID(high: 0x0123_4567_89ab_cdef, low: 0xfedc_ba98_7654_3210).description, "01234567-89ab-cdef-fedc-ba9876543210")
        XCTAssertEqual(GUID.zero.description, IDs.zero)
    }

    /// Every digit position of arbitrary values (not only version-4 ids) against `String(radix:)`.
    func testFormattingMatchesReferenceForArbitraryValues() {
        var generator = FastRandom()
        func hex(_ value: UInt64) -> String {
            let digits = String(value, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }
        let edges = [GUID.zero, GUID(high: .max, low: .max), GUID(high: 0xA0A0_A0A0_9F9F_9F9F, low: 0x0909_0A0A_F0F0_0F0F)]
        for guid in edges + (0..<2000).map({ _ in GUID(high: generator.next(), low: generator.next()) }) {
            let high = hex(guid.high)
            let low = hex(guid.low)
            let expected = "\(high.prefix(8))-\(high.dropFirst(8).prefix(4))-\(high.suffix(4))-\(low.prefix(4))-\(low.suffix(12))"
            XCTAssertEqual(guid.description, expected)
            XCTAssertEqual(GUID(expected), guid)
        }
    }

    /// The bucket hash (`_rawHashValue`) scatters ids that differ in a few bits only, high or low
    /// word, and depends on the table's seed.
    func testBucketHashScattersNearbyIDs() {
        let counts: [UInt64] = Array(0..<4096)
        let nearbyHigh: [GUID] = counts.map { GUID(high: $0, low: 0) }
        let nearbyLowTop: [GUID] = counts.map { GUID(high: 0, low: $0 << 40) }
        let nearbyLow: [GUID] = counts.map { GUID(high: 0x1234 << 48, low: $0) }
        for ids in [nearbyHigh, nearbyLowTop, nearbyLow] {
            var buckets = [Int](repeating: 0, count: 1024)
            for id in ids { buckets[id._rawHashValue(seed: 12345) & 1023] += 1 }
            // 4 ids a bucket on average; a weak mix puts hundreds in a few.
            XCTAssertLessThanOrEqual(buckets.max()!, 16)
            XCTAssertEqual(Set(ids).count, ids.count)
        }
        let id = GUID(high: 1, low: 2)
        XCTAssertNotEqual(id._rawHashValue(seed: 1), id._rawHashValue(seed: 2))
    }

    func testRoundTripAndOrdering() {
        var generator = FastRandom()
        var seen = Set<GUID>()
        for _ in 0..<1000 {
            let guid = GUID.random(using: &generator)
            XCTAssertEqual(GUID(guid.description), guid)
            XCTAssertEqual(GUID(guid.description.uppercased()), guid)
            seen.insert(guid)
            // Version 4, RFC 4122 variant.
            let text = Array(guid.description)
            XCTAssertEqual(text[14], "4")
            XCTAssertTrue("89ab".contains(text[19]), guid.description)
            XCTAssertFalse(guid.isZero)
        }
        XCTAssertEqual(seen.count, 1000)
        XCTAssertLessThan(GUID(high: 1, low: .max), GUID(high: 2, low: 0))
        XCTAssertLessThan(GUID(high: 1, low: 1), GUID(high: 1, low: 2))
        let system = GUID.random()
        XCTAssertEqual(Array(system.description)[14], "4")
    }

    func testNodeAddressBare() {
        let address = NodeAddress(IDs.a)
        XCTAssertEqual(address?.id, IDs.guid(IDs.a))
        XCTAssertNil(address?.name)
        XCTAssertEqual(address?.description, "node@\(IDs.a)")
        XCTAssertEqual(NodeAddress(IDs.a.uppercased())?.id, IDs.guid(IDs.a))
    }

    func testNodeAddressNamed() {
        let address = NodeAddress("LocalNode@\(IDs.a)")
        XCTAssertEqual(address?.id, IDs.guid(IDs.a))
        XCTAssertEqual(address?.name, "LocalNode")
        XCTAssertEqual(address?.description, "LocalNode@\(IDs.a)")
        let upper = NodeAddress("Relay9@\(IDs.a.uppercased())")
        XCTAssertEqual(upper?.id, IDs.guid(IDs.a))
        XCTAssertEqual(upper?.description, "Relay9@\(IDs.a)")
        let longest = String(repeating: "n", count: 64)
        XCTAssertEqual(NodeAddress("\(longest)@\(IDs.a)")?.name, longest)
    }

    func testNodeAddressInvalidNameDropped() {
        for name in ["Local Node", "bob!", "josé", "a-b", "a_b", "a.b", "a@b", String(repeating: "n", count: 65), ""] {
            let address = NodeAddress("\(name)@\(IDs.a)")
            XCTAssertEqual(address?.id, IDs.guid(IDs.a), name)
            XCTAssertNil(address?.name, name)
            XCTAssertEqual(address?.description, "node@\(IDs.a)", name)
        }
        // The initializer drops an invalid name too.
        XCTAssertNil(NodeAddress(id: IDs.guid(IDs.a), name: "no way").name)
        XCTAssertEqual(NodeAddress(id: IDs.guid(IDs.a), name: "ok1").name, "ok1")
        XCTAssertTrue(NodeAddress.isValidName("Abc123"))
        XCTAssertFalse(NodeAddress.isValidName("Abc 123"))
        XCTAssertFalse(NodeAddress.isValidName(""))
    }

    func testNodeAddressGarbageRefused() {
        for text in [
            "", "bob", "bob@", "bob@not-a-guid", "bob#\(IDs.a)", "bob\(IDs.a)", "\(IDs.a)@bob", "bob@\(IDs.a) ",
            " \(IDs.a)", "bob@{\(IDs.a)}", "bob@\(IDs.a.replacingOccurrences(of: "-", with: ""))",
        ] {
            XCTAssertNil(NodeAddress(text), text)
        }
    }

    func testIdentityIsTheGUID() {
        let named = NodeAddress("alice@\(IDs.a)")!
        let bare = NodeAddress(IDs.a)!
        XCTAssertEqual(named.id, bare.id)
        XCTAssertEqual(SenderTag(named).address, named)
        XCTAssertEqual(Array(SenderTag(bare).rendered), Array("node@\(IDs.a)".utf8))
    }

    /// The low half read from the text alone, 16 hex digits anywhere in a buffer, and the 17
    /// characters of a low half written alone: the same as the whole id's parsing and formatting.
    func testLowHalfAndSixteenDigits() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let id = GUID(high: generator.next(), low: generator.next())
            let text = Array(id.description.utf8)
            XCTAssertEqual(text.withUnsafeBytes { GUID.lowHalf(canonical: $0) }, id.low)
            var written = [UInt8](repeating: UInt8(ascii: "x"), count: 17)
            written.withUnsafeMutableBytes { GUID.writeLowHalf(id.low, to: $0.baseAddress!) }
            XCTAssertEqual(written, Array(text[19...]))
            let value: UInt64 = generator.next()
            let digits = Array(("zz" + String(repeating: "0", count: 16 - String(value, radix: 16).count) + String(value, radix: 16).uppercased()).utf8)
            XCTAssertEqual(digits.withUnsafeBytes { GUID.hexValue(sixteenDigitsAt: 2, in: $0) }, value)
        }
        var bad = Array(GUID.random().description.utf8)
        bad[35] = UInt8(ascii: "g")
        XCTAssertNil(bad.withUnsafeBytes { GUID.lowHalf(canonical: $0) })
        bad[35] = UInt8(ascii: "0")
        bad[23] = UInt8(ascii: "0")
        XCTAssertNil(bad.withUnsafeBytes { GUID.lowHalf(canonical: $0) }, "no dash")
        XCTAssertNil(Array("0123456789abcdeX".utf8).withUnsafeBytes { GUID.hexValue(sixteenDigitsAt: 0, in: $0) })
    }
}
