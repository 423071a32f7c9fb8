import SwiftVMMemory

/// The PVH boot ABI (Xen's "HVM direct boot", arch/x86/include/asm/xen/
/// hvm_start_info.h in Linux): the kernel names a 32-bit entry point in an
/// ELF note, and is entered there in 32-bit protected mode without paging,
/// with EBX holding the physical address of a ``PVHStartInfo``.
public enum PVHNote {
    /// The note owner, "Xen", and XEN_ELFNOTE_PHYS32_ENTRY, the note type
    /// whose descriptor is the physical address of the 32-bit entry point.
    public static let owner = "Xen"
    public static let phys32EntryType: UInt32 = 18
    /// Note segments larger than this are not read.
    static let maxSegmentBytes: UInt64 = 64 << 10

    /// The PVH entry point of an x86_64 ELF64 file, or nil when it carries
    /// no XEN_ELFNOTE_PHYS32_ENTRY note (or is not such a file). The
    /// descriptor is 4 bytes, or 8 as a 64-bit kernel writes it (only
    /// addresses below 4 GiB can be entered in 32-bit mode).
    public static func entry(_ image: some ImageSource) -> UInt64? {
        guard let header = try? KernelLoader.elfHeader(image), let programs = try? header.programHeaders(in: image) else {
            return nil
        }
        for program in programs where program.type == 4 && program.fileSize <= maxSegmentBytes {  // PT_NOTE
            guard let notes = try? image.bytes(at: program.offset, count: Int(program.fileSize)) else { continue }
            if let entry = entry(inNotes: notes) { return entry }
        }
        return nil
    }

    /// Walks one note segment: namesz, descsz, type (u32 each), then the
    /// name and the descriptor, each padded to 4 bytes.
    static func entry(inNotes notes: [UInt8]) -> UInt64? {
        var offset = 0
        while offset + 12 <= notes.count {
            guard let nameSize = notes.loadLittleEndian(UInt32.self, at: offset).map(Int.init),
                let descSize = notes.loadLittleEndian(UInt32.self, at: offset + 4).map(Int.init),
                let type = notes.loadLittleEndian(UInt32.self, at: offset + 8)
            else { return nil }
            let nameStart = offset + 12
            guard nameSize <= 256, descSize <= notes.count else { return nil }
            let descStart = nameStart + (nameSize + 3) & ~3
            guard descStart + descSize <= notes.count else { return nil }
            let name = String(decoding: notes[nameStart..<nameStart + nameSize].prefix { $0 != 0 }, as: UTF8.self)
            if name == owner, type == phys32EntryType {
                switch descSize {
                case 4: return notes.loadLittleEndian(UInt32.self, at: descStart).map(UInt64.init)
                case 8: return notes.loadLittleEndian(UInt64.self, at: descStart)
                default: return nil
                }
            }
            offset = descStart + (descSize + 3) & ~3
        }
        return nil
    }
}

/// `struct hvm_start_info`, version 1, and the tables it points at: what a
/// PVH kernel finds at EBX. Layout (all little-endian, 56 bytes):
///
/// | offset | field |
/// | --- | --- |
/// | 0x00 | u32 magic, 0x336ec578 |
/// | 0x04 | u32 version (1: the memory map fields are valid) |
/// | 0x08 | u32 flags |
/// | 0x0c | u32 nr_modules |
/// | 0x10 | u64 modlist_paddr: an array of `hvm_modlist_entry` |
/// | 0x18 | u64 cmdline_paddr: the NUL-terminated command line |
/// | 0x20 | u64 rsdp_paddr: the ACPI RSDP, 0 when there is none |
/// | 0x28 | u64 memmap_paddr: an array of `hvm_memmap_table_entry` |
/// | 0x30 | u32 memmap_entries |
/// | 0x34 | u32 reserved |
public struct PVHStartInfo: Equatable, Sendable {
    /// One `hvm_modlist_entry` (32 bytes): paddr, size, cmdline_paddr, reserved, u64 each.
    /// Linux takes the first module as its initrd.
    public struct Module: Equatable, Sendable {
        public var address: GuestAddress
        public var size: UInt64
        public var commandLine: GuestAddress?

        public init(address: GuestAddress, size: UInt64, commandLine: GuestAddress? = nil) {
            self.address = address
            self.size = size
            self.commandLine = commandLine
        }
    }

    public static let magic: UInt32 = 0x336e_c578
    public static let version: UInt32 = 1
    public static let size = 56
    public static let moduleEntrySize = 32
    /// `hvm_memmap_table_entry`: u64 addr, u64 size, u32 type (E820 numbering), u32 reserved.
    public static let memmapEntrySize = 24
    /// The most memory map entries written, as many as the zero page holds.
    public static let maxMemmapEntries = 128

    public var commandLine: GuestAddress
    public var memoryMap: [E820Entry]
    public var modules: [Module]
    public var acpiRSDP: GuestAddress?

    public init(
        commandLine: GuestAddress = X86Layout.commandLine, memoryMap: [E820Entry], modules: [Module] = [],
        acpiRSDP: GuestAddress? = nil
    ) {
        precondition(memoryMap.count <= Self.maxMemmapEntries, "the PVH memory map holds at most 128 entries")
        precondition(modules.count <= X86Layout.pvhModulesCapacity, "too many PVH modules")
        self.commandLine = commandLine
        self.memoryMap = memoryMap
        self.modules = modules
        self.acpiRSDP = acpiRSDP
    }

    /// The 56 bytes of `hvm_start_info`, pointing at the tables where ``write(to:)`` puts them.
    public func bytes() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        bytes.storeLittleEndian(Self.magic, at: 0x00)
        bytes.storeLittleEndian(Self.version, at: 0x04)
        bytes.storeLittleEndian(UInt32(modules.count), at: 0x0c)
        bytes.storeLittleEndian(modules.isEmpty ? 0 : X86Layout.pvhModules.rawValue, at: 0x10)
        bytes.storeLittleEndian(commandLine.rawValue, at: 0x18)
        bytes.storeLittleEndian(acpiRSDP?.rawValue ?? 0, at: 0x20)
        bytes.storeLittleEndian(X86Layout.pvhMemoryMap.rawValue, at: 0x28)
        bytes.storeLittleEndian(UInt32(memoryMap.count), at: 0x30)
        return bytes
    }

    /// The `hvm_modlist_entry` array.
    public func moduleBytes() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: modules.count * Self.moduleEntrySize)
        for (index, module) in modules.enumerated() {
            let offset = index * Self.moduleEntrySize
            bytes.storeLittleEndian(module.address.rawValue, at: offset)
            bytes.storeLittleEndian(module.size, at: offset + 8)
            bytes.storeLittleEndian(module.commandLine?.rawValue ?? 0, at: offset + 16)
        }
        return bytes
    }

    /// The `hvm_memmap_table_entry` array.
    public func memoryMapBytes() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: memoryMap.count * Self.memmapEntrySize)
        for (index, entry) in memoryMap.enumerated() {
            let offset = index * Self.memmapEntrySize
            bytes.storeLittleEndian(entry.addr, at: offset)
            bytes.storeLittleEndian(entry.size, at: offset + 8)
            bytes.storeLittleEndian(entry.type.rawValue, at: offset + 16)
        }
        return bytes
    }

    /// Writes the structure at ``X86Layout/pvhStartInfo``, the module list
    /// at ``X86Layout/pvhModules`` and the memory map at
    /// ``X86Layout/pvhMemoryMap``; EBX must hold ``X86Layout/pvhStartInfo``.
    public func write(to memory: GuestMemory) throws(GuestMemoryError) {
        try memory.write(bytes(), at: X86Layout.pvhStartInfo)
        if !modules.isEmpty { try memory.write(moduleBytes(), at: X86Layout.pvhModules) }
        try memory.write(memoryMapBytes(), at: X86Layout.pvhMemoryMap)
    }
}
