import NIOCore

extension ByteBuffer {
    /// NIO's `writeWithUnsafeMutableBytes(minimumWritableBytes:_:)` without its slice of the
    /// storage: NIO takes `dropFirst(writerIndex)` of it, a call of about 60 instructions, four
    /// times a relayed message (callgrind). `body` gets the writable bytes (at least one) and
    /// returns how many it wrote.
    @inlinable @inline(__always)
    @discardableResult
    public mutating func writeInPlace(minimumWritableBytes: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        // Some room, so that the storage has an address.
        precondition(minimumWritableBytes > 0, "writeInPlace needs room for at least one byte")
        reserveCapacity(minimumWritableBytes: minimumWritableBytes)
        let start = writerIndex
        let written = withVeryUnsafeMutableBytes { storage in
            body(UnsafeMutableRawBufferPointer(start: storage.baseAddress! + start, count: storage.count - start))
        }
        moveWriterIndex(forwardBy: written)
        return written
    }

    /// Appends `source` as it is, with one copy into reserved space: NIO's `writeBytes` of a
    /// pointer takes the same slice of its storage as above first (about 60 instructions, and
    /// about 300 over the copy for JSON text; callgrind).
    @inlinable @inline(__always)
    public mutating func writeRawBytes(_ source: UnsafeRawBufferPointer) {
        let count = source.count
        guard count > 0 else { return }
        writeInPlace(minimumWritableBytes: count) { buffer in
            buffer.baseAddress!.copyMemory(from: source.baseAddress!, byteCount: count)
            return count
        }
    }
}

/// Writing compact, ASCII-only JSON (`\uXXXX` escapes) into a ByteBuffer.
extension ByteBuffer {
    @inline(__always)
    public mutating func writeASCII(_ text: StaticString) {
        writeRawBytes(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// `"<guid>"`
    @inline(__always)
    public mutating func writeQuotedGUID(_ guid: GUID) {
        reserveCapacity(minimumWritableBytes: 38)
        writeInteger(UInt8(ascii: "\""))
        writeInPlace(minimumWritableBytes: 36) { pointer in
            guid.write(to: pointer)
            return 36
        }
        writeInteger(UInt8(ascii: "\""))
    }

    /// `"<text>"`, escaped as JSON, ASCII only.
    public mutating func writeJSONString(_ text: String) {
        writeInteger(UInt8(ascii: "\""))
        // Most strings (names, versions, ids) need no escape: one copy instead of a write per
        // character.
        if text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) {
            writeString(text)
            writeInteger(UInt8(ascii: "\""))
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x22: writeASCII("\\\"")
            case 0x5C: writeASCII("\\\\")
            case 0x0A: writeASCII("\\n")
            case 0x0D: writeASCII("\\r")
            case 0x09: writeASCII("\\t")
            case 0x20..<0x7F: writeInteger(UInt8(scalar.value))
            default: writeUnicodeEscapes(scalar.value)
            }
        }
        writeInteger(UInt8(ascii: "\""))
    }

    @inline(__always)
    mutating func writeUnicodeEscape(_ unit: UInt32) {
        let digits: StaticString = "0123456789abcdef"
        writeASCII("\\u")
        digits.withUTF8Buffer { table in
            for shift in stride(from: 12, through: 0, by: -4) {
                writeInteger(table[Int((unit >> UInt32(shift)) & 0xF)])
            }
        }
    }

    mutating func writeUnicodeEscapes(_ scalar: UInt32) {
        if scalar >= 0x10000 {
            let value = scalar - 0x10000
            writeUnicodeEscape(0xD800 + (value >> 10))
            writeUnicodeEscape(0xDC00 + (value & 0x3FF))
        } else {
            writeUnicodeEscape(scalar)
        }
    }

    /// Copies JSON text that the tape has already validated, dropping white space outside strings
    /// and escaping every non-ASCII character. When `compactASCII` the bytes are copied as they are.
    public mutating func writeCompactJSON(_ source: UnsafeRawBufferPointer, compactASCII: Bool) {
        if compactASCII {
            writeRawBytes(source)
            return
        }
        reserveCapacity(minimumWritableBytes: source.count)
        var index = 0
        var inString = false
        var runStart = 0
        func flushRun(_ end: Int) {
            if end > runStart { writeBytes(UnsafeRawBufferPointer(rebasing: source[runStart..<end])) }
        }
        while index < source.count {
            let byte = source[index]
            if inString {
                if byte == UInt8(ascii: "\\") {
                    index += 2
                    continue
                }
                if byte == UInt8(ascii: "\"") {
                    inString = false
                } else if byte >= 0x80 {
                    flushRun(index)
                    let (scalar, length) = Self.decodeUTF8(source, at: index)
                    writeUnicodeEscapes(scalar)
                    index += length
                    runStart = index
                    continue
                }
                index += 1
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                inString = true
                index += 1
            case 0x20, 0x0A, 0x0D, 0x09:
                flushRun(index)
                index += 1
                runStart = index
            default:
                index += 1
            }
        }
        flushRun(index)
    }

    static func decodeUTF8(_ bytes: UnsafeRawBufferPointer, at index: Int) -> (UInt32, Int) {
        let lead = UInt32(bytes[index])
        let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2
        var scalar = lead & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
        for offset in 1..<length {
            scalar = scalar << 6 | (UInt32(bytes[index + offset]) & 0x3F)
        }
        return (scalar, length)
    }
}
