/// The 64-byte header at the start of an arm64 Linux `Image`
/// (Documentation/arch/arm64/booting.rst). Since Linux 3.17 every field is
/// little-endian, whatever the kernel's own endianness.
public struct Arm64ImageHeader: Equatable, Sendable {
    public static let size = 64
    /// "ARM\x64" read little-endian, at offset 0x38.
    public static let magic: UInt32 = 0x644d_5241
    /// booting.rst: when image_size is 0 the kernel predates 3.17 and
    /// text_offset is to be taken as 0x80000.
    public static let legacyTextOffset: UInt64 = 0x8_0000

    public var code0: UInt32
    public var code1: UInt32
    public var textOffset: UInt64
    /// The bytes the kernel occupies from its load address, .bss included; 0 before 3.17.
    public var imageSize: UInt64
    public var flags: UInt64

    /// Parses the first 64 bytes of `bytes`; nil when they are missing or the magic is wrong.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count >= Self.size, bytes.loadLittleEndian(UInt32.self, at: 0x38) == Self.magic,
            let code0 = bytes.loadLittleEndian(UInt32.self, at: 0x00),
            let code1 = bytes.loadLittleEndian(UInt32.self, at: 0x04),
            let textOffset = bytes.loadLittleEndian(UInt64.self, at: 0x08),
            let imageSize = bytes.loadLittleEndian(UInt64.self, at: 0x10),
            let flags = bytes.loadLittleEndian(UInt64.self, at: 0x18)
        else { return nil }
        self.code0 = code0
        self.code1 = code1
        self.textOffset = textOffset
        self.imageSize = imageSize
        self.flags = flags
    }

    /// Flags bit 0: the kernel runs big-endian.
    public var isBigEndian: Bool { flags & 1 != 0 }

    /// Flags bits 1-2: the page size the kernel was built for.
    public var pageSize: Arm64PageSize { Arm64PageSize(rawValue: UInt8((flags >> 1) & 3)) ?? .unspecified }

    /// Flags bit 3: set when the 2 MiB-aligned base may be anywhere in RAM,
    /// clear when it should be as close as possible to the start of RAM.
    public var placesAnywhere: Bool { flags & 8 != 0 }

    /// The load offset from the 2 MiB-aligned base, allowing for pre-3.17 kernels.
    public var effectiveTextOffset: UInt64 { imageSize == 0 ? Self.legacyTextOffset : textOffset }
}

/// The kernel page size, flags bits 1-2 of the Image header.
public enum Arm64PageSize: UInt8, Sendable, CustomStringConvertible {
    case unspecified = 0
    case size4K = 1
    case size16K = 2
    case size64K = 3

    public var description: String {
        switch self {
        case .unspecified: "unspecified"
        case .size4K: "4 KiB"
        case .size16K: "16 KiB"
        case .size64K: "64 KiB"
        }
    }

    /// The Kconfig choice that selects this page size.
    public var kconfig: String {
        switch self {
        case .unspecified, .size4K: "CONFIG_ARM64_4K_PAGES"
        case .size16K: "CONFIG_ARM64_16K_PAGES"
        case .size64K: "CONFIG_ARM64_64K_PAGES"
        }
    }
}
