import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

@Suite("BootPageTables")
struct BootPageTablesTests {
    @Test("PML4 and PDPT each point at the next level, present and writable")
    func upperLevels() throws {
        let memory = try makeMemory()
        try BootPageTables.write(to: memory)
        #expect(try memory.load(UInt64.self, at: X86Layout.pml4) == 0xa003)
        #expect(try memory.load(UInt64.self, at: X86Layout.pdpt) == 0xb003)
        #expect(try memory.read(at: X86Layout.pml4, count: 8) == [0x03, 0xa0, 0, 0, 0, 0, 0, 0])
        // The remaining entries are not present.
        #expect(try memory.read(at: GuestAddress(0x9008), count: 4088).allSatisfy { $0 == 0 })
        #expect(try memory.read(at: GuestAddress(0xa008), count: 4088).allSatisfy { $0 == 0 })
        #expect(BootPageTables.cr3 == 0x9000)
    }

    @Test("page directory entry i maps 2 MiB page i onto itself", arguments: [0, 1, 8, 511])
    func pageDirectory(index: Int) throws {
        let memory = try makeMemory()
        try BootPageTables.write(to: memory)
        let entry = try memory.load(UInt64.self, at: GuestAddress(0xb000 + UInt64(index) * 8))
        #expect(entry == UInt64(index) << 21 | 0x83)
    }

    @Test func golden() {
        let directory = BootPageTables.pageDirectory()
        #expect(directory.count == 512)
        #expect(directory[1] == 0x20_0083)
        #expect(directory[511] == 0x3fe0_0083)
        #expect(BootPageTables.mappedSize == 1 << 30)
    }
}
