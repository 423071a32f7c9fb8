import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

/// `count` virtio-mmio devices at the layout's windows and IRQs.
func virtioDevices(_ count: Int) -> [VirtioMMIODeviceInfo] {
    (0..<count).map { index in
        VirtioMMIODeviceInfo(
            base: GuestAddress(X86Layout.virtioMMIOStart.rawValue + UInt64(index) * X86Layout.virtioMMIOSize),
            irq: X86Layout.firstVirtioIRQ + UInt32(index))
    }
}

/// The 36-byte header every table shares, as swiftvm fills it.
private func header(_ signature: String, length: UInt32, revision: UInt8, checksum: UInt8) -> [UInt8] {
    Array(signature.utf8) + le(length) + [revision, checksum]
        + Array("SWIFTVSWIFTVM ".utf8) + le(UInt32(1)) + Array("SWVM".utf8) + le(UInt32(1))
}

@Suite("ACPI tables")
struct ACPITablesTests {
    static let shapes: [(vcpus: Int, devices: Int)] = [1, 2, 32].flatMap { vcpus in [0, 1, 8].map { (vcpus, $0) } }

    @Test("length fields match and checksums zero every table", arguments: shapes)
    func lengthsAndChecksums(shape: (vcpus: Int, devices: Int)) throws {
        let tables = try ACPITables(vcpuCount: shape.vcpus, virtioDevices: virtioDevices(shape.devices))
        for table in [tables.xsdt, tables.fadt, tables.madt, tables.dsdt] {
            #expect(table.loadLittleEndian(UInt32.self, at: 4).map(Int.init) == table.count)
            #expect(table.byteSum == 0)
        }
        #expect(tables.fadt.count == 276)
        #expect(tables.xsdt.count == 36 + 16)
        #expect(tables.madt.count == 44 + 8 * shape.vcpus + 12 + 6)
    }

    @Test("golden headers")
    func headers() throws {
        let tables = try ACPITables(vcpuCount: 1, virtioDevices: [])
        #expect(tables.xsdt.slice(0, 36) == header("XSDT", length: 52, revision: 1, checksum: tables.xsdt[9]))
        #expect(tables.fadt.slice(0, 36) == header("FACP", length: 276, revision: 6, checksum: tables.fadt[9]))
        #expect(tables.madt.slice(0, 36) == header("APIC", length: 70, revision: 6, checksum: tables.madt[9]))
        #expect(
            tables.dsdt.slice(0, 36)
                == header("DSDT", length: UInt32(tables.dsdt.count), revision: 2, checksum: tables.dsdt[9]))
    }

    @Test("RSDP: revision 2, both checksums, points at the XSDT")
    func rsdp() throws {
        let tables = try ACPITables(vcpuCount: 2, virtioDevices: virtioDevices(1))
        let rsdp = tables.rsdp
        #expect(rsdp.count == 36)
        #expect(rsdp.slice(0, 8) == Array("RSD PTR ".utf8))
        #expect(rsdp.slice(9, 6) == Array("SWIFTV".utf8))
        #expect(rsdp[15] == 2)
        #expect(rsdp.slice(16, 4) == [0, 0, 0, 0])  // no RSDT
        #expect(rsdp.loadLittleEndian(UInt32.self, at: 20) == 36)
        #expect(rsdp.loadLittleEndian(UInt64.self, at: 24) == tables.xsdtAddress.rawValue)
        #expect(rsdp.slice(0, 20).byteSum == 0)
        #expect(rsdp.byteSum == 0)
        #expect(rsdp.slice(33, 3) == [0, 0, 0])
        #expect(tables.rsdpAddress == GuestAddress(0xe0000))
    }

    @Test("XSDT lists the FADT and MADT; the FADT's X_DSDT points at the DSDT")
    func pointers() throws {
        let tables = try ACPITables(vcpuCount: 4, virtioDevices: virtioDevices(3))
        #expect(tables.xsdt.loadLittleEndian(UInt64.self, at: 36) == tables.fadtAddress.rawValue)
        #expect(tables.xsdt.loadLittleEndian(UInt64.self, at: 44) == tables.madtAddress.rawValue)
        #expect(tables.fadt.loadLittleEndian(UInt64.self, at: 140) == tables.dsdtAddress.rawValue)
        #expect(tables.fadt.loadLittleEndian(UInt32.self, at: 40) == 0)  // 32-bit DSDT unused
        #expect(tables.fadt.slice(tables.fadt.count - 8, 8) == Array("SWIFTVM ".utf8))
    }

    @Test("FADT: hardware-reduced, i8042 reset, sleep registers, boot flags")
    func fadt() throws {
        let fadt = try ACPITables(vcpuCount: 1, virtioDevices: []).fadt
        #expect(fadt.slice(36, 73) == [UInt8](repeating: 0, count: 73))  // no FACS, no fixed hardware
        // 8042 | VGA not present | MSI not supported | PCIe ASPM controls | no CMOS RTC
        #expect(fadt.loadLittleEndian(UInt16.self, at: 109) == 0x3e)
        // PWR_BUTTON | SLP_BUTTON | RESET_REG_SUP | HW_REDUCED_ACPI
        #expect(fadt.loadLittleEndian(UInt32.self, at: 112) == 0x0010_0430)
        // RESET_REG: system I/O, 8 bits at offset 0, byte access, port 0x64; RESET_VALUE 0xFE
        #expect(fadt.slice(116, 13) == [1, 8, 0, 1, 0x64, 0, 0, 0, 0, 0, 0, 0, 0xfe])
        #expect(fadt[131] == 5)  // FADT minor version: ACPI 6.5
        #expect(fadt.slice(148, 96) == [UInt8](repeating: 0, count: 96))  // no X_PM/GPE blocks
        #expect(fadt.slice(244, 12) == [1, 8, 0, 1, 0x00, 0x06, 0, 0, 0, 0, 0, 0])  // SLEEP_CONTROL_REG 0x600
        #expect(fadt.slice(256, 12) == [1, 8, 0, 1, 0x01, 0x06, 0, 0, 0, 0, 0, 0])  // SLEEP_STATUS_REG 0x601
    }

    @Test("MADT: one enabled LAPIC per vCPU, the IOAPIC, LINT1 NMI, no overrides", arguments: [1, 2, 32, 254])
    func madt(vcpus: Int) throws {
        let madt = try ACPITables(vcpuCount: vcpus, virtioDevices: []).madt
        #expect(madt.slice(36, 8) == [0x00, 0x00, 0xe0, 0xfe, 1, 0, 0, 0])  // LAPIC 0xfee00000, PCAT_COMPAT
        var offset = 44
        var lapics: [UInt8] = []
        var types: [UInt8] = []
        while offset < madt.count {
            let (type, length) = (madt[offset], Int(madt[offset + 1]))
            types.append(type)
            if type == 0 {
                #expect(length == 8)
                #expect(madt[offset + 2] == madt[offset + 3])  // processor UID = APIC id
                #expect(madt.loadLittleEndian(UInt32.self, at: offset + 4) == 1)  // enabled
                lapics.append(madt[offset + 3])
            }
            if type == 1 {
                #expect(madt.slice(offset, 12) == [1, 12, UInt8(vcpus), 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0])
            }
            if type == 4 {
                #expect(madt.slice(offset, 6) == [4, 6, 0xff, 0, 0, 1])
            }
            offset += max(length, 1)
        }
        #expect(offset == madt.count)
        #expect(lapics == (0..<vcpus).map { UInt8($0) })
        #expect(types.filter { $0 == 1 }.count == 1)
        #expect(types.filter { $0 == 4 }.count == 1)
        #expect(!types.contains(2))  // KVM's default routing is the identity
    }

    @Test("tables are 8-byte aligned, in order, between the largest MP table and the RSDP")
    func placement() throws {
        let tables = try ACPITables(vcpuCount: 254, virtioDevices: virtioDevices(32))
        let mpTableEnd = X86Layout.mpTable.rawValue + UInt64(try MPTable(cpuCount: 254).size)
        var previousEnd = mpTableEnd
        for (bytes, address) in tables.placed.dropFirst() {
            #expect(address.rawValue % 8 == 0)
            #expect(address.rawValue >= previousEnd)
            previousEnd = address.rawValue + UInt64(bytes.count)
        }
        #expect(previousEnd <= X86Layout.rsdp.rawValue)
        #expect(tables.xsdtAddress == X86Layout.acpiTables)
    }

    @Test("write(to:) puts every table at its address")
    func write() throws {
        let memory = try makeMemory()
        let tables = try ACPITables(vcpuCount: 2, virtioDevices: virtioDevices(2))
        try tables.write(to: memory)
        #expect(try memory.read(at: X86Layout.rsdp, count: 36) == tables.rsdp)
        #expect(try memory.read(at: tables.xsdtAddress, count: tables.xsdt.count) == tables.xsdt)
        #expect(try memory.read(at: tables.fadtAddress, count: tables.fadt.count) == tables.fadt)
        #expect(try memory.read(at: tables.madtAddress, count: tables.madt.count) == tables.madt)
        #expect(try memory.read(at: tables.dsdtAddress, count: tables.dsdt.count) == tables.dsdt)
        #expect(tables.files.map(\.name) == ["RSDP.dat", "XSDT.dat", "FACP.dat", "APIC.dat", "DSDT.dat"])
    }

    @Test("bad inputs are refused with a reason")
    func errors() {
        #expect(throws: ACPITablesError.vcpuCount(0)) { try ACPITables(vcpuCount: 0, virtioDevices: []) }
        #expect(throws: ACPITablesError.vcpuCount(255)) { try ACPITables(vcpuCount: 255, virtioDevices: []) }
        let high = VirtioMMIODeviceInfo(base: GuestAddress(0xffff_f800), irq: 5)
        #expect(throws: ACPITablesError.virtioWindow(high)) { try ACPITables(vcpuCount: 1, virtioDevices: [high]) }
        let error = #expect(throws: ACPITablesError.self) {
            try ACPITables(vcpuCount: 1, virtioDevices: virtioDevices(4096))
        }
        #expect(error?.description.contains("more than fits") == true)
        #expect(ACPITablesError.vcpuCount(0).description.contains("1 to 254 vCPUs, but 0"))
    }

    @Test("the byte that powers off", arguments: [
        (0x34 as UInt8, true),  // SLP_TYP 5 | SLP_EN
        (0xb4, true),  // bit 7 is not part of the request
        (0x14, false),  // SLP_EN clear
        (0x20, false),  // S0
        (0x30, false),  // SLP_TYP 4
    ])
    func powerOff(value: UInt8, powersOff: Bool) {
        #expect(ACPISleepControl.requestsPowerOff(value) == powersOff)
        #expect(ACPISleepControl.powerOffValue == 0x34)
    }
}
