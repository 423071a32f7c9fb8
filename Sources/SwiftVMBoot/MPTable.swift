import SwiftVMMemory

/// The Intel MultiProcessor Specification 1.4 tables, which tell a guest
/// without ACPI where its CPUs, IOAPIC and interrupt lines are.
///
/// Layout at ``X86Layout/mpTable``: the 16-byte floating pointer, then the
/// configuration table (header and entries) right after it. The table takes
/// 284 + 20 × cpuCount bytes, so even 254 vCPUs (5,364 bytes) end far below
/// ``X86Layout/rsdp`` (0xe0000); the whole range up to 1 MiB is e820-reserved.
public struct MPTable: Sendable {
    public let cpuCount: Int

    /// APIC ids are 8 bits, 0xff is broadcast and the IOAPIC needs an id of
    /// its own, so at most 254 CPUs can be described.
    public static let maxCPUCount = 254
    /// IOAPIC inputs on the emulated 82093AA (KVM_IRQCHIP_IOAPIC).
    public static let ioapicPins = 24
    /// Local APIC version register of KVM's in-kernel LAPIC (integrated APIC).
    public static let lapicVersion: UInt8 = 0x14
    /// Version of KVM's in-kernel IOAPIC.
    public static let ioapicVersion: UInt8 = 0x11
    /// Spec revision 1.4, encoded as in MP spec §4.1 and §4.2.
    public static let specRevision: UInt8 = 4
    /// Family 6, model 0, stepping 0 in CPUID.1:EAX form (MP spec §4.3.1).
    /// Linux reads CPUID itself and ignores this; a P6-family value is what
    /// any 64-bit capable CPU could report.
    public static let cpuSignature: UInt32 = 0x0600
    /// CPUID.1:EDX bits FPU (0) and APIC (9): the processor has an on-chip
    /// FPU and local APIC, which is what an entry in this table promises.
    public static let cpuFeatureFlags: UInt32 = (1 << 0) | (1 << 9)
    /// The ISA bus's id; every I/O interrupt entry names it as its source.
    public static let isaBusID: UInt8 = 0

    enum EntryType: UInt8 {
        case processor = 0, bus = 1, ioapic = 2, ioInterrupt = 3, localInterrupt = 4
    }

    /// Interrupt types for I/O and local interrupt entries (MP spec Table 4-9).
    enum InterruptType: UInt8 {
        case int = 0, nmi = 1, smi = 2, extINT = 3
    }

    public init(cpuCount: Int) throws(MPTableError) {
        guard (1...Self.maxCPUCount).contains(cpuCount) else { throw .cpuCount(cpuCount) }
        self.cpuCount = cpuCount
    }

    /// Distinct from every LAPIC id (0 ..< cpuCount).
    public var ioapicID: UInt8 { UInt8(cpuCount) }

    /// Configuration table entries: processors, the bus, the IOAPIC, one
    /// I/O interrupt per IOAPIC pin, and LINT0/LINT1.
    public var entryCount: Int { cpuCount + 2 + Self.ioapicPins + 2 }

    /// Total bytes: floating pointer plus configuration table.
    public var size: Int { FloatingPointer.size + Header.size + 20 * cpuCount + 8 * (entryCount - cpuCount) }

    /// The floating pointer and configuration table for `address`.
    public func bytes(at address: GuestAddress = X86Layout.mpTable) -> [UInt8] {
        let tableAddress = UInt32(truncatingIfNeeded: address.rawValue) + UInt32(FloatingPointer.size)
        var table = configurationTable()
        var pointer = FloatingPointer.bytes(tableAddress: tableAddress)
        pointer[FloatingPointer.checksumOffset] = checksum(pointer)
        table[Header.checksumOffset] = checksum(table)
        return pointer + table
    }

    /// Writes the tables at ``X86Layout/mpTable``.
    public func write(to memory: GuestMemory) throws(GuestMemoryError) {
        try memory.write(bytes(at: X86Layout.mpTable), at: X86Layout.mpTable)
    }

    private func configurationTable() -> [UInt8] {
        var entries: [UInt8] = []
        for cpu in 0..<cpuCount {
            // Processor entry, MP spec §4.3.1: 20 bytes.
            let enabled: UInt8 = 0x01
            let bootProcessor: UInt8 = cpu == 0 ? 0x02 : 0
            entries += [EntryType.processor.rawValue, UInt8(cpu), Self.lapicVersion, enabled | bootProcessor]
            entries.appendLittleEndian(Self.cpuSignature)
            entries.appendLittleEndian(Self.cpuFeatureFlags)
            entries += [UInt8](repeating: 0, count: 8)
        }
        // Bus entry, §4.3.2: the bus type string is 6 space-padded ASCII bytes.
        entries += [EntryType.bus.rawValue, Self.isaBusID]
        entries.appendPaddedASCII("ISA", width: 6)
        // IOAPIC entry, §4.3.3: flags bit 0 = usable.
        entries += [EntryType.ioapic.rawValue, ioapicID, Self.ioapicVersion, 0x01]
        entries.appendLittleEndian(UInt32(truncatingIfNeeded: X86Layout.ioapic.rawValue))
        // I/O interrupt entries, §4.3.4: ISA IRQ n arrives on IOAPIC pin n, as
        // KVM's default GSI routing wires it. Flags 0: polarity and trigger
        // conform to the bus (ISA: active high, edge).
        for pin in 0..<UInt8(Self.ioapicPins) {
            entries += [EntryType.ioInterrupt.rawValue, InterruptType.int.rawValue]
            entries.appendLittleEndian(UInt16(0))
            entries += [Self.isaBusID, pin, ioapicID, pin]
        }
        // Local interrupt entries, §4.3.5: the 8259 PIC's ExtINT on LINT0 and
        // NMI on LINT1 of every local APIC (destination id 0xff), the
        // virtual-wire wiring Linux expects.
        let allLocalAPICs: UInt8 = 0xff
        for (type, lint) in [(InterruptType.extINT, UInt8(0)), (InterruptType.nmi, UInt8(1))] {
            entries += [EntryType.localInterrupt.rawValue, type.rawValue]
            entries.appendLittleEndian(UInt16(0))
            entries += [Self.isaBusID, 0, allLocalAPICs, lint]
        }
        return Header.bytes(length: Header.size + entries.count, entryCount: entryCount) + entries
    }

    /// The value that makes `bytes` sum to zero modulo 256 (MP spec §4.1, §4.2).
    private func checksum(_ bytes: [UInt8]) -> UInt8 {
        0 &- bytes.reduce(0, &+)
    }
}

extension MPTable {
    /// MP floating pointer structure, MP spec §4.1: 16 bytes.
    enum FloatingPointer {
        static let size = 16
        static let checksumOffset = 10

        static func bytes(tableAddress: UInt32) -> [UInt8] {
            var bytes = Array("_MP_".utf8)
            bytes.appendLittleEndian(tableAddress)
            // Length in 16-byte units, spec revision, checksum (filled later),
            // feature bytes 1-5: byte 1 = 0 means "a configuration table follows",
            // byte 2 bit 7 clear means virtual-wire mode, no IMCR.
            bytes += [1, MPTable.specRevision, 0, 0, 0, 0, 0, 0]
            return bytes
        }
    }

    /// MP configuration table header, MP spec §4.2: 44 bytes.
    enum Header {
        static let size = 44
        static let checksumOffset = 7

        static func bytes(length: Int, entryCount: Int) -> [UInt8] {
            var bytes = Array("PCMP".utf8)
            bytes.appendLittleEndian(UInt16(length))
            bytes += [MPTable.specRevision, 0]
            bytes.appendPaddedASCII("SWIFTVM", width: 8)
            bytes.appendPaddedASCII("MICROVM", width: 12)
            bytes.appendLittleEndian(UInt32(0))  // no OEM table
            bytes.appendLittleEndian(UInt16(0))  // OEM table size
            bytes.appendLittleEndian(UInt16(entryCount))
            bytes.appendLittleEndian(UInt32(truncatingIfNeeded: X86Layout.lapic.rawValue))
            bytes.appendLittleEndian(UInt16(0))  // no extended table
            bytes += [0, 0]  // extended checksum, reserved
            return bytes
        }
    }
}

/// Why an MP table could not be built.
public enum MPTableError: Error, Equatable, Sendable, CustomStringConvertible {
    case cpuCount(Int)

    public var description: String {
        switch self {
        case .cpuCount(let count):
            "the MP table can describe 1 to \(MPTable.maxCPUCount) vCPUs, but \(count) were asked for"
                + " (pass a --vcpus value in that range)"
        }
    }
}
