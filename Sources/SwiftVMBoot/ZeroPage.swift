import SwiftVMMemory

/// The zero page (`struct boot_params`) handed to a 64-bit Linux entry point in RSI.
///
/// Offsets follow Documentation/arch/x86/zero-page.rst and the setup header
/// table in boot.rst. A vmlinux has no setup header of its own to copy in
/// (boot.rst "64-bit Boot Protocol"), so the header fields a loader would
/// normally copy from a bzImage are synthesised here.
public struct ZeroPage: Sendable {
    /// Where the initial RAM disk was loaded.
    public struct Initrd: Equatable, Sendable {
        public var address: GuestAddress
        public var size: UInt64

        public init(address: GuestAddress, size: UInt64) {
            self.address = address
            self.size = size
        }
    }

    /// At most ``maxE820Entries`` entries.
    public var e820: [E820Entry]
    public var commandLineAddress: GuestAddress
    /// Length of the command line in bytes, terminating NUL excluded.
    public var commandLineSize: UInt32
    public var initrd: Initrd?
    public var acpiRSDP: GuestAddress?
    /// A bzImage's setup header (from setup_sects at 0x1f1 on), copied in
    /// before the loader's fields are written over it (boot.rst, "64-bit
    /// Boot Protocol": the setup header is loaded from the kernel image);
    /// nil for a vmlinux, whose header fields are synthesised.
    public var setupHeader: [UInt8]?
    /// code32_start for a bzImage: where its protected-mode part was loaded.
    public var code32Start: UInt32?

    /// `E820_MAX_ENTRIES_ZEROPAGE`: the e820_table array has 128 slots.
    public static let maxE820Entries = 128
    public static let size = 4096

    public init(
        e820: [E820Entry],
        commandLineAddress: GuestAddress = X86Layout.commandLine,
        commandLineSize: UInt32,
        initrd: Initrd? = nil,
        acpiRSDP: GuestAddress? = nil
    ) {
        precondition(e820.count <= Self.maxE820Entries, "the zero page holds at most 128 e820 entries")
        self.e820 = e820
        self.commandLineAddress = commandLineAddress
        self.commandLineSize = commandLineSize
        self.initrd = initrd
        self.acpiRSDP = acpiRSDP
    }

    /// Byte offsets inside `struct boot_params` (zero-page.rst, boot.rst).
    enum Offset {
        static let acpiRSDPAddress = 0x070
        static let extRamdiskImage = 0x0c0
        static let extRamdiskSize = 0x0c4
        static let extCommandLinePointer = 0x0c8
        static let e820Entries = 0x1e8
        static let setupHeader = 0x1f1
        static let bootFlag = 0x1fe
        static let header = 0x202
        static let version = 0x206
        static let typeOfLoader = 0x210
        static let loadFlags = 0x211
        static let code32Start = 0x214
        static let ramdiskImage = 0x218
        static let ramdiskSize = 0x21c
        static let commandLinePointer = 0x228
        static let kernelAlignment = 0x230
        static let commandLineSize = 0x238
        static let e820Table = 0x2d0
    }

    /// 0xAA55 at 0x1fe, the boot sector signature every setup header carries.
    public static let bootFlag: UInt16 = 0xaa55
    /// "HdrS" read as a little-endian u32.
    public static let headerMagic: UInt32 = 0x5372_6448
    /// Boot protocol 2.15, the current one: every field written here is
    /// defined at that level (the ext_ fields need 2.12), and it is what a
    /// bzImage of the same kernel would report.
    public static let protocolVersion: UInt16 = 0x020f
    /// 0xff: a boot loader without an assigned id (boot.rst, type_of_loader).
    public static let undefinedLoader: UInt8 = 0xff
    /// LOADED_HIGH: the protected-mode kernel sits at or above 1 MiB. The
    /// other flags concern the real-mode setup code, which never runs here.
    public static let loadFlags: UInt8 = 0x01
    /// CONFIG_PHYSICAL_ALIGN default on x86_64 (16 MiB).
    public static let kernelAlignment: UInt32 = 0x100_0000

    /// The 4096 bytes of `struct boot_params`; every field not set here is zero.
    public func bytes() -> [UInt8] {
        var page = [UInt8](repeating: 0, count: Self.size)
        if let acpiRSDP {
            page.storeLittleEndian(acpiRSDP.rawValue, at: Offset.acpiRSDPAddress)
        }
        if let setupHeader, !setupHeader.isEmpty {
            // The kernel's own version, kernel_alignment, init_size and the
            // rest stay as the image states them; the decompressor reads them.
            let count = min(setupHeader.count, Offset.e820Table - Offset.setupHeader)
            page.replaceSubrange(Offset.setupHeader..<Offset.setupHeader + count, with: setupHeader.prefix(count))
            page[Offset.loadFlags] |= Self.loadFlags
            if let code32Start { page.storeLittleEndian(code32Start, at: Offset.code32Start) }
        } else {
            page.storeLittleEndian(Self.protocolVersion, at: Offset.version)
            page[Offset.loadFlags] = Self.loadFlags
            page.storeLittleEndian(Self.kernelAlignment, at: Offset.kernelAlignment)
        }
        page.storeLittleEndian(Self.bootFlag, at: Offset.bootFlag)
        page.storeLittleEndian(Self.headerMagic, at: Offset.header)
        page[Offset.typeOfLoader] = Self.undefinedLoader

        // 64-bit values are split: low half in the setup header, high half in
        // the ext_ fields (boot protocol 2.12).
        let commandLine = commandLineAddress.rawValue
        page.storeLittleEndian(UInt32(truncatingIfNeeded: commandLine), at: Offset.commandLinePointer)
        page.storeLittleEndian(UInt32(truncatingIfNeeded: commandLine >> 32), at: Offset.extCommandLinePointer)
        page.storeLittleEndian(commandLineSize, at: Offset.commandLineSize)

        if let initrd {
            let image = initrd.address.rawValue
            page.storeLittleEndian(UInt32(truncatingIfNeeded: image), at: Offset.ramdiskImage)
            page.storeLittleEndian(UInt32(truncatingIfNeeded: image >> 32), at: Offset.extRamdiskImage)
            page.storeLittleEndian(UInt32(truncatingIfNeeded: initrd.size), at: Offset.ramdiskSize)
            page.storeLittleEndian(UInt32(truncatingIfNeeded: initrd.size >> 32), at: Offset.extRamdiskSize)
        }

        let entries = e820.prefix(Self.maxE820Entries)
        page[Offset.e820Entries] = UInt8(entries.count)
        for (index, entry) in entries.enumerated() {
            entry.encode(into: &page, at: Offset.e820Table + index * E820Entry.encodedSize)
        }
        return page
    }

    /// Writes the zero page into guest memory (RSI must hold `address` at entry).
    public func write(to memory: GuestMemory, at address: GuestAddress = X86Layout.zeroPage) throws(GuestMemoryError) {
        try memory.write(bytes(), at: address)
    }
}
