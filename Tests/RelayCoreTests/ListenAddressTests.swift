import NIOCore
import XCTest

@testable import RelayCore

final class ListenAddressTests: XCTestCase {
    func testLiteralsBindWithoutALookup() throws {
        XCTAssertEqual(try ListenAddress.socketAddress(host: "0.0.0.0", port: 9001).hostPort, "0.0.0.0:9001")
        XCTAssertEqual(try ListenAddress.socketAddress(host: "::", port: 9001).hostPort, "[::]:9001")
        XCTAssertEqual(try ListenAddress.socketAddress(host: "::1", port: 443).hostPort, "[::1]:443")
    }

    func testAddressesAreLoggedAsOperatorsWriteThem() throws {
        XCTAssertEqual(try SocketAddress(ipAddress: "127.0.0.1", port: 9001).hostPort, "127.0.0.1:9001")
        XCTAssertEqual(try SocketAddress(ipAddress: "2001:db8::1", port: 9443).hostPort, "[2001:db8::1]:9443")
        XCTAssertEqual(try SocketAddress(unixDomainSocketPath: "/run/relay.sock").hostPort, "/run/relay.sock")
        XCTAssertNotEqual(try SocketAddress(ipAddress: "0.0.0.0", port: 1).hostPort, "\(try SocketAddress(ipAddress: "0.0.0.0", port: 1))",
            "NIO's own form ([IPv4]0.0.0.0/0.0.0.0:1) is not what operators read")
    }
}
