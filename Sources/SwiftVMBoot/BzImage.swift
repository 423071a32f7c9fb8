import SwiftVMMemory

/// The setup header of an x86 bzImage (Documentation/arch/x86/boot.rst,
/// "The Real-Mode Kernel Header") and where its protected-mode part goes.
///
/// swiftvm enters a bzImage through the 64-bit boot protocol: it loads the
/// protected-mode part (everything after the boot sector and the setup
/// sectors) unchanged, copies the setup header into the zero page, and
/// starts the vCPU in long mode at the load address + 0x200, the 64-bit
/// entry of the decompressor (`startup_64` in arch/x86/boot/compressed).
/// The decompressor then runs in the guest. The real-mode setup code never
/// runs.
public struct BzImageLayout: Equatable, Sendable {
    /// Offsets in the file (and in the zero page, which mirrors the first
    /// sector's header fields); `swiftvm inspect kernel` reads them too.
    public enum Offset {
        public static let setupSectors = 0x1f1
        public static let jump = 0x200
        public static let header = 0x202
        public static let version = 0x206
        /// kernel_version (2.00+): the banner's offset, less 0x200.
        public static let kernelVersion = 0x20e
        public static let loadFlags = 0x211
        public static let code32Start = 0x214
        public static let kernelAlignment = 0x230
        /// relocatable_kernel (2.05+).
        public static let relocatable = 0x234
        /// xloadflags (2.12+).
        public static let xloadflags = 0x236
        /// payload_offset and payload_length (2.08+).
        public static let payloadOffset = 0x248
        public static let payloadLength = 0x24c
        public static let preferredAddress = 0x258
        public static let initSize = 0x260
        /// Where `struct boot_params` stops holding the setup header
        /// (edd_mbr_sig_buffer starts here).
        static let zeroPageHeaderLimit = 0x290
    }

    /// The real-mode setup sectors that follow the boot sector, from the
    /// setup_sects byte: 0 means 4 (old kernels).
    public static func setupSectors(_ byte: UInt8) -> Int { byte == 0 ? 4 : Int(byte) }

    /// 2.12: the first protocol with xloadflags and so with XLF_KERNEL_64
    /// (Linux 3.8).
    public static let minimumProtocol: UInt16 = 0x020c
    /// XLF_KERNEL_64: the kernel has a 64-bit entry at the load address + 0x200.
    public static let xlfKernel64: UInt16 = 1 << 0
    public static let entryOffset: UInt64 = 0x200
    /// LOADED_HIGH in loadflags: the protected-mode part runs at or above 1 MiB.
    public static let loadedHigh: UInt8 = 0x01
    /// Where a kernel without a usable code32_start or pref_address goes.
    public static let defaultLoadAddress: UInt64 = 0x10_0000

    /// The boot protocol version, major << 8 | minor.
    public var protocolVersion: UInt16
    /// setup_sects as the kernel means it: 0 stands for 4.
    public var setupSectors: Int
    public var loadFlags: UInt8
    public var xloadflags: UInt16
    public var code32Start: UInt32
    public var kernelAlignment: UInt32
    public var relocatable: Bool
    /// pref_address (2.10+): where a relocatable kernel would rather be loaded.
    public var preferredAddress: UInt64
    /// init_size (2.10+): bytes from the kernel's runtime start that the
    /// decompressor and the decompressed kernel need.
    public var initSize: UInt32
    /// The setup header, from setup_sects (0x1f1) to its end (0x202 + the
    /// byte at 0x201), clamped to what the zero page has room for.
    public var setupHeader: [UInt8]
    /// Where the protected-mode part starts in the file: (setup_sects + 1) × 512.
    public var kernelOffset: UInt64
    /// Its size: the rest of the file.
    public var kernelSize: UInt64
    /// Where swiftvm loads it (see ``init(_:)``).
    public var loadAddress: UInt64
    /// One past the highest byte the kernel may use while it decompresses
    /// and runs, as init_size promises.
    public var endAddress: UInt64

    /// The 64-bit entry: ``loadAddress`` + 0x200.
    public var entry: UInt64 { loadAddress + Self.entryOffset }

    /// Reads and checks the setup header: boot protocol 2.12 or later,
    /// XLF_KERNEL_64 set, the setup sectors and some protected-mode code
    /// inside the file. Chooses the load address: a relocatable kernel
    /// (2.05+) goes to pref_address (2.10+) when that is at or above 1 MiB
    /// and a multiple of kernel_alignment, where its decompressor need not
    /// move it; otherwise the kernel goes to code32_start (1 MiB unless the
    /// header says otherwise), as boot.rst describes for a loader that does
    /// not relocate.
    public init(_ image: some ImageSource) throws(KernelImageError) {
        let head: [UInt8]
        do throws(ImageReadError) {
            head = try image.bytes(at: 0, count: Int(min(image.size, 0x1000)))
        } catch { throw .readFailed(error) }
        guard head.count > Offset.initSize + 4,
            head.loadLittleEndian(UInt16.self, at: 0x1fe) == 0xaa55,
            head.loadLittleEndian(UInt32.self, at: Offset.header) == ZeroPage.headerMagic,
            let version = head.loadLittleEndian(UInt16.self, at: Offset.version)
        else {
            if let version = head.loadLittleEndian(UInt16.self, at: Offset.version),
                head.loadLittleEndian(UInt32.self, at: Offset.header) == ZeroPage.headerMagic
            {
                throw .bzImageTruncated(protocolVersion: version, needed: UInt64(Offset.initSize + 4), fileSize: image.size)
            }
            throw .unknownFormat(leadingBytes: Array(head.prefix(8)))
        }
        guard version >= Self.minimumProtocol else { throw .bzImageProtocolTooOld(protocolVersion: version) }
        let xloadflags = head.loadLittleEndian(UInt16.self, at: Offset.xloadflags) ?? 0
        guard xloadflags & Self.xlfKernel64 != 0 else { throw .bzImageNo64BitEntry(protocolVersion: version) }

        let sectors = Self.setupSectors(head[Offset.setupSectors])
        let kernelOffset = UInt64(sectors + 1) * 512
        // Some protected-mode code past the entry must be there to run.
        guard image.size > kernelOffset + Self.entryOffset else {
            throw .bzImageTruncated(protocolVersion: version, needed: kernelOffset + Self.entryOffset + 1, fileSize: image.size)
        }
        let headerEnd = min(Offset.header + Int(head[Offset.jump + 1]), Offset.zeroPageHeaderLimit)
        protocolVersion = version
        setupSectors = sectors
        loadFlags = head[Offset.loadFlags]
        self.xloadflags = xloadflags
        code32Start = head.loadLittleEndian(UInt32.self, at: Offset.code32Start) ?? 0
        kernelAlignment = head.loadLittleEndian(UInt32.self, at: Offset.kernelAlignment) ?? 0
        relocatable = head[Offset.relocatable] != 0
        preferredAddress = head.loadLittleEndian(UInt64.self, at: Offset.preferredAddress) ?? 0
        initSize = head.loadLittleEndian(UInt32.self, at: Offset.initSize) ?? 0
        setupHeader = Array(head[Offset.setupSectors..<max(headerEnd, Offset.setupSectors)])
        self.kernelOffset = kernelOffset
        kernelSize = image.size - kernelOffset

        let high = X86Layout.highMemory.rawValue
        let alignment = kernelAlignment.isPowerOfTwo ? UInt64(kernelAlignment) : 0
        if relocatable, preferredAddress >= high, alignment == 0 || preferredAddress % alignment == 0,
            preferredAddress < X86Layout.mmioGapStart.rawValue
        {
            loadAddress = preferredAddress
        } else if code32Start >= UInt32(high) {
            loadAddress = UInt64(code32Start)
        } else {
            loadAddress = Self.defaultLoadAddress
        }
        // A relocatable kernel runs from its load address rounded up to
        // kernel_alignment, but never below pref_address (LOAD_PHYSICAL_ADDR);
        // one that is not always runs at pref_address.
        var runtimeStart = loadAddress
        if alignment != 0 { runtimeStart = (runtimeStart + alignment - 1) & ~(alignment - 1) }
        if preferredAddress >= high { runtimeStart = relocatable ? max(runtimeStart, preferredAddress) : preferredAddress }
        // pref_address is the file's to choose: one near the top of the
        // address space ends past it, which saturates (and never fits in RAM).
        let runtimeEnd = runtimeStart.addingReportingOverflow(UInt64(initSize))
        endAddress = max(loadAddress + kernelSize, runtimeEnd.overflow ? .max : runtimeEnd.partialValue)
    }

    /// Checks that everything from the load address to ``endAddress`` is one stretch of RAM.
    public func checkFits(in memory: GuestMemory) throws(KernelImageError) {
        guard memory.region(containing: GuestAddress(loadAddress), length: endAddress - loadAddress) != nil else {
            throw .bzImageOutsideRAM(start: loadAddress, end: endAddress, ramSize: memory.size)
        }
    }

    /// Copies the protected-mode part to ``loadAddress``.
    func load(_ image: some ImageSource, into memory: GuestMemory) throws(KernelImageError) {
        try checkFits(in: memory)
        let target: UnsafeMutableRawBufferPointer
        do throws(GuestMemoryError) {
            target = try memory.checkedBytes(at: GuestAddress(loadAddress), count: Int(kernelSize))
        } catch {
            throw .bzImageOutsideRAM(start: loadAddress, end: endAddress, ramSize: memory.size)
        }
        do throws(ImageReadError) { try image.read(at: kernelOffset, into: target) } catch { throw .readFailed(error) }
    }
}

extension UInt32 {
    fileprivate var isPowerOfTwo: Bool { self != 0 && self & (self - 1) == 0 }
}
