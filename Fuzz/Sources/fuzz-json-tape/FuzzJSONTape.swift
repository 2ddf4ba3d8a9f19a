import FuzzSupport
import PTPProtocol

// One tape for every input, as a connection reuses its tape from frame to frame: a parse must not
// depend on what the previous one left in the token storage.
nonisolated(unsafe) var tape = JSONTape()
nonisolated(unsafe) var copyTape = JSONTape()

/// The JSON tape parser on arbitrary bytes. Accepted input: token structure, UTF-8, the compact
/// copy the relay forwards (ASCII, parses to the same tokens) and every string written back with
/// `writeJSONString`. Refused input: the error's offset lies inside the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSONTape(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    do throws(JSONTape.ParseError) {
        try tape.parse(bytes)
    } catch {
        switch error {
        case .unexpected(let offset), .invalidUTF8(let offset), .trailingBytes(let offset):
            fuzzCheck(offset >= 0 && offset < size, "error offset \(offset) outside the input", bytes)
        case .truncated, .tooDeep:
            break
        case .tooLong(let length):
            // Only a text of 2 GiB or more, which no fuzz input is.
            fuzzCheck(length >= Int(Int32.max), "tooLong for \(length) bytes", bytes)
        }
        return 0
    }
    TapeChecks.structure(tape, bytes)
    TapeChecks.utf8(bytes)
    TapeChecks.compactCopy(tape, bytes, into: &copyTape)
    TapeChecks.stringRoundTrips(tape, bytes, into: &copyTape)
    return 0
}
