/// The parts of an ELF64 file the kernel loader needs (System V gABI,
/// "ELF Header" and "Program Header"), parsed and range-checked.
public struct ELF64Header {
    public static let size = 64
    public static let programHeaderSize = 56

    public var type: UInt16
    public var machine: UInt16
    public var entry: UInt64
    public var programHeaderOffset: UInt64
    public var programHeaderEntrySize: UInt16
    public var programHeaderCount: UInt16

    /// e_type values a linked kernel can have.
    public static let executable: UInt16 = 2  // ET_EXEC
    public static let sharedObject: UInt16 = 3  // ET_DYN (position-independent executables)

    /// Decodes the little-endian ELF64 header at the start of `bytes`.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count >= Self.size,
            let type = bytes.loadLittleEndian(UInt16.self, at: 16),
            let machine = bytes.loadLittleEndian(UInt16.self, at: 18),
            let entry = bytes.loadLittleEndian(UInt64.self, at: 24),
            let phoff = bytes.loadLittleEndian(UInt64.self, at: 32),
            let phentsize = bytes.loadLittleEndian(UInt16.self, at: 54),
            let phnum = bytes.loadLittleEndian(UInt16.self, at: 56)
        else { return nil }
        self.type = type
        self.machine = machine
        self.entry = entry
        self.programHeaderOffset = phoff
        self.programHeaderEntrySize = phentsize
        self.programHeaderCount = phnum
    }
}

public struct ELF64ProgramHeader {
    public static let load: UInt32 = 1  // PT_LOAD

    public var type: UInt32
    public var offset: UInt64
    public var physicalAddress: UInt64
    public var fileSize: UInt64
    public var memorySize: UInt64

    /// Decodes the program header at `offset` in `bytes` (56 bytes, little-endian).
    public init?(_ bytes: [UInt8], at offset: Int) {
        guard let type = bytes.loadLittleEndian(UInt32.self, at: offset),
            let fileOffset = bytes.loadLittleEndian(UInt64.self, at: offset + 8),
            let paddr = bytes.loadLittleEndian(UInt64.self, at: offset + 24),
            let filesz = bytes.loadLittleEndian(UInt64.self, at: offset + 32),
            let memsz = bytes.loadLittleEndian(UInt64.self, at: offset + 40)
        else { return nil }
        self.type = type
        self.offset = fileOffset
        self.physicalAddress = paddr
        self.fileSize = filesz
        self.memorySize = memsz
    }
}
