import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

/// Little-endian bytes of an integer.
private func bytesOf<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

/// One ELF note: namesz, descsz, type, the name and the descriptor, each padded to 4 bytes.
private func note(owner: String, type: UInt32, desc: [UInt8]) -> [UInt8] {
    var name = Array(owner.utf8) + [0]
    let nameSize = name.count
    while name.count % 4 != 0 { name.append(0) }
    var descriptor = desc
    while descriptor.count % 4 != 0 { descriptor.append(0) }
    return bytesOf(UInt32(nameSize)) + bytesOf(UInt32(desc.count)) + bytesOf(type) + name + descriptor
}

/// The default synthetic vmlinux with a PT_NOTE segment holding `notes`.
private func vmlinux(notes: [UInt8]?) -> InMemoryImage {
    var elf = SyntheticELF()
    if let notes { elf.segments.append(.init(type: 4, physicalAddress: 0, contents: notes, memorySize: UInt64(notes.count))) }
    return elf.image
}

@Suite("PVH start info and note")
struct PVHTests {
    @Test("hvm_start_info: magic, version 1, the table addresses and counts at their offsets")
    func startInfoLayout() throws {
        let info = PVHStartInfo(
            memoryMap: E820Map.x86(ramSize: 128 << 20),
            modules: [.init(address: GuestAddress(0x7fff000), size: 0x1234)], acpiRSDP: GuestAddress(0xe0000))
        let bytes = info.bytes()
        #expect(bytes.count == 56)
        #expect(bytes.loadLittleEndian(UInt32.self, at: 0x00) == 0x336e_c578)
        #expect(bytes.loadLittleEndian(UInt32.self, at: 0x04) == 1)
        #expect(bytes.loadLittleEndian(UInt32.self, at: 0x08) == 0)  // flags
        #expect(bytes.loadLittleEndian(UInt32.self, at: 0x0c) == 1)  // nr_modules
        #expect(bytes.loadLittleEndian(UInt64.self, at: 0x10) == X86Layout.pvhModules.rawValue)
        #expect(bytes.loadLittleEndian(UInt64.self, at: 0x18) == X86Layout.commandLine.rawValue)
        #expect(bytes.loadLittleEndian(UInt64.self, at: 0x20) == 0xe0000)
        #expect(bytes.loadLittleEndian(UInt64.self, at: 0x28) == X86Layout.pvhMemoryMap.rawValue)
        #expect(bytes.loadLittleEndian(UInt32.self, at: 0x30) == 3)
        #expect(bytes.loadLittleEndian(UInt32.self, at: 0x34) == 0)
    }

    @Test("no modules: nr_modules 0 and modlist_paddr 0; no ACPI: rsdp_paddr 0")
    func noModules() {
        let bytes = PVHStartInfo(memoryMap: E820Map.x86(ramSize: 64 << 20)).bytes()
        #expect(bytes.loadLittleEndian(UInt32.self, at: 0x0c) == 0)
        #expect(bytes.loadLittleEndian(UInt64.self, at: 0x10) == 0)
        #expect(bytes.loadLittleEndian(UInt64.self, at: 0x20) == 0)
    }

    @Test("hvm_memmap_table_entry: 24 bytes each, addr, size, E820 type, reserved 0; the same map as the zero page's")
    func memoryMapLayout() throws {
        let map = E820Map.x86(ramSize: 4 << 30)  // RAM above 4 GiB too: 4 entries
        let bytes = PVHStartInfo(memoryMap: map).memoryMapBytes()
        #expect(bytes.count == map.count * 24)
        for (index, entry) in map.enumerated() {
            let offset = index * 24
            #expect(bytes.loadLittleEndian(UInt64.self, at: offset) == entry.addr)
            #expect(bytes.loadLittleEndian(UInt64.self, at: offset + 8) == entry.size)
            #expect(bytes.loadLittleEndian(UInt32.self, at: offset + 16) == entry.type.rawValue)
            #expect(bytes.loadLittleEndian(UInt32.self, at: offset + 20) == 0)
        }
        #expect(bytes.loadLittleEndian(UInt32.self, at: 24 + 16) == 2)  // the EBDA..1 MiB hole is reserved
    }

    @Test("hvm_modlist_entry: paddr, size, cmdline_paddr, reserved")
    func moduleLayout() {
        let info = PVHStartInfo(
            memoryMap: E820Map.x86(ramSize: 64 << 20),
            modules: [.init(address: GuestAddress(0x300_0000), size: 0x5000, commandLine: GuestAddress(0x21000))])
        let bytes = info.moduleBytes()
        #expect(bytes.count == 32)
        #expect(bytes.loadLittleEndian(UInt64.self, at: 0) == 0x300_0000)
        #expect(bytes.loadLittleEndian(UInt64.self, at: 8) == 0x5000)
        #expect(bytes.loadLittleEndian(UInt64.self, at: 16) == 0x21000)
        #expect(bytes.loadLittleEndian(UInt64.self, at: 24) == 0)
    }

    @Test("written to guest memory: start_info, modules and memory map where the structure says, clear of the zero page")
    func writesToMemory() throws {
        let memory = try makeMemory()
        let info = PVHStartInfo(
            memoryMap: E820Map.x86(ramSize: 128 << 20), modules: [.init(address: GuestAddress(0x400_0000), size: 16)])
        try info.write(to: memory)
        #expect(try memory.read(at: X86Layout.pvhStartInfo, count: 56) == info.bytes())
        #expect(try memory.read(at: X86Layout.pvhModules, count: 32) == info.moduleBytes())
        #expect(try memory.read(at: X86Layout.pvhMemoryMap, count: 72) == info.memoryMapBytes())
        // The largest map (128 entries) still ends below the zero page.
        #expect(X86Layout.pvhMemoryMap.rawValue + 128 * 24 <= X86Layout.zeroPage.rawValue)
        #expect(X86Layout.pvhModules.rawValue + UInt64(X86Layout.pvhModulesCapacity * 32) <= X86Layout.pvhMemoryMap.rawValue)
    }

    @Test("the PVH note: found with a 4-byte or an 8-byte descriptor, among other notes")
    func noteEntry() {
        let linux = note(owner: "Linux", type: 6, desc: [1, 2, 3, 4, 5])
        let four = note(owner: "Xen", type: 18, desc: bytesOf(UInt32(0x100_0040)))
        let eight = note(owner: "Xen", type: 18, desc: bytesOf(UInt64(0x100_0080)))
        #expect(PVHNote.entry(vmlinux(notes: linux + four)) == 0x100_0040)
        #expect(PVHNote.entry(vmlinux(notes: linux + eight)) == 0x100_0080)
        #expect(PVHNote.entry(vmlinux(notes: linux)) == nil)
        #expect(PVHNote.entry(vmlinux(notes: nil)) == nil)
        // Another Xen note type is not the entry.
        #expect(PVHNote.entry(vmlinux(notes: note(owner: "Xen", type: 1, desc: bytesOf(UInt32(5))))) == nil)
        // A descriptor running past the segment is ignored, not read.
        var cut = four
        cut.removeLast(2)
        #expect(PVHNote.entry(vmlinux(notes: cut)) == nil)
    }

    @Test("the PVH GDT: 32-bit flat code and data, a busy 32-bit TSS with limit 0x67")
    func gdt() {
        let code = SegmentDescriptor(BootGDT.pvhCode)
        #expect(code.base == 0 && code.limit == 0xffff_ffff && code.type == 0xb && code.db && !code.l && code.present)
        let data = SegmentDescriptor(BootGDT.pvhData)
        #expect(data.base == 0 && data.limit == 0xffff_ffff && data.type == 0x3 && data.db)
        let tss = SegmentDescriptor(BootGDT.pvhTSS)
        #expect(tss.base == 0 && tss.limit == 0x67 && tss.type == 0xb && !tss.s && tss.present)
    }
}

@Suite("X86KernelPlan: which entry")
struct X86KernelPlanTests {
    let withNote = vmlinux(notes: note(owner: "Xen", type: 18, desc: bytesOf(UInt32(0x100_0040))))
    let withoutNote = vmlinux(notes: note(owner: "Linux", type: 6, desc: [1, 2, 3, 4]))

    @Test("auto: PVH when the vmlinux has the note (Firecracker's rule), else the 64-bit entry")
    func auto() throws {
        let pvh = try X86KernelPlan(withNote, protocol: .auto)
        #expect(pvh.entry == X86Entry(mode: .pvh, address: GuestAddress(0x100_0040)))
        #expect(pvh.reason.contains("PVH note") && pvh.reason.contains("linux64"))
        let linux = try X86KernelPlan(withoutNote, protocol: .auto)
        #expect(linux.entry == X86Entry(mode: .linux64, address: GuestAddress(0x100_0000)))
    }

    @Test("linux64 takes e_entry even with a note; pvh refuses a vmlinux without one")
    func explicit() throws {
        let linux = try X86KernelPlan(withNote, protocol: .linux64)
        #expect(linux.entry == X86Entry(mode: .linux64, address: GuestAddress(0x100_0000)))
        #expect(linux.pvhEntry == 0x100_0040)
        #expect(throws: KernelImageError.pvhNoteMissing) { try X86KernelPlan(withoutNote, protocol: .pvh) }
        #expect(KernelImageError.pvhNoteMissing.description.contains("--boot-protocol linux64"))
    }

    @Test("a PVH entry outside the loaded segments is refused")
    func entryOutside() {
        let bad = vmlinux(notes: note(owner: "Xen", type: 18, desc: bytesOf(UInt32(0x500_0000))))
        #expect(throws: KernelImageError.pvhEntryInvalid(entry: 0x500_0000)) { try X86KernelPlan(bad, protocol: .auto) }
    }

    @Test("a bzImage is entered at its 64-bit entry; pvh is refused for it")
    func bzImage() throws {
        let image = InMemoryImage(BzImageTests.make())
        let plan = try X86KernelPlan(image, protocol: .auto)
        #expect(plan.entry == X86Entry(mode: .linux64, address: GuestAddress(0x10_0200)))
        #expect(throws: KernelImageError.pvhNotForBzImage(protocolVersion: 0x020f)) {
            try X86KernelPlan(image, protocol: .pvh)
        }
    }
}

@Suite("BzImageLayout")
struct BzImageTests {
    /// A bzImage head: `setupSectors` sectors after the boot sector, then
    /// `payload` bytes of protected-mode code (each byte its index & 0xff).
    static func make(
        version: UInt16 = 0x020f, setupSectors: UInt8 = 2, xloadflags: UInt16 = 0x1, relocatable: Bool = false,
        code32Start: UInt32 = 0x10_0000, prefAddress: UInt64 = 0x100_0000, alignment: UInt32 = 0x20_0000,
        initSize: UInt32 = 0x80_0000, payload: Int = 0x1000
    ) -> [UInt8] {
        let sectors = setupSectors == 0 ? 4 : Int(setupSectors)
        var bytes = [UInt8](repeating: 0, count: (sectors + 1) * 512)
        bytes[0x1f1] = setupSectors
        bytes.replaceSubrange(0x1fe..<0x200, with: [0x55, 0xaa])
        bytes[0x200] = 0xeb  // jmp short: the header ends at 0x202 + this offset
        bytes[0x201] = 0x66
        bytes.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        bytes.replaceSubrange(0x206..<0x208, with: bytesOf(version))
        bytes[0x211] = 0x01  // LOADED_HIGH
        bytes.replaceSubrange(0x214..<0x218, with: bytesOf(code32Start))
        bytes.replaceSubrange(0x230..<0x234, with: bytesOf(alignment))
        bytes[0x234] = relocatable ? 1 : 0
        bytes.replaceSubrange(0x236..<0x238, with: bytesOf(xloadflags))
        bytes.replaceSubrange(0x258..<0x260, with: bytesOf(prefAddress))
        bytes.replaceSubrange(0x260..<0x264, with: bytesOf(initSize))
        bytes += (0..<payload).map { UInt8(truncatingIfNeeded: $0) }
        return bytes
    }

    @Test("the header: protocol, setup sectors, the protected-mode part and its size, entry at load + 0x200")
    func parses() throws {
        let layout = try BzImageLayout(InMemoryImage(Self.make()))
        #expect(layout.protocolVersion == 0x020f)
        #expect(layout.setupSectors == 2)
        #expect(layout.kernelOffset == 3 * 512)
        #expect(layout.kernelSize == 0x1000)
        #expect(layout.loadAddress == 0x10_0000)
        #expect(layout.entry == 0x10_0200)
        // Not relocatable: the kernel runs at pref_address and needs init_size from there.
        #expect(layout.endAddress == 0x100_0000 + 0x80_0000)
        // The setup header: 0x1f1 up to 0x202 + 0x66.
        #expect(layout.setupHeader.count == 0x202 + 0x66 - 0x1f1)
        #expect(layout.setupHeader[0x202 - 0x1f1] == UInt8(ascii: "H"))
    }

    @Test("setup_sects 0 means 4")
    func setupSectorsZero() throws {
        let layout = try BzImageLayout(InMemoryImage(Self.make(setupSectors: 0)))
        #expect(layout.setupSectors == 4)
        #expect(layout.kernelOffset == 5 * 512)
        #expect(layout.kernelSize == 0x1000)
    }

    @Test("relocatable: loaded at pref_address when it is aligned, else at code32_start")
    func loadAddress() throws {
        let preferred = try BzImageLayout(InMemoryImage(Self.make(relocatable: true)))
        #expect(preferred.loadAddress == 0x100_0000)
        #expect(preferred.entry == 0x100_0200)
        let misaligned = try BzImageLayout(InMemoryImage(Self.make(relocatable: true, prefAddress: 0x100_1000)))
        #expect(misaligned.loadAddress == 0x10_0000)
        let low = try BzImageLayout(InMemoryImage(Self.make(code32Start: 0x1000)))
        #expect(low.loadAddress == 0x10_0000)
    }

    @Test("too old a protocol: names the version, 2.12 and vmlinux")
    func tooOld() {
        let error = #expect(throws: KernelImageError.self) { try BzImageLayout(InMemoryImage(Self.make(version: 0x020b))) }
        #expect(error == .bzImageProtocolTooOld(protocolVersion: 0x020b))
        let text = error?.description ?? ""
        #expect(text.contains("2.11") && text.contains("2.12") && text.contains("vmlinux"))
    }

    @Test("no XLF_KERNEL_64: a 32-bit kernel, with the fix")
    func no64BitEntry() {
        let error = #expect(throws: KernelImageError.self) { try BzImageLayout(InMemoryImage(Self.make(xloadflags: 0x2))) }
        #expect(error == .bzImageNo64BitEntry(protocolVersion: 0x020f))
        let text = error?.description ?? ""
        #expect(text.contains("XLF_KERNEL_64") && text.contains("ARCH=x86_64"))
    }

    @Test("truncated: inside the setup sectors, and inside the header")
    func truncated() {
        let full = Self.make(setupSectors: 4)
        let cut = Array(full.prefix(5 * 512 + 0x100))  // ends before load + 0x200
        #expect(throws: KernelImageError.bzImageTruncated(protocolVersion: 0x020f, needed: 5 * 512 + 0x201, fileSize: UInt64(cut.count))) {
            try BzImageLayout(InMemoryImage(cut))
        }
        let header = Array(full.prefix(0x240))
        let error = #expect(throws: KernelImageError.self) { try BzImageLayout(InMemoryImage(header)) }
        #expect(error?.description.contains("truncated") == true)
    }

    @Test("too little RAM for init_size: asks for more --memory")
    func outsideRAM() throws {
        let memory = try makeMemory(size: 16 << 20)
        let layout = try BzImageLayout(InMemoryImage(Self.make()))
        let error = #expect(throws: KernelImageError.self) { try layout.checkFits(in: memory) }
        #expect(error == .bzImageOutsideRAM(start: 0x10_0000, end: 0x180_0000, ramSize: 16 << 20))
        #expect(error?.description.contains("--memory (at least 24 MiB") == true)
    }

    @Test("loaded: the protected-mode part at the load address, the header into the zero page")
    func loadsAndSeedsZeroPage() throws {
        let memory = try makeMemory()
        let image = InMemoryImage(Self.make(relocatable: true))
        let loaded = try KernelLoader.loadX86(image, protocol: .auto, into: memory)
        #expect(loaded.entry == X86Entry(mode: .linux64, address: GuestAddress(0x100_0200)))
        #expect(try memory.read(at: GuestAddress(0x100_0000), count: 0x1000) == (0..<0x1000).map { UInt8(truncatingIfNeeded: $0) })
        let layout = try #require(loaded.bzImage)
        var zeroPage = ZeroPage(e820: E820Map.x86(ramSize: 128 << 20), commandLineSize: 10)
        zeroPage.setupHeader = layout.setupHeader
        zeroPage.code32Start = UInt32(layout.loadAddress)
        let page = zeroPage.bytes()
        #expect(page.loadLittleEndian(UInt16.self, at: 0x206) == 0x020f)  // the kernel's version, not swiftvm's
        #expect(page.loadLittleEndian(UInt32.self, at: 0x230) == 0x20_0000)  // kernel_alignment as stated
        #expect(page.loadLittleEndian(UInt32.self, at: 0x260) == 0x80_0000)  // init_size, for the decompressor
        #expect(page.loadLittleEndian(UInt32.self, at: 0x214) == 0x100_0000)  // code32_start: where it went
        #expect(page[0x210] == 0xff)  // type_of_loader
        #expect(page[0x211] & 0x01 == 0x01)  // LOADED_HIGH
        #expect(page.loadLittleEndian(UInt32.self, at: 0x228) == UInt32(X86Layout.commandLine.rawValue))
        #expect(page.loadLittleEndian(UInt16.self, at: 0x1fe) == 0xaa55)
    }
}
