import Testing
import SwiftVMMemory
@testable import SwiftVMInspect
import SwiftVMTestSupport

/// An ELF64 file with a symbol table and nothing else: header, section
/// headers (null, .symtab, .strtab), then the two tables.
private func elfWithSymbols(_ symbols: [(name: String, value: UInt64, size: UInt64, type: UInt8)]) -> [UInt8] {
    var strtab: [UInt8] = [0]
    var symtab = [UInt8](repeating: 0, count: 24)  // symbol 0 is the null symbol
    for symbol in symbols {
        let nameOffset = UInt32(strtab.count)
        strtab += Array(symbol.name.utf8) + [0]
        symtab += le(nameOffset) + [symbol.type | 0x10, 0] + le(UInt16(1)) + le(symbol.value) + le(symbol.size)
    }
    let sectionHeaders = 64
    let symtabOffset = UInt64(sectionHeaders + 3 * 64)
    let strtabOffset = symtabOffset + UInt64(symtab.count)
    var out = [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1] + [UInt8](repeating: 0, count: 9)
    out += le(UInt16(2)) + le(UInt16(62)) + le(UInt32(1)) + le(UInt64(0)) + le(UInt64(0)) + le(UInt64(sectionHeaders))
    out += le(UInt32(0)) + le(UInt16(64)) + le(UInt16(56)) + le(UInt16(0)) + le(UInt16(64)) + le(UInt16(3)) + le(UInt16(0))
    func section(type: UInt32, offset: UInt64, size: UInt64, link: UInt32) -> [UInt8] {
        le(UInt32(0)) + le(type) + le(UInt64(0)) + le(UInt64(0)) + le(offset) + le(size) + le(link) + le(UInt32(0))
            + le(UInt64(8)) + le(UInt64(24))
    }
    out += [UInt8](repeating: 0, count: 64)
    out += section(type: 2, offset: symtabOffset, size: UInt64(symtab.count), link: 2)
    out += section(type: 3, offset: strtabOffset, size: UInt64(strtab.count), link: 0)
    return out + symtab + strtab
}

@Suite("Kernel symbols for a vCPU's RIP")
struct KernelSymbolsTests {
    let table = elfWithSymbols([
        ("native_safe_halt", 0xffff_ffff_8100_1000, 0x10, 2),
        ("entry_SYSCALL_64", 0xffff_ffff_8120_0000, 0, 0),  // an assembler label: no type, no size
        ("jiffies", 0xffff_ffff_8200_0000, 8, 1),  // data: never a RIP
        ("int3_selftest", 0xffff_ffff_8130_0000, 0x40, 2),
        ("int3_selftest_ip", 0xffff_ffff_8130_0010, 0, 0),  // a label inside it
        (".Ltmp1", 0xffff_ffff_8100_1004, 0, 0),
    ])

    @Test("an address inside a function is named as the kernel's own reports name it")
    func insideFunction() throws {
        let symbols = try #require(KernelSymbols(image: InMemoryImage(table)))
        #expect(symbols.count == 4)
        #expect(symbols.describe(0xffff_ffff_8130_0010) == "int3_selftest+0x10/0x40")
        #expect(symbols.describe(0xffff_ffff_8100_1006) == "native_safe_halt+0x6/0x10")
        #expect(symbols.describe(0xffff_ffff_8100_1000) == "native_safe_halt+0x0/0x10")
        #expect(symbols.describe(0xffff_ffff_8120_0010) == "entry_SYSCALL_64+0x10")
    }

    @Test("addresses below every symbol, or far past a sized one, have no name")
    func outside() throws {
        let symbols = try #require(KernelSymbols(image: InMemoryImage(table)))
        #expect(symbols.describe(0xfff0) == nil)
        #expect(symbols.describe(0xffff_ffff_8110_0000) == nil)
    }

    @Test("a file without a symbol table, or not an ELF file, gives no table")
    func none() {
        #expect(KernelSymbols(image: InMemoryImage(SyntheticELF().bytes())) == nil)
        #expect(KernelSymbols(image: InMemoryImage([UInt8](repeating: 0x41, count: 200))) == nil)
        #expect(KernelSymbols(image: InMemoryImage(Array(table.prefix(100)))) == nil)
    }
}
