import XCTest
final class POps: XCTestCase { func testX() {} }
