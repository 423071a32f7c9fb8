import SwiftVMMemory

/// The GDT and IDT in place when the kernel's 64-bit entry point runs.
///
/// The VMM loads the segment registers itself (KVM_SET_SREGS), so the GDT is
/// here for the kernel to find consistent descriptors if it reloads a
/// selector before installing its own GDT. Selectors: code 0x08, data 0x10,
/// TSS 0x18. (The 64-bit protocol fixes no selector values; startup_64
/// loads its own GDT before it relies on any.)
public enum BootGDT {
    /// (flags, base, limit) for each entry. The flags word holds the access
    /// byte in bits 0–7 and G, D/B, L, AVL in bits 15–12 (SDM Vol. 3A §3.4.5).
    public static let null: UInt64 = 0
    /// 64-bit code: present, DPL 0, execute/read, accessed; L=1, G=1.
    public static let code = descriptor(flags: 0xa09b, base: 0, limit: 0xfffff)
    /// Data: present, DPL 0, read/write, accessed; D/B=1, G=1.
    public static let data = descriptor(flags: 0xc093, base: 0, limit: 0xfffff)
    /// Busy 64-bit TSS (type 11), G=1. KVM requires TR to hold a busy TSS in
    /// long mode; this 8-byte entry only mirrors what the VMM loads into TR.
    public static let tss = descriptor(flags: 0x808b, base: 0, limit: 0xfffff)

    public static let entries: [UInt64] = [null, code, data, tss]

    public static let codeSelector: UInt16 = 1 << 3
    public static let dataSelector: UInt16 = 2 << 3
    public static let tssSelector: UInt16 = 3 << 3

    /// GDTR limit: size in bytes minus one.
    public static var limit: UInt16 { UInt16(entries.count * 8 - 1) }
    /// IDTR limit for the empty IDT: one zero descriptor, so any interrupt
    /// before the kernel loads its own IDT faults instead of running garbage.
    public static let idtLimit: UInt16 = 7

    /// Encodes a segment descriptor (SDM Vol. 3A §3.4.5, Figure 3-8).
    public static func descriptor(flags: UInt16, base: UInt32, limit: UInt32) -> UInt64 {
        let base = UInt64(base)
        let limit = UInt64(limit)
        let flags = UInt64(flags)
        return ((base & 0xff00_0000) << 32)
            | ((flags & 0xf0ff) << 40)
            | ((limit & 0x000f_0000) << 32)
            | ((base & 0x00ff_ffff) << 16)
            | (limit & 0x0000_ffff)
    }

    /// The GDT's bytes, little-endian.
    public static func bytes() -> [UInt8] {
        var bytes: [UInt8] = []
        for entry in entries { bytes.appendLittleEndian(entry) }
        return bytes
    }

    /// Writes the GDT at ``X86Layout/gdt`` and an empty 8-byte IDT at ``X86Layout/idt``.
    public static func write(to memory: GuestMemory) throws(GuestMemoryError) {
        try memory.write(bytes(), at: X86Layout.gdt)
        try memory.zero(at: X86Layout.idt, count: Int(idtLimit) + 1)
    }

    // MARK: - PVH entry

    /// The PVH ABI's segments: 32-bit code and data with base 0 and a 4 GiB
    /// limit, and a 32-bit busy TSS with base 0 and limit 0x67. Same
    /// selectors as the 64-bit table (the ABI fixes none).
    /// 32-bit code: present, DPL 0, execute/read, accessed; D=1, G=1.
    public static let pvhCode = descriptor(flags: 0xc09b, base: 0, limit: 0xfffff)
    /// Data as in the 64-bit table: D/B=1, G=1, so a 4 GiB limit.
    public static let pvhData = data
    /// Busy 32-bit TSS (type 11), byte granular, limit 0x67.
    public static let pvhTSS = descriptor(flags: 0x008b, base: 0, limit: 0x67)

    public static let pvhEntries: [UInt64] = [null, pvhCode, pvhData, pvhTSS]

    /// Writes the PVH GDT at ``X86Layout/gdt`` (same size as the 64-bit one,
    /// so ``limit`` holds) and the empty IDT.
    public static func writePVH(to memory: GuestMemory) throws(GuestMemoryError) {
        var bytes: [UInt8] = []
        for entry in pvhEntries { bytes.appendLittleEndian(entry) }
        try memory.write(bytes, at: X86Layout.gdt)
        try memory.zero(at: X86Layout.idt, count: Int(idtLimit) + 1)
    }
}

/// A segment descriptor decoded into the fields of a KVM segment register.
public struct SegmentDescriptor: Equatable, Sendable {
    public var base: UInt64
    /// The limit in bytes minus one, already scaled by the granularity bit.
    public var limit: UInt32
    /// Segment type, 4 bits (code/data or system type).
    public var type: UInt8
    /// S: 1 for code or data, 0 for a system segment (TSS, LDT).
    public var s: Bool
    public var dpl: UInt8
    public var present: Bool
    public var avl: Bool
    /// L: 64-bit code segment.
    public var l: Bool
    /// D/B: default operand size 32 bits (or big stack).
    public var db: Bool
    /// G: the raw limit counts 4 KiB units.
    public var g: Bool

    /// Decodes the 8-byte descriptor `raw` (SDM Vol. 3A §3.4.5).
    public init(_ raw: UInt64) {
        let rawLimit = UInt32(truncatingIfNeeded: (raw & 0xffff) | ((raw >> 32) & 0xf_0000))
        let access = UInt8(truncatingIfNeeded: raw >> 40)
        let flags = UInt8(truncatingIfNeeded: raw >> 52) & 0xf
        base = ((raw >> 16) & 0xff_ffff) | ((raw >> 32) & 0xff00_0000)
        g = flags & 0b1000 != 0
        db = flags & 0b0100 != 0
        l = flags & 0b0010 != 0
        avl = flags & 0b0001 != 0
        limit = g ? (rawLimit << 12) | 0xfff : rawLimit
        type = access & 0xf
        s = access & 0x10 != 0
        dpl = (access >> 5) & 0b11
        present = access & 0x80 != 0
    }
}
