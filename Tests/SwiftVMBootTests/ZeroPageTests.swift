import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

@Suite("ZeroPage")
struct ZeroPageTests {
    static let page = ZeroPage(
        e820: E820Map.x86(ramSize: 128 << 20),
        commandLineAddress: X86Layout.commandLine,
        commandLineSize: 42,
        initrd: .init(address: GuestAddress(0x7f0_0000), size: 0x12_3456),
        acpiRSDP: X86Layout.rsdp
    ).bytes()

    @Test func isOnePage() {
        #expect(Self.page.count == 4096)
    }

    @Test("setup header fields at their boot.rst offsets")
    func setupHeader() {
        #expect(Self.page.slice(0x1fe, 2) == [0x55, 0xaa])  // boot_flag
        #expect(Self.page.slice(0x202, 4) == Array("HdrS".utf8))  // header
        #expect(Self.page.slice(0x206, 2) == [0x0f, 0x02])  // version 2.15
        #expect(Self.page[0x210] == 0xff)  // type_of_loader
        #expect(Self.page[0x211] == 0x01)  // loadflags: LOADED_HIGH
        #expect(Self.page.slice(0x230, 4) == [0x00, 0x00, 0x00, 0x01])  // kernel_alignment 16 MiB
        #expect(Self.page[0x1ef] == 0, "a non-zero sentinel makes the kernel wipe fields")
    }

    @Test("command line pointer and size")
    func commandLine() {
        #expect(Self.page.slice(0x228, 4) == [0x00, 0x00, 0x02, 0x00])  // cmd_line_ptr 0x20000
        #expect(Self.page.slice(0x0c8, 4) == [0, 0, 0, 0])  // ext_cmd_line_ptr
        #expect(Self.page.slice(0x238, 4) == [42, 0, 0, 0])  // cmdline_size
    }

    @Test("initrd address and size")
    func initrd() {
        #expect(Self.page.slice(0x218, 4) == [0x00, 0x00, 0xf0, 0x07])  // ramdisk_image
        #expect(Self.page.slice(0x21c, 4) == [0x56, 0x34, 0x12, 0x00])  // ramdisk_size
        #expect(Self.page.slice(0x0c0, 4) == [0, 0, 0, 0])  // ext_ramdisk_image
        #expect(Self.page.slice(0x0c4, 4) == [0, 0, 0, 0])  // ext_ramdisk_size
    }

    @Test("64-bit addresses spill into the ext_ fields")
    func highAddresses() {
        let page = ZeroPage(
            e820: [], commandLineAddress: GuestAddress(0x1_2345_6000), commandLineSize: 1,
            initrd: .init(address: GuestAddress(0x2_0000_1000), size: 0x1_0000_0002)
        ).bytes()
        #expect(page.slice(0x228, 4) == le(UInt32(0x2345_6000)))
        #expect(page.slice(0x0c8, 4) == le(UInt32(1)))
        #expect(page.slice(0x218, 4) == le(UInt32(0x1000)))
        #expect(page.slice(0x0c0, 4) == le(UInt32(2)))
        #expect(page.slice(0x21c, 4) == le(UInt32(2)))
        #expect(page.slice(0x0c4, 4) == le(UInt32(1)))
    }

    @Test("ACPI RSDP address, or zero without ACPI")
    func rsdp() {
        #expect(Self.page.slice(0x070, 8) == [0x00, 0x00, 0x0e, 0x00, 0, 0, 0, 0])
        let withoutACPI = ZeroPage(e820: [], commandLineSize: 0).bytes()
        #expect(withoutACPI.slice(0x070, 8) == [UInt8](repeating: 0, count: 8))
        #expect(withoutACPI.slice(0x218, 8) == [UInt8](repeating: 0, count: 8), "no initrd means ramdisk fields stay zero")
    }

    @Test("e820 count and table entries")
    func e820() {
        #expect(Self.page[0x1e8] == 3)
        // Entry 1: addr 0x9fc00, size 0x60400, type 2 (reserved).
        #expect(Self.page.slice(0x2d0 + 20, 20) == [
            0x00, 0xfc, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x04, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x02, 0x00, 0x00, 0x00,
        ])
        // Entry 2 starts at 1 MiB, type 1; entry 3 is empty.
        #expect(Self.page.slice(0x2d0 + 40, 8) == le(UInt64(0x10_0000)))
        #expect(Self.page.slice(0x2d0 + 56, 4) == [1, 0, 0, 0])
        #expect(Self.page.slice(0x2d0 + 60, 20) == [UInt8](repeating: 0, count: 20))
    }

    @Test("writes into guest memory at the zero page address")
    func write() throws {
        let memory = try makeMemory()
        try ZeroPage(e820: E820Map.x86(ramSize: memory.size), commandLineSize: 10).write(to: memory)
        #expect(try memory.load(UInt32.self, at: GuestAddress(0x7202)) == 0x5372_6448)
        #expect(try memory.load(UInt8.self, at: GuestAddress(0x71e8)) == 3)
    }
}
