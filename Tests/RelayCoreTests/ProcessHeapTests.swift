import Foundation
import XCTest

@testable import RelayCore

final class ProcessHeapTests: XCTestCase {
    /// glibc takes the thresholds, unless the environment set its own (then they are left alone).
    func testTheThresholdsAreSetUnlessTheEnvironmentSetsThem() {
        let environment = ProcessInfo.processInfo.environment
        let operatorSet = ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"].contains { environment[$0] != nil }
        #if os(Linux)
            XCTAssertEqual(ProcessHeap.keepFreedMemory(), operatorSet ? .leftToTheEnvironment : .kept)
        #else
            XCTAssertEqual(ProcessHeap.keepFreedMemory(), .leftToTheEnvironment)
        #endif
    }
}
