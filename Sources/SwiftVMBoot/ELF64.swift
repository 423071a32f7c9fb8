import SwiftVMMemory

/// The parts of an ELF64 file the kernel loader needs (System V gABI,
/// "ELF Header" and "Program Header"), parsed and range-checked.
public struct ELF64Header: Equatable, Sendable {
    public static let size = 64
    public static let programHeaderSize = 56

    /// e_ident[EI_DATA]: 1 little-endian, 2 big-endian.
    public var dataEncoding: UInt8
    public var type: UInt16
    public var machine: UInt16
    public var entry: UInt64
    public var programHeaderOffset: UInt64
    public var programHeaderEntrySize: UInt16
    public var programHeaderCount: UInt16

    /// e_type values a linked kernel can have.
    public static let executable: UInt16 = 2  // ET_EXEC
    public static let sharedObject: UInt16 = 3  // ET_DYN (position-independent executables)

    /// Whether the file is little-endian (ELFDATA2LSB), the only order the fields are decoded in.
    public var isLittleEndian: Bool { dataEncoding == 1 }

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
        self.dataEncoding = bytes[5]
        self.type = type
        self.machine = machine
        self.entry = entry
        self.programHeaderOffset = phoff
        self.programHeaderEntrySize = phentsize
        self.programHeaderCount = phnum
    }
}

public struct ELF64ProgramHeader: Equatable, Sendable {
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

extension ELF64Header {
    /// The program header table, in file order, read from `image` after
    /// checking that e_phentsize is ELF64's and that every entry lies inside
    /// the file. Empty when e_phnum is 0.
    public func programHeaders(in image: some ImageSource) throws(KernelImageError) -> [ELF64ProgramHeader] {
        let count = Int(programHeaderCount)
        guard count > 0 else { return [] }
        guard Int(programHeaderEntrySize) == Self.programHeaderSize else {
            throw .badProgramHeaderSize(programHeaderEntrySize)
        }
        // Name the first entry that runs past the end of the file.
        let entrySize = UInt64(Self.programHeaderSize)
        for index in 0..<count {
            let (end, overflow) = programHeaderOffset.addingReportingOverflow(UInt64(index + 1) * entrySize)
            if overflow || end > image.size {
                throw .truncatedProgramHeader(index: index, end: overflow ? .max : end, fileSize: image.size)
            }
        }
        let table: [UInt8]
        do throws(ImageReadError) {
            table = try image.bytes(at: programHeaderOffset, count: count * Self.programHeaderSize)
        } catch {
            throw .readFailed(error)
        }
        var headers: [ELF64ProgramHeader] = []
        for index in 0..<count {
            guard let program = ELF64ProgramHeader(table, at: index * Self.programHeaderSize) else {
                throw .truncatedProgramHeader(
                    index: index, end: programHeaderOffset + UInt64(index + 1) * entrySize, fileSize: image.size)
            }
            headers.append(program)
        }
        return headers
    }
}
