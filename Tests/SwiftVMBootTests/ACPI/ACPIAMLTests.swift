import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

// Expected bytes below were checked against `iasl -oa` (optimizations off)
// compiling the ASL in the comment above each one.

/// `bytes` written as a hex string, for goldens copied from `xxd -p`.
private func hexBytes(_ text: String) -> [UInt8] {
    let digits = Array(text.utf8).filter { $0 != 0x20 }
    return stride(from: 0, to: digits.count, by: 2).map { index in
        UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) ?? 0
    }
}

@Suite("ACPI AML encoder")
struct ACPIAMLTests {
    @Test(
        "package lengths take 1, 2, 3 or 4 bytes",
        arguments: [
            (0, [0x00]),
            (63, [0x3f]),
            (64, [0x40, 0x04]),
            (4095, [0x4f, 0xff]),
            (4096, [0x80, 0x00, 0x01]),
            ((1 << 20) - 1, [0x8f, 0xff, 0xff]),
            (1 << 20, [0xc0, 0x00, 0x00, 0x01]),
            ((1 << 28) - 1, [0xcf, 0xff, 0xff, 0xff]),
        ] as [(Int, [UInt8])])
    func packageLength(length: Int, expected: [UInt8]) {
        #expect(AML.PackageLength.encode(length) == expected)
    }

    @Test(
        "a package's length counts its own bytes",
        arguments: [
            (62, [0x3f]),  // 62 + 1 = 63 fits one byte
            (63, [0x41, 0x04]),  // 63 + 2 = 65 needs two
            (4093, [0x4f, 0xff]),  // 4093 + 2 = 4095
            (4094, [0x81, 0x00, 0x01]),  // 4094 + 3 = 4097
        ] as [(Int, [UInt8])])
    func wrappedLength(payload: Int, expected: [UInt8]) {
        var bytes: [UInt8] = []
        AML.PackageLength.append([UInt8](repeating: 0xaa, count: payload), to: &bytes)
        #expect(bytes.slice(0, expected.count) == expected)
        #expect(bytes.count == payload + expected.count)
    }

    @Test(
        "integers take their shortest encoding",
        arguments: [
            (0, [0x00]),  // Zero
            (1, [0x01]),  // One
            (2, [0x0a, 0x02]),  // 0x02
            (0xff, [0x0a, 0xff]),  // 0xFF
            (0x100, [0x0b, 0x00, 0x01]),  // 0x0100
            (0xffff, [0x0b, 0xff, 0xff]),  // 0xFFFF
            (0x10000, [0x0c, 0x00, 0x00, 0x01, 0x00]),  // 0x00010000
            (0xffff_ffff, [0x0c, 0xff, 0xff, 0xff, 0xff]),  // 0xFFFFFFFF
            (1 << 32, [0x0e, 0, 0, 0, 0, 1, 0, 0, 0]),  // 0x0000000100000000
            (UInt64.max, [0xff]),  // Ones
        ] as [(UInt64, [UInt8])])
    func integers(value: UInt64, expected: [UInt8]) {
        #expect(AML.Integer(value).amlBytes == expected)
    }

    @Test(
        "name strings: segments padded with _, root, parent, dual and multi prefixes",
        arguments: [
            ("_SB_", "5f53425f"),
            ("_SB", "5f53425f"),
            ("V0", "56305f5f"),
            ("\\_S5_", "5c5f53355f"),
            ("\\_SB_.COM1", "5c2e5f53425f434f4d31"),
            ("\\_SB_.PCI0.LPC0", "5c2f035f53425f50434930 4c504330"),
            ("^^PS2K", "5e5e5053324b"),
            ("\\", "5c00"),
        ])
    func names(path: String, expected: String) {
        #expect(AML.NameString(path).amlBytes == hexBytes(expected))
    }

    // "LNRO0005"
    @Test("strings are StringPrefix, ASCII, NUL")
    func string() {
        #expect("LNRO0005".amlBytes == [0x0d] + Array("LNRO0005".utf8) + [0x00])
    }

    @Test("EISA ids compress to the DWord iasl emits", arguments: [
        ("PNP0501", 0x0105_d041 as UInt32),
        ("PNP0303", 0x0303_d041),
        ("PNP0A03", 0x030a_d041),
    ])
    func eisaID(id: String, value: UInt32) {
        // EisaId ("PNP0501") -> 0x0C 0x41 0xD0 0x05 0x01
        #expect(AML.EisaId(id).value == value)
        #expect(AML.EisaId(id).amlBytes == [0x0c] + le(value))
    }

    // Name (_UID, One)
    @Test("Name")
    func name() {
        #expect(AML.Name("_UID", 1).amlBytes == [0x08, 0x5f, 0x55, 0x49, 0x44, 0x01])
    }

    // Name (BUF0, Buffer () {1, 2, 3}): the part after the name
    @Test("Buffer")
    func buffer() {
        #expect(AML.Buffer([1, 2, 3]).amlBytes == hexBytes("11060a03010203"))
    }

    // Package () {}
    // Package () {5, 0}
    @Test("Package")
    func package() {
        #expect(AML.Package([]).amlBytes == [0x12, 0x02, 0x00])
        #expect(AML.Package([5, 0]).amlBytes == [0x12, 0x05, 0x02, 0x0a, 0x05, 0x00])
    }

    // ResourceTemplate () { }
    @Test("an empty ResourceTemplate is just the End Tag")
    func emptyTemplate() {
        #expect(AML.ResourceTemplate {}.amlBytes == hexBytes("11050a027900"))
    }

    @Test("resource descriptors")
    func descriptors() {
        // IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08)
        #expect(AML.IO(base: 0x3f8, length: 8).amlBytes == hexBytes("4701f803f8030108"))
        // IRQNoFlags () {4}
        #expect(AML.IRQNoFlags(4).amlBytes == [0x22, 0x10, 0x00])
        // IRQNoFlags () {1}
        #expect(AML.IRQNoFlags(1).amlBytes == [0x22, 0x02, 0x00])
        // Memory32Fixed (ReadWrite, 0xC0001000, 0x00001000)
        #expect(
            AML.Memory32Fixed(base: 0xc000_1000, length: 0x1000).amlBytes
                == hexBytes("86090001001000c000100000"))
        // Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) {5}
        #expect(AML.Interrupt(.edge, .activeHigh, .exclusive, number: 5).amlBytes == hexBytes("890600030105000000"))
        // Interrupt (ResourceConsumer, Level, ActiveLow, Shared, ,, ) {10}
        #expect(AML.Interrupt(.level, .activeLow, .shared, number: 10).amlBytes == hexBytes("8906000d010a000000"))
    }

    // ResourceTemplate ()
    // {
    //     IO (Decode16, 0x0060, 0x0060, 0x01, 0x01)
    //     IO (Decode16, 0x0064, 0x0064, 0x01, 0x01)
    //     IRQNoFlags () {1}
    // }
    @Test("ResourceTemplate wraps descriptors and the End Tag in a Buffer")
    func template() {
        let template = AML.ResourceTemplate {
            AML.IO(base: 0x60, length: 1)
            AML.IO(base: 0x64, length: 1)
            AML.IRQNoFlags(1)
        }
        #expect(template.amlBytes == hexBytes("11180a15 4701600060000101 4701640064000101 220200 7900"))
    }

    // Device (COM1)
    // {
    //     Name (_HID, EisaId ("PNP0501"))
    //     Name (_UID, Zero)
    //     Name (_CRS, ResourceTemplate ()
    //     {
    //         IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08)
    //         IRQNoFlags () {4}
    //     })
    // }
    @Test("a Device with _HID, _UID and _CRS")
    func device() {
        let device = AML.Device("COM1") {
            AML.Name("_HID", AML.EisaId("PNP0501"))
            AML.Name("_UID", 0)
            AML.Name("_CRS", AML.ResourceTemplate {
                AML.IO(base: 0x3f8, length: 8)
                AML.IRQNoFlags(4)
            })
        }
        let expected = "5b822b434f4d31 085f4849440c41d00501 085f55494400"
            + "085f43525311100a0d4701f803f80301082210007900"
        #expect(device.amlBytes == hexBytes(expected))
    }

    // Device (V000)
    // {
    //     Name (_HID, "LNRO0005")
    //     Name (_UID, Zero)
    //     Name (_CCA, One)
    //     Name (_CRS, ResourceTemplate ()
    //     {
    //         Memory32Fixed (ReadWrite, 0xC0001000, 0x00001000)
    //         Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) {5}
    //     })
    // }
    @Test("the virtio-mmio Device the DSDT emits")
    func virtioDevice() {
        let terms = AML.swiftvmDefinitionBlock(virtioDevices: [
            VirtioMMIODeviceInfo(base: GuestAddress(0xc000_1000), irq: 5)
        ])
        let expected = "5b8241045630303008 5f4849440d4c4e524f3030303500 085f55494400 085f43434101"
            + "085f435253111a0a1786090001001000c0001000008906000301050000007900"
        let bytes = terms.flatMap(\.amlBytes)
        #expect(bytes.firstRange(of: hexBytes(expected)) != nil)
    }

    // Scope (\_SB) { Device (COM1) {...} Device (V000) {...} }
    // Name (\_S5, Package () {5, 0})
    @Test("the definition block: \\_SB_ scope first, then \\_S5_")
    func definitionBlock() {
        let terms = AML.swiftvmDefinitionBlock(virtioDevices: [])
        let bytes = terms.flatMap(\.amlBytes)
        #expect(bytes.slice(0, 1) == [0x10])  // ScopeOp
        let s5 = hexBytes("085c5f53355f 120502 0a05 00")
        #expect(Array(bytes.suffix(s5.count)) == s5)
    }

    @Test("virtio device names count up in hex", arguments: [(0, "V000"), (9, "V009"), (10, "V00A"), (0xfff, "VFFF")])
    func virtioNames(index: Int, name: String) {
        #expect(DSDT.virtioDeviceName(index) == AML.NameString(name))
    }
}
