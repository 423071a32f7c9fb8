import SwiftVMMemory

/// Page tables that identity-map the first 1 GiB, so the kernel can be entered
/// in long mode (boot.rst "64-bit Boot Protocol": identity-mapped paging for
/// the kernel, zero page and command line).
///
/// One PML4 entry points at one PDPT entry, which points at a page directory
/// of 512 2 MiB pages (Intel SDM Vol. 3A §4.5, Table 4-17/4-18). The kernel
/// replaces these with its own tables early in startup_64.
public enum BootPageTables {
    /// Entry bits shared by all three levels (SDM Vol. 3A Table 4-15ff).
    public static let present: UInt64 = 1 << 0
    public static let writable: UInt64 = 1 << 1
    /// PS in a page-directory entry: it maps a 2 MiB page, not a page table.
    public static let largePage: UInt64 = 1 << 7

    public static let entriesPerTable = 512
    public static let largePageSize: UInt64 = 2 << 20
    /// How much the tables identity-map.
    public static let mappedSize: UInt64 = UInt64(entriesPerTable) * largePageSize

    /// The value for CR3: the PML4's address, no PCID or cache bits.
    public static var cr3: UInt64 { X86Layout.pml4.rawValue }

    /// The PML4: entry 0 points at the PDPT, the rest are not present.
    public static func pml4() -> [UInt64] {
        table(first: X86Layout.pdpt.rawValue | present | writable)
    }

    /// The PDPT: entry 0 points at the page directory.
    public static func pdpt() -> [UInt64] {
        table(first: X86Layout.pd.rawValue | present | writable)
    }

    /// The page directory: entry i maps [i × 2 MiB, (i + 1) × 2 MiB) onto itself.
    public static func pageDirectory() -> [UInt64] {
        (0..<UInt64(entriesPerTable)).map { ($0 * largePageSize) | present | writable | largePage }
    }

    /// Writes all three tables, each a full 4 KiB page.
    public static func write(to memory: GuestMemory) throws(GuestMemoryError) {
        try memory.write(encode(pml4()), at: X86Layout.pml4)
        try memory.write(encode(pdpt()), at: X86Layout.pdpt)
        try memory.write(encode(pageDirectory()), at: X86Layout.pd)
    }

    private static func table(first: UInt64) -> [UInt64] {
        [first] + [UInt64](repeating: 0, count: entriesPerTable - 1)
    }

    private static func encode(_ entries: [UInt64]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(entries.count * 8)
        for entry in entries { bytes.appendLittleEndian(entry) }
        return bytes
    }
}
