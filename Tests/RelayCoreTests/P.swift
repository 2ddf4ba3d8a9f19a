import XCTest
final class PRelayCoreTests: XCTestCase { func testX() {} }
