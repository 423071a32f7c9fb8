@testable import SwiftVMGuest

/// Builds small ELF64 images for loader tests, laid out as: ELF header,
/// program header table, then each segment's file bytes in order.
struct SyntheticELF {
    struct Segment {
        var type: UInt32 = 1  // PT_LOAD
        var physicalAddress: UInt64
        var contents: [UInt8]
        var memorySize: UInt64
        /// Overrides the computed p_offset / p_filesz when set.
        var offset: UInt64? = nil
        var fileSize: UInt64? = nil
    }

    var elfClass: UInt8 = 2
    var byteOrder: UInt8 = 1
    var type: UInt16 = 2
    var machine: UInt16 = 62
    var entry: UInt64 = 0x100_0000
    var programHeaderEntrySize: UInt16 = 56
    var programHeaderOffset: UInt64 = 64
    var segments: [Segment] = [
        Segment(physicalAddress: 0x100_0000, contents: Array(1...200), memorySize: 0x1000),
        Segment(physicalAddress: 0x110_0000, contents: [0xaa, 0xbb, 0xcc], memorySize: 3),
    ]

    func bytes() -> [UInt8] {
        var out = [0x7f, 0x45, 0x4c, 0x46, elfClass, byteOrder, 1] + [UInt8](repeating: 0, count: 9)
        out += le(type) + le(machine) + le(UInt32(1)) + le(entry) + le(programHeaderOffset) + le(UInt64(0))
        out += le(UInt32(0)) + le(UInt16(64)) + le(programHeaderEntrySize) + le(UInt16(segments.count))
        out += le(UInt16(64)) + le(UInt16(0)) + le(UInt16(0))
        var dataOffset = 64 + UInt64(56 * segments.count)
        for segment in segments {
            out += le(segment.type) + le(UInt32(5)) + le(segment.offset ?? dataOffset)
            out += le(segment.physicalAddress &+ 0xffff_ffff_8000_0000) + le(segment.physicalAddress)
            out += le(segment.fileSize ?? UInt64(segment.contents.count)) + le(segment.memorySize) + le(UInt64(0x1000))
            dataOffset += UInt64(segment.contents.count)
        }
        for segment in segments { out += segment.contents }
        return out
    }

    var image: InMemoryImage { InMemoryImage(bytes()) }
}

/// A minimal bzImage head: boot_flag, "HdrS" and a protocol version.
func syntheticBzImage(version: UInt16 = 0x020f, efiStub: Bool = true) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 0x400)
    if efiStub { bytes[0] = 0x4d; bytes[1] = 0x5a }
    bytes[0x1fe] = 0x55
    bytes[0x1ff] = 0xaa
    bytes.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
    bytes.replaceSubrange(0x206..<0x208, with: le(version))
    return bytes
}

/// A minimal arm64 Image head with an EFI stub ("MZ") and the "ARM\x64" magic.
func syntheticArm64Image() -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 0x40)
    bytes[0] = 0x4d
    bytes[1] = 0x5a
    bytes.replaceSubrange(0x38..<0x3c, with: [0x41, 0x52, 0x4d, 0x64])
    return bytes
}
