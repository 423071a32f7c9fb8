import SwiftVMMemory

/// A virtio-mmio device as the DSDT describes it.
public struct VirtioMMIODeviceInfo: Sendable, Equatable {
    /// Start of its register window; must lie below 4 GiB.
    public var base: GuestAddress
    /// Size of the window, usually ``X86Layout/virtioMMIOSize``.
    public var size: UInt64
    /// The GSI (IOAPIC pin) it raises, edge-triggered and active-high.
    public var irq: UInt32

    public init(base: GuestAddress, size: UInt64 = X86Layout.virtioMMIOSize, irq: UInt32) {
        self.base = base
        self.size = size
        self.irq = irq
    }
}

/// The ACPI tables of an x86 microVM, with their guest addresses fixed.
///
/// The RSDP goes at ``X86Layout/rsdp``; the XSDT, FADT, MADT and DSDT follow
/// one another from ``X86Layout/acpiTables``, each 8-byte aligned, all inside
/// the e820-reserved range below 1 MiB. The XSDT lists the FADT and MADT; the
/// FADT's X_DSDT points at the DSDT.
public struct ACPITables: Sendable {
    public let rsdp: [UInt8]
    public let xsdt: [UInt8]
    public let fadt: [UInt8]
    public let madt: [UInt8]
    public let dsdt: [UInt8]

    public let xsdtAddress: GuestAddress
    public let fadtAddress: GuestAddress
    public let madtAddress: GuestAddress
    public let dsdtAddress: GuestAddress

    /// Builds the tables for `vcpuCount` vCPUs (1 to 254, as for the MP
    /// table) and the virtio-mmio devices in `virtioDevices`, named `V000`,
    /// `V001`, ... in that order.
    ///
    /// - Throws: ``ACPITablesError`` when the counts are out of range, a
    ///   device window does not fit the 32-bit descriptor, or the tables
    ///   would run into the RSDP.
    public init(vcpuCount: Int, virtioDevices: [VirtioMMIODeviceInfo]) throws(ACPITablesError) {
        guard (1...MPTable.maxCPUCount).contains(vcpuCount) else { throw .vcpuCount(vcpuCount) }
        guard virtioDevices.count <= Self.maxVirtioDevices else { throw .virtioDeviceCount(virtioDevices.count) }
        for device in virtioDevices {
            let (end, overflow) = device.base.rawValue.addingReportingOverflow(device.size)
            guard device.size > 0, !overflow, end <= 1 << 32 else { throw .virtioWindow(device) }
        }

        let madt = MADT.bytes(vcpuCount: vcpuCount)
        let dsdt = DSDT.bytes(virtioDevices: virtioDevices)
        var next = X86Layout.acpiTables.rawValue
        func place(_ size: Int) -> GuestAddress {
            let address = GuestAddress(next)
            next = (next + UInt64(size) + 7) & ~7
            return address
        }
        let xsdtAddress = place(SystemDescriptionHeader.size + 8 * 2)
        let fadtAddress = place(FADT.size)
        let madtAddress = place(madt.count)
        let dsdtAddress = place(dsdt.count)
        guard dsdtAddress.rawValue + UInt64(dsdt.count) <= X86Layout.rsdp.rawValue else {
            throw .tooLarge(bytes: Int(dsdtAddress.rawValue - X86Layout.acpiTables.rawValue) + dsdt.count)
        }

        self.xsdtAddress = xsdtAddress
        self.fadtAddress = fadtAddress
        self.madtAddress = madtAddress
        self.dsdtAddress = dsdtAddress
        self.madt = madt
        self.dsdt = dsdt
        self.fadt = FADT.bytes(dsdt: dsdtAddress)
        self.xsdt = XSDT.bytes(entries: [fadtAddress, madtAddress])
        self.rsdp = RSDP.bytes(xsdt: xsdtAddress)
    }

    /// DSDT names run from `V000` to `VFFF`; far more than the IOAPIC has pins.
    public static let maxVirtioDevices = 0x1000

    /// Where the RSDP is; the zero page's `acpi_rsdp_addr` can point here.
    public var rsdpAddress: GuestAddress { X86Layout.rsdp }

    /// Writes every table at its address.
    public func write(to memory: GuestMemory) throws(GuestMemoryError) {
        for (bytes, address) in placed {
            try memory.write(bytes, at: address)
        }
    }

    /// The tables as `iasl -d` and `acpidump` name them: RSDP.dat, XSDT.dat,
    /// FACP.dat, APIC.dat, DSDT.dat.
    public var files: [(name: String, bytes: [UInt8])] {
        [("RSDP.dat", rsdp), ("XSDT.dat", xsdt), ("FACP.dat", fadt), ("APIC.dat", madt), ("DSDT.dat", dsdt)]
    }

    var placed: [(bytes: [UInt8], address: GuestAddress)] {
        [(rsdp, rsdpAddress), (xsdt, xsdtAddress), (fadt, fadtAddress), (madt, madtAddress), (dsdt, dsdtAddress)]
    }
}

/// Why the ACPI tables could not be built.
public enum ACPITablesError: Error, Equatable, Sendable, CustomStringConvertible {
    case vcpuCount(Int)
    case virtioDeviceCount(Int)
    case virtioWindow(VirtioMMIODeviceInfo)
    case tooLarge(bytes: Int)

    public var description: String {
        switch self {
        case .vcpuCount(let count):
            "the ACPI tables can describe 1 to \(MPTable.maxCPUCount) vCPUs, but \(count) were asked for"
                + " (pass a --vcpus value in that range)"
        case .virtioDeviceCount(let count):
            "the DSDT can name at most \(ACPITables.maxVirtioDevices) virtio-mmio devices, but \(count) were asked for"
        case .virtioWindow(let device):
            "the virtio-mmio window of \(device.size) bytes at \(device.base) does not fit below 4 GiB"
        case .tooLarge(let bytes):
            "the ACPI tables take \(describeByteCount(UInt64(bytes))), more than fits between "
                + "\(X86Layout.acpiTables) and the RSDP at \(X86Layout.rsdp)"
        }
    }
}
