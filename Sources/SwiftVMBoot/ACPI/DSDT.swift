/// The Differentiated System Description Table (ACPI 6.5 §5.2.11.1): the
/// header and an AML definition block that names swiftvm's devices.
///
/// Revision 2 makes AML integers 64-bit (§5.2.11.1).
enum DSDT {
    static let revision: UInt8 = 2

    static func bytes(virtioDevices: [VirtioMMIODeviceInfo]) -> [UInt8] {
        var table = SystemDescriptionHeader.bytes(signature: "DSDT", revision: revision)
        for term in AML.swiftvmDefinitionBlock(virtioDevices: virtioDevices) {
            term.encode(into: &table)
        }
        SystemDescriptionHeader.seal(&table)
        return table
    }

    /// `V000`, `V001`, ... `VFFF`: the virtio-mmio device at `index`.
    static func virtioDeviceName(_ index: Int) -> AML.NameString {
        precondition((0..<0x1000).contains(index), "at most 4096 virtio-mmio devices have names")
        let digits = String(index, radix: 16, uppercase: true)
        return AML.NameString("V" + String(repeating: "0", count: 3 - digits.count) + digits)
    }
}

// Written inside `extension AML` so the object constructors read unqualified,
// like the ASL they encode.
extension AML {
    /// The DSDT's contents:
    ///
    ///     Scope (\_SB) {
    ///         Device (COM1) { _HID PNP0501, _UID 0, _CRS IO 0x3F8/8, IRQNoFlags {4} }
    ///         Device (PS2K) { _HID PNP0303, _CRS IO 0x60/1, IO 0x64/1, IRQNoFlags {1} }
    ///         Device (V000) { _HID "LNRO0005", _UID 0, _CCA One,
    ///                         _CRS Memory32Fixed (ReadWrite, base, size),
    ///                              Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {irq} }
    ///         ...
    ///     }
    ///     Name (_S5, Package () {5, 0})
    ///
    /// `LNRO0005` is the ACPI id Linux's virtio_mmio driver matches; `_CCA`
    /// One says the device's DMA is cache-coherent. `_S5` at the root is what
    /// lets Linux power off (see ``ACPISleepControl``).
    static func swiftvmDefinitionBlock(virtioDevices: [VirtioMMIODeviceInfo]) -> [any AMLEncodable] {
        [
            Scope("\\_SB_") {
                Device("COM1") {
                    Name("_HID", EisaId("PNP0501"))
                    Name("_UID", 0)
                    Name("_CRS", ResourceTemplate {
                        IO(base: X86Layout.com1Port, length: 8)
                        IRQNoFlags(UInt8(X86Layout.com1IRQ))
                    })
                }
                Device("PS2K") {
                    Name("_HID", EisaId("PNP0303"))
                    Name("_CRS", ResourceTemplate {
                        IO(base: X86Layout.i8042DataPort, length: 1)
                        IO(base: X86Layout.i8042CommandPort, length: 1)
                        IRQNoFlags(UInt8(X86Layout.i8042IRQ))
                    })
                }
                for (index, device) in virtioDevices.enumerated() {
                    Device(DSDT.virtioDeviceName(index)) {
                        Name("_HID", "LNRO0005")
                        Name("_UID", index)
                        Name("_CCA", one)
                        Name("_CRS", ResourceTemplate {
                            Memory32Fixed(
                                base: UInt32(truncatingIfNeeded: device.base.rawValue),
                                length: UInt32(truncatingIfNeeded: device.size))
                            Interrupt(.edge, .activeHigh, .exclusive, number: device.irq)
                        })
                    }
                }
            },
            Name("\\_S5_", Package([Int(ACPISleepControl.sleepTypeS5), 0])),
        ]
    }
}
