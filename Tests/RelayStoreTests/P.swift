import XCTest
final class PStore: XCTestCase { func testX() {} }
