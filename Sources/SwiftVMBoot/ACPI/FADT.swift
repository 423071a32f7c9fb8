import SwiftVMMemory

/// The Fixed ACPI Description Table (signature "FACP", ACPI 6.5 §5.2.9),
/// revision 6.5, in the hardware-reduced profile (§4.1): no PM1/GPE register
/// blocks, no SCI, no FACS. What it still carries:
///
/// - X_DSDT, the DSDT's address;
/// - RESET_REG: a byte write of 0xFE to I/O port 0x64, the i8042 reset that
///   swiftvm already handles, so a guest that reboots through ACPI lands there;
/// - SLEEP_CONTROL_REG and SLEEP_STATUS_REG at ``X86Layout/acpiSleepControlPort``
///   and ``X86Layout/acpiSleepStatusPort``, the hardware-reduced way to reach
///   S5 (power off); see ``ACPISleepControl``;
/// - the hypervisor vendor identity "SWIFTVM".
enum FADT {
    static let size = 276
    static let revision: UInt8 = 6
    static let minorRevision: UInt8 = 5

    /// Fixed Feature Flags (§5.2.9, table "Fixed ACPI Description Table
    /// Fixed Feature Flags").
    enum Flag {
        /// No fixed power button; a power button, if any, is a device.
        static let powerButton: UInt32 = 1 << 4
        /// No fixed sleep button.
        static let sleepButton: UInt32 = 1 << 5
        /// RESET_REG is valid.
        static let resetRegisterSupported: UInt32 = 1 << 10
        /// Hardware-reduced ACPI: none of the fixed hardware exists.
        static let hardwareReduced: UInt32 = 1 << 20
    }

    /// IA-PC Boot Architecture Flags (§5.2.9.3).
    enum BootArchitecture {
        // LEGACY_DEVICES (bit 0) stays clear: every ISA device swiftvm has
        // is described in the DSDT.

        /// An i8042 is present at ports 0x60/0x64.
        static let i8042: UInt16 = 1 << 1
        static let vgaNotPresent: UInt16 = 1 << 2
        /// There is no PCI, so nothing can signal MSIs.
        static let msiNotSupported: UInt16 = 1 << 3
        /// The OS must not take over PCIe ASPM; there is no PCIe.
        static let pcieASPMControls: UInt16 = 1 << 4
        /// No MC146818 at ports 0x70/0x71; the guest reads wall time from kvmclock.
        static let cmosRTCNotPresent: UInt16 = 1 << 5
    }

    static let flags = Flag.powerButton | Flag.sleepButton | Flag.resetRegisterSupported | Flag.hardwareReduced
    static let bootArchitecture = BootArchitecture.i8042 | BootArchitecture.vgaNotPresent
        | BootArchitecture.msiNotSupported | BootArchitecture.pcieASPMControls | BootArchitecture.cmosRTCNotPresent

    static let resetRegister = GenericAddress.ioPortByte(X86Layout.i8042CommandPort)
    /// The i8042 "pulse output line" command that resets the CPU.
    static let resetValue: UInt8 = 0xfe
    static let sleepControlRegister = GenericAddress.ioPortByte(X86Layout.acpiSleepControlPort)
    static let sleepStatusRegister = GenericAddress.ioPortByte(X86Layout.acpiSleepStatusPort)
    static let hypervisorVendor = "SWIFTVM"

    /// Field offsets (§5.2.9, table "FADT Format").
    enum Offset {
        static let iapcBootArch = 109
        static let flags = 112
        static let resetRegister = 116
        static let resetValue = 128
        static let minorVersion = 131
        static let xDSDT = 140
        static let sleepControlRegister = 244
        static let sleepStatusRegister = 256
        static let hypervisorVendor = 268
    }

    static func bytes(dsdt: GuestAddress) -> [UInt8] {
        var table = SystemDescriptionHeader.bytes(signature: "FACP", revision: revision)
        // FIRMWARE_CTRL through CENTURY (offsets 36-108) are zero: no FACS,
        // the 32-bit DSDT field is superseded by X_DSDT, PM profile
        // "unspecified", and the rest describe fixed hardware that a
        // hardware-reduced platform does not have.
        table += [UInt8](repeating: 0, count: Offset.iapcBootArch - table.count)
        table.appendLittleEndian(bootArchitecture)
        table.append(0)  // reserved
        table.appendLittleEndian(flags)
        resetRegister.encode(into: &table)
        table.append(resetValue)
        table.appendLittleEndian(UInt16(0))  // ARM_BOOT_ARCH
        table.append(minorRevision)
        table.appendLittleEndian(UInt64(0))  // X_FIRMWARE_CTRL: no FACS
        table.appendLittleEndian(dsdt.rawValue)
        // X_PM1a_EVT_BLK through X_GPE1_BLK: eight unused register blocks.
        table += [UInt8](repeating: 0, count: 8 * GenericAddress.size)
        sleepControlRegister.encode(into: &table)
        sleepStatusRegister.encode(into: &table)
        table.appendPaddedASCII(hypervisorVendor, width: 8)
        precondition(table.count == size, "FADT layout drifted from ACPI 6.5")
        SystemDescriptionHeader.seal(&table)
        return table
    }
}
