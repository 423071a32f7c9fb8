import SwiftVMMemory
import SwiftVMBoot

/// Fresh guest RAM of `size` bytes with the x86 layout (lazily committed).
public func makeMemory(size: UInt64 = 128 << 20) throws -> GuestMemory {
    try GuestMemory(regions: X86Layout.ramRegions(size: size))
}

/// The bytes of `value`, little-endian, for golden comparisons.
public func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

extension Array where Element == UInt8 {
    /// `count` bytes from `offset`.
    public func slice(_ offset: Int, _ count: Int) -> [UInt8] { Array(self[offset..<offset + count]) }

    /// The byte sum modulo 256, which an MP checksum makes zero.
    public var byteSum: UInt8 { reduce(0, &+) }
}
