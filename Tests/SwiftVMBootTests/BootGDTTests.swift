import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

@Suite("BootGDT")
struct BootGDTTests {
    @Test("the four descriptors have their exact values")
    func golden() {
        #expect(BootGDT.entries == [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x008f_8b00_0000_ffff])
        #expect(BootGDT.descriptor(flags: 0xa09b, base: 0, limit: 0xfffff) == 0x00af_9b00_0000_ffff)
        #expect(BootGDT.descriptor(flags: 0xc093, base: 0, limit: 0xfffff) == 0x00cf_9300_0000_ffff)
        #expect(BootGDT.descriptor(flags: 0x808b, base: 0, limit: 0xfffff) == 0x008f_8b00_0000_ffff)
        #expect(BootGDT.limit == 31)
    }

    @Test("base and limit bits land in their split fields")
    func baseAndLimit() {
        let raw = BootGDT.descriptor(flags: 0x0093, base: 0x1234_5678, limit: 0xabcde)
        #expect(raw == 0x120a_9334_5678_bcde)
        let decoded = SegmentDescriptor(raw)
        #expect(decoded.base == 0x1234_5678)
        #expect(decoded.limit == 0xabcde, "byte granularity leaves the limit unscaled")
    }

    @Test("the code segment decodes as 64-bit ring-0 code")
    func decodeCode() {
        #expect(SegmentDescriptor(BootGDT.code) == SegmentDescriptor.expected(type: 0xb, s: true, l: true, db: false))
    }

    @Test("the data segment decodes as 32-bit read/write data")
    func decodeData() {
        #expect(SegmentDescriptor(BootGDT.data) == SegmentDescriptor.expected(type: 0x3, s: true, l: false, db: true))
    }

    @Test("the TSS decodes as a busy system segment")
    func decodeTSS() {
        #expect(SegmentDescriptor(BootGDT.tss) == SegmentDescriptor.expected(type: 0xb, s: false, l: false, db: false))
    }

    @Test("GDT and empty IDT in guest memory")
    func write() throws {
        let memory = try makeMemory()
        try memory.write([UInt8](repeating: 0xee, count: 8), at: X86Layout.idt)
        try BootGDT.write(to: memory)
        #expect(try memory.read(at: X86Layout.gdt, count: 32) == BootGDT.entries.flatMap { le($0) })
        #expect(try memory.read(at: X86Layout.gdt + 8, count: 8) == [0xff, 0xff, 0, 0, 0, 0x9b, 0xaf, 0x00])
        #expect(try memory.read(at: X86Layout.idt, count: 8) == [UInt8](repeating: 0, count: 8))
        #expect(BootGDT.idtLimit == 7)
    }
}

extension SegmentDescriptor {
    /// A present, ring-0, 4 KiB-granular flat segment as the boot GDT uses.
    fileprivate static func expected(type: UInt8, s: Bool, l: Bool, db: Bool) -> SegmentDescriptor {
        var descriptor = SegmentDescriptor(0)
        descriptor.base = 0
        descriptor.limit = 0xffff_ffff
        descriptor.type = type
        descriptor.s = s
        descriptor.dpl = 0
        descriptor.present = true
        descriptor.avl = false
        descriptor.l = l
        descriptor.db = db
        descriptor.g = true
        return descriptor
    }
}

extension GuestAddress {
    fileprivate static func + (lhs: GuestAddress, rhs: UInt64) -> GuestAddress { GuestAddress(lhs.rawValue + rhs) }
}
