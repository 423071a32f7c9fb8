/// The Multiple APIC Description Table (signature "APIC", ACPI 6.5 §5.2.12),
/// revision 6: the interrupt controllers KVM's in-kernel irqchip provides.
///
/// - One Processor Local APIC structure per vCPU, processor UID = APIC id =
///   vCPU index, enabled.
/// - One I/O APIC, id = vCPU count (as in ``MPTable``), at
///   ``X86Layout/ioapic``, GSIs 0-23.
/// - No Interrupt Source Overrides: KVM's default GSI routing (what swiftvm
///   uses; it never calls KVM_SET_GSI_ROUTING) sends GSI n to IOAPIC pin n
///   for n < 24, and its PIT raises GSI 0. That is the identity mapping the
///   spec assumes when no override is given (§5.2.12.5). QEMU's `0 -> 2`
///   override matches QEMU's own routing table, not KVM's default, and would
///   point the guest at the wrong pin here.
/// - One Local APIC NMI structure: NMI on LINT1 of every processor, the
///   wiring the MP table also describes.
///
/// Flags: PCAT_COMPAT is set, because KVM_CREATE_IRQCHIP does create the
/// dual 8259 pair (and the MP table's ExtINT entry already says so).
/// Firecracker leaves it clear; a hardware-reduced Linux guest replaces the
/// legacy PIC with a null one either way, so only other guests see the difference.
enum MADT {
    static let revision: UInt8 = 6
    static let pcatCompatible: UInt32 = 1 << 0

    enum StructureType: UInt8 {
        case processorLocalAPIC = 0
        case ioAPIC = 1
        case localAPICNMI = 4
    }

    /// `Enabled` in the Local APIC Flags (§5.2.12.2).
    static let localAPICEnabled: UInt32 = 1 << 0
    /// A processor UID of 0xFF in a Local APIC NMI structure means "all".
    static let allProcessors: UInt8 = 0xff
    /// Sizes (§5.2.12): header with LAPIC address and flags, and each structure.
    static let headerSize = 44
    static let localAPICSize = 8
    static let ioAPICSize = 12
    static let localAPICNMISize = 6

    static func size(vcpuCount: Int) -> Int {
        headerSize + localAPICSize * vcpuCount + ioAPICSize + localAPICNMISize
    }

    /// `vcpuCount` must be 1...``MPTable/maxCPUCount``, so that every APIC id
    /// and the IOAPIC id fit in a byte below 0xff.
    static func bytes(vcpuCount: Int) -> [UInt8] {
        precondition((1...MPTable.maxCPUCount).contains(vcpuCount), "vCPU count checked by ACPITables")
        var table = SystemDescriptionHeader.bytes(signature: "APIC", revision: revision)
        table.appendLittleEndian(UInt32(truncatingIfNeeded: X86Layout.lapic.rawValue))
        table.appendLittleEndian(pcatCompatible)
        for cpu in 0..<UInt8(vcpuCount) {
            table += [StructureType.processorLocalAPIC.rawValue, UInt8(localAPICSize), cpu, cpu]
            table.appendLittleEndian(localAPICEnabled)
        }
        let ioapicID = UInt8(vcpuCount)
        table += [StructureType.ioAPIC.rawValue, UInt8(ioAPICSize), ioapicID, 0]
        table.appendLittleEndian(UInt32(truncatingIfNeeded: X86Layout.ioapic.rawValue))
        table.appendLittleEndian(UInt32(0))  // global system interrupt base
        // Flags 0: polarity and trigger conform to the bus; LINT1.
        table += [StructureType.localAPICNMI.rawValue, UInt8(localAPICNMISize), allProcessors]
        table.appendLittleEndian(UInt16(0))
        table.append(1)
        SystemDescriptionHeader.seal(&table)
        return table
    }
}
