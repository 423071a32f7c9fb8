import SwiftVMMemory
import SwiftVMBoot

/// The function symbols of an ELF vmlinux (its `.symtab`), for naming a
/// guest RIP the way `nm` and the kernel's own oops reports do:
/// `native_safe_halt+0x6/0x10`.
///
/// Read only when a report needs it, never at start-up: a vmlinux's table
/// holds tens of thousands of symbols.
public struct KernelSymbols: Sendable {
    struct Symbol: Sendable {
        var address: UInt64
        var size: UInt64
        var name: String
    }

    /// Sorted by address.
    let symbols: [Symbol]

    public var count: Int { symbols.count }

    /// Tables larger than this are not read (a vmlinux's is a few MiB).
    static let maxTableBytes: UInt64 = 256 << 20

    /// Reads the symbol table of the ELF64 file `image`; nil when the file
    /// has none (a stripped kernel, not an ELF file, a damaged header).
    public init?(image: some ImageSource) {
        guard let symbols = try? Self.read(image), !symbols.isEmpty else { return nil }
        self.symbols = symbols
    }

    init(symbols: [Symbol]) {
        self.symbols = symbols.sorted { $0.address < $1.address }
    }

    /// `name+0xoffset/0xsize` for the symbol that contains `address` (or the
    /// nearest one below it when sizes are unknown); nil below the first.
    public func describe(_ address: UInt64) -> String? {
        var low = 0
        var high = symbols.count
        while low < high {  // first symbol above `address`
            let middle = (low + high) / 2
            if symbols[middle].address <= address { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        // A label inside a function (an assembler label has no size) names the
        // function less well than the function does: prefer a nearby sized
        // symbol that covers the address, as the kernel's own reports do.
        var index = low - 1
        if symbols[index].size == 0 {
            var candidate = index
            while candidate > 0, index - candidate < 64 {
                candidate -= 1
                let covering = symbols[candidate]
                if covering.size > 0, address - covering.address < covering.size {
                    index = candidate
                    break
                }
            }
        }
        let symbol = symbols[index]
        let offset = address - symbol.address
        if symbol.size > 0, offset >= symbol.size, offset > 0x10000 { return nil }
        let size = symbol.size > 0 ? "/0x" + String(symbol.size, radix: 16) : ""
        return "\(symbol.name)+0x\(String(offset, radix: 16))\(size)"
    }

    private static func read(_ image: some ImageSource) throws -> [Symbol] {
        let header = try image.bytes(at: 0, count: ELF64Header.size)
        guard header.starts(with: [0x7f, 0x45, 0x4c, 0x46]), header[4] == 2, header[5] == 1,
            let sectionOffset = header.loadLittleEndian(UInt64.self, at: 40),
            let entrySize = header.loadLittleEndian(UInt16.self, at: 58),
            let sectionCount = header.loadLittleEndian(UInt16.self, at: 60),
            entrySize >= 64, sectionCount > 0
        else { return [] }
        let table = try image.bytes(at: sectionOffset, count: Int(entrySize) * Int(sectionCount))
        func section(_ index: Int) -> (type: UInt32, offset: UInt64, size: UInt64, link: UInt32)? {
            let base = index * Int(entrySize)
            guard let type = table.loadLittleEndian(UInt32.self, at: base + 4),
                let offset = table.loadLittleEndian(UInt64.self, at: base + 24),
                let size = table.loadLittleEndian(UInt64.self, at: base + 32),
                let link = table.loadLittleEndian(UInt32.self, at: base + 40)
            else { return nil }
            return (type, offset, size, link)
        }
        let symtabType: UInt32 = 2  // SHT_SYMTAB
        guard let symtab = (0..<Int(sectionCount)).lazy.compactMap(section).first(where: { $0.type == symtabType }),
            Int(symtab.link) < Int(sectionCount), let strtab = section(Int(symtab.link)),
            symtab.size <= maxTableBytes, strtab.size <= maxTableBytes
        else { return [] }
        let entries = try image.bytes(at: symtab.offset, count: Int(symtab.size))
        let names = try image.bytes(at: strtab.offset, count: Int(strtab.size))

        var symbols: [Symbol] = []
        symbols.reserveCapacity(entries.count / 24)
        for base in stride(from: 0, to: entries.count - 23, by: 24) {
            let info = entries[base + 4]
            let kind = info & 0xf  // STT_NOTYPE 0, STT_FUNC 2: code labels and functions
            guard kind == 0 || kind == 2,
                let nameOffset = entries.loadLittleEndian(UInt32.self, at: base),
                let sectionIndex = entries.loadLittleEndian(UInt16.self, at: base + 6),
                let value = entries.loadLittleEndian(UInt64.self, at: base + 8),
                let size = entries.loadLittleEndian(UInt64.self, at: base + 16),
                nameOffset > 0, sectionIndex != 0, sectionIndex < 0xff00, Int(nameOffset) < names.count
            else { continue }
            let end = names[Int(nameOffset)...].firstIndex(of: 0) ?? names.count
            let name = String(decoding: names[Int(nameOffset)..<end], as: UTF8.self)
            // Local labels of the assembler and compiler say nothing to a reader.
            if name.hasPrefix(".L") || name.hasPrefix("__pfx_") { continue }
            symbols.append(Symbol(address: value, size: size, name: name))
        }
        return symbols.sorted { $0.address < $1.address }
    }
}
