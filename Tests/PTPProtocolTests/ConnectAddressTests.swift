import XCTest

@testable import PTPProtocol

final class ConnectAddressTests: XCTestCase {
    func testReadsEveryWrittenForm() throws {
        XCTAssertEqual(ConnectAddress(parsing: "1.2.3.4:40000"), ConnectAddress(host: "1.2.3.4", port: 40000))
        XCTAssertEqual(ConnectAddress(parsing: "[2001:db8::1]:443"), ConnectAddress(host: "2001:db8::1", port: 443))
        XCTAssertEqual(ConnectAddress(parsing: ":34567"), ConnectAddress(host: nil, port: 34567))
        XCTAssertEqual(ConnectAddress(parsing: "34567"), ConnectAddress(host: nil, port: 34567))
        XCTAssertEqual(ConnectAddress(parsing: "65535")?.port, 65535)
        XCTAssertEqual(ConnectAddress(parsing: "1")?.port, 1)
    }

    func testRefusesBadPortsAndHosts() {
        for text in [
            "", ":", "0", ":0", "65536", "1.2.3.4:", "1.2.3.4:-1", "1.2.3.4:+80", "1.2.3.4:99999999999999999999",
            "::1", "2001:db8::1:80", "[2001:db8::1]", "[2001:db8::1]80", "[1.2.3.4]:80", "[::1:80", "port", "1.2.3.4:8 0",
        ] {
            XCTAssertNil(ConnectAddress(parsing: text), text)
        }
    }

    func testWritesHostPortAndBracketsIPv6() throws {
        XCTAssertEqual(ConnectAddress(host: "198.18.1.2", port: 5)?.description, "198.18.1.2:5")
        XCTAssertEqual(ConnectAddress(host: "fe80::1", port: 5)?.description, "[fe80::1]:5")
        XCTAssertEqual(ConnectAddress(host: nil, port: 5)?.description, ":5")
        for text in ["198.18.1.2:40000", "[2001:db8::2]:1", ":9"] {
            XCTAssertEqual(ConnectAddress(parsing: text)?.description, text)
        }
    }

    /// An IPv4 client on a dual-stack `[::]` listener is seen as `::ffff:a.b.c.d`; clients parse
    /// `a.b.c.d:port`, so that is what is written.
    func testWritesAnIPv4MappedAddressInItsIPv4Form() throws {
        XCTAssertEqual(ConnectAddress(host: "::ffff:198.18.1.2", port: 40000)?.description, "198.18.1.2:40000")
        XCTAssertEqual(ConnectAddress(host: "::FFFF:10.0.0.1", port: 1)?.description, "10.0.0.1:1")
        XCTAssertEqual(ConnectAddress(parsing: "[::ffff:10.0.0.1]:80")?.description, "10.0.0.1:80")
        XCTAssertEqual(ConnectAddress.plainIP("::ffff:1:2"), "::ffff:1:2")
        XCTAssertEqual(ConnectAddress.plainIP("::1"), "::1")
    }

    func testRefusesAPortOutOfRangeOrAnEmptyHost() {
        XCTAssertNil(ConnectAddress(host: "1.2.3.4", port: 0))
        XCTAssertNil(ConnectAddress(host: "1.2.3.4", port: 65536))
        XCTAssertNil(ConnectAddress(host: "", port: 80))
    }
}
