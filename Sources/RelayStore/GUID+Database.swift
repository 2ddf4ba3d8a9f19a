import Foundation
import GRDB
import PTPProtocol

extension GUID {
    /// 16 bytes, big-endian: ids sort as their text does.
    var blob: Data {
        var bytes = Data(count: 16)
        bytes.withUnsafeMutableBytes { buffer in
            buffer.storeBytes(of: high.bigEndian, toByteOffset: 0, as: UInt64.self)
            buffer.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        return bytes
    }

    init?(blob: Data) {
        guard blob.count == 16 else { return nil }
        let (high, low) = blob.withUnsafeBytes { buffer in
            (
                UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            )
        }
        self.init(high: high, low: low)
    }
}

extension Row {
    func guid(_ column: String) -> GUID {
        GUID(blob: self[column] as Data) ?? .zero
    }
}
