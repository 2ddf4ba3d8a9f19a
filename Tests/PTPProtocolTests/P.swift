import XCTest
final class PPTPProtocolTests: XCTestCase { func testX() {} }
