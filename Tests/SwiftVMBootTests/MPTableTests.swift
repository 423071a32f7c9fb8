import Testing
@testable import SwiftVMBoot
import SwiftVMTestSupport

@Suite("MPTable")
struct MPTableTests {
    @Test("floating pointer golden bytes for one vCPU")
    func floatingPointer() throws {
        let bytes = try MPTable(cpuCount: 1).bytes()
        #expect(bytes.slice(0, 10) == Array("_MP_".utf8) + [0x10, 0xfc, 0x09, 0x00, 0x01, 0x04])
        #expect(bytes.slice(11, 5) == [0, 0, 0, 0, 0])
        #expect(bytes.slice(0, 16).byteSum == 0)
    }

    @Test("configuration table header golden bytes for one vCPU")
    func header() throws {
        let bytes = try MPTable(cpuCount: 1).bytes()
        let header = bytes.slice(16, 44)
        #expect(header.slice(0, 7) == Array("PCMP".utf8) + [0x20, 0x01, 0x04])  // length 288, rev 1.4
        #expect(header.slice(8, 20) == Array("SWIFTVM MICROVM     ".utf8))
        #expect(header.slice(28, 16) == [
            0, 0, 0, 0, 0, 0,  // no OEM table
            29, 0,  // entries: 1 CPU, bus, IOAPIC, 24 pins, 2 LINTs
            0x00, 0x00, 0xe0, 0xfe,  // LAPIC at 0xfee00000
            0, 0, 0, 0,  // no extended table
        ])
        #expect(bytes.count == 16 + 288)
    }

    @Test("checksums zero both structures", arguments: [1, 2, 32, 254])
    func checksums(cpus: Int) throws {
        let table = try MPTable(cpuCount: cpus)
        let bytes = table.bytes()
        #expect(bytes.count == table.size)
        #expect(bytes.count == 284 + 20 * cpus)
        #expect(bytes.slice(0, 16).byteSum == 0)
        #expect(Array(bytes[16...]).byteSum == 0)
        let length = Int(bytes[20]) | Int(bytes[21]) << 8
        #expect(length == bytes.count - 16)
        let entries = Int(bytes[50]) | Int(bytes[51]) << 8
        #expect(entries == cpus + 28)
        #expect(X86Layout.mpTable.rawValue + UInt64(bytes.count) <= X86Layout.rsdp.rawValue)
    }

    @Test("processor entries: APIC id = index, CPU 0 is the BSP")
    func processors() throws {
        let bytes = try MPTable(cpuCount: 3).bytes()
        let first = bytes.slice(60, 20)
        #expect(first == [0, 0, 0x14, 0x03, 0x00, 0x06, 0, 0, 0x01, 0x02, 0, 0] + [UInt8](repeating: 0, count: 8))
        let third = bytes.slice(60 + 40, 20)
        #expect(third.slice(0, 4) == [0, 2, 0x14, 0x01])
    }

    @Test("bus, IOAPIC, interrupt entries follow the processors")
    func devices() throws {
        let cpus = 2
        let bytes = try MPTable(cpuCount: cpus).bytes()
        var offset = 60 + 20 * cpus
        #expect(bytes.slice(offset, 8) == [1, 0] + Array("ISA   ".utf8))
        offset += 8
        // IOAPIC id 2 (after LAPIC ids 0 and 1), version 0x11, usable, 0xfec00000.
        #expect(bytes.slice(offset, 8) == [2, 2, 0x11, 0x01, 0x00, 0x00, 0xc0, 0xfe])
        offset += 8
        for pin in 0..<24 {
            #expect(bytes.slice(offset + 8 * pin, 8) == [3, 0, 0, 0, 0, UInt8(pin), 2, UInt8(pin)])
        }
        offset += 8 * 24
        #expect(bytes.slice(offset, 8) == [4, 3, 0, 0, 0, 0, 0xff, 0])  // ExtINT on LINT0
        #expect(bytes.slice(offset + 8, 8) == [4, 1, 0, 0, 0, 0, 0xff, 1])  // NMI on LINT1
        #expect(offset + 16 == bytes.count)
    }

    @Test("vCPU counts outside 1...254 are refused", arguments: [0, 255, -1])
    func badCount(cpus: Int) {
        let error = #expect(throws: MPTableError.self) { try MPTable(cpuCount: cpus) }
        #expect(error?.description.contains("1 to 254 vCPUs, but \(cpus)") == true)
    }

    @Test("written at the MP table address")
    func write() throws {
        let memory = try makeMemory()
        let table = try MPTable(cpuCount: 4)
        try table.write(to: memory)
        #expect(try memory.read(at: X86Layout.mpTable, count: table.size) == table.bytes())
    }
}
