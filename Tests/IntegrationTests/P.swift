import XCTest
final class PIntegrationTests: XCTestCase { func testX() {} }
