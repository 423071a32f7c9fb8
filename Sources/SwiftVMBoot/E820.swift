/// The memory types a BIOS reports through INT 15h, AX=E820h (ACPI 6.x §15).
public enum E820Type: UInt32, Equatable, Sendable {
    case ram = 1
    case reserved = 2
    case acpi = 3
    case nvs = 4
}

/// One range of the guest's physical memory map, as `struct boot_e820_entry`.
public struct E820Entry: Equatable, Sendable {
    public var addr: UInt64
    public var size: UInt64
    public var type: E820Type

    public init(addr: UInt64, size: UInt64, type: E820Type) {
        self.addr = addr
        self.size = size
        self.type = type
    }

    /// Bytes of `struct boot_e820_entry`: u64 addr, u64 size, u32 type, packed.
    public static let encodedSize = 20

    func encode(into bytes: inout [UInt8], at offset: Int) {
        bytes.storeLittleEndian(addr, at: offset)
        bytes.storeLittleEndian(size, at: offset + 8)
        bytes.storeLittleEndian(type.rawValue, at: offset + 16)
    }
}

/// The memory map the guest sees, matching ``X86Layout``.
public enum E820Map {
    /// The e820 map for `ramSize` bytes of guest RAM laid out by ``X86Layout/ramRegions(size:)``.
    ///
    /// Low RAM stops at the EBDA; the EBDA up to 1 MiB is reserved because the
    /// MP table and ACPI tables live there and the kernel must not reuse it.
    /// RAM resumes at 1 MiB up to the MMIO gap, and what does not fit below
    /// the gap continues at 4 GiB.
    public static func x86(ramSize: UInt64) -> [E820Entry] {
        let ebda = X86Layout.ebdaStart.rawValue
        let high = X86Layout.highMemory.rawValue
        let gapStart = X86Layout.mmioGapStart.rawValue
        var map = [
            E820Entry(addr: 0, size: min(ramSize, ebda), type: .ram),
            E820Entry(addr: ebda, size: high - ebda, type: .reserved),
        ]
        if ramSize > high {
            map.append(E820Entry(addr: high, size: min(ramSize, gapStart) - high, type: .ram))
        }
        if ramSize > gapStart {
            map.append(E820Entry(addr: X86Layout.mmioGapEnd.rawValue, size: ramSize - gapStart, type: .ram))
        }
        return map
    }
}
