import SwiftVMMemory

/// Builds small ELF64 images for loader tests, laid out as: ELF header,
/// program header table, then each segment's file bytes in order.
public struct SyntheticELF {
    public struct Segment {
        public var type: UInt32 = 1  // PT_LOAD
        public var physicalAddress: UInt64
        public var contents: [UInt8]
        public var memorySize: UInt64
        /// Overrides the computed p_offset / p_filesz when set.
        public var offset: UInt64? = nil
        public var fileSize: UInt64? = nil

        public init(
            type: UInt32 = 1, physicalAddress: UInt64, contents: [UInt8], memorySize: UInt64, offset: UInt64? = nil,
            fileSize: UInt64? = nil
        ) {
            self.type = type
            self.physicalAddress = physicalAddress
            self.contents = contents
            self.memorySize = memorySize
            self.offset = offset
            self.fileSize = fileSize
        }
    }

    public init() {}

    public var elfClass: UInt8 = 2
    public var byteOrder: UInt8 = 1
    public var type: UInt16 = 2
    public var machine: UInt16 = 62
    public var entry: UInt64 = 0x100_0000
    public var programHeaderEntrySize: UInt16 = 56
    public var programHeaderOffset: UInt64 = 64
    public var segments: [Segment] = [
        Segment(physicalAddress: 0x100_0000, contents: Array(1...200), memorySize: 0x1000),
        Segment(physicalAddress: 0x110_0000, contents: [0xaa, 0xbb, 0xcc], memorySize: 3),
    ]

    public func bytes() -> [UInt8] {
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

    public var image: InMemoryImage { InMemoryImage(bytes()) }
}

/// A minimal bzImage head: boot_flag, "HdrS" and a protocol version.
public func syntheticBzImage(version: UInt16 = 0x020f, efiStub: Bool = true) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 0x400)
    if efiStub { bytes[0] = 0x4d; bytes[1] = 0x5a }
    bytes[0x1fe] = 0x55
    bytes[0x1ff] = 0xaa
    bytes.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
    bytes.replaceSubrange(0x206..<0x208, with: le(version))
    return bytes
}

/// A minimal arm64 Image head with an EFI stub ("MZ") and the "ARM\x64" magic.
public func syntheticArm64Image() -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 0x40)
    bytes[0] = 0x4d
    bytes[1] = 0x5a
    bytes.replaceSubrange(0x38..<0x3c, with: [0x41, 0x52, 0x4d, 0x64])
    return bytes
}
