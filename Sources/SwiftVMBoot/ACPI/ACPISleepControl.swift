/// What a guest writes to the FADT's SLEEP_CONTROL_REG (the byte at
/// ``X86Layout/acpiSleepControlPort``) and how the VMM reads it.
///
/// ACPI 6.5 §4.8.3.7 lays the register out as SLP_TYP in bits 2-4 and
/// SLP_EN in bit 5. To power off, Linux evaluates `\_S5_` (here
/// `Package() {5, 0}`), takes SLP_TYPa = 5, and writes
/// `5 << 2 | 0x20 = 0x34`. swiftvm describes no other sleep state, so a
/// guest never asks for S1-S4. A byte without SLP_EN is not a request.
///
/// Linux also writes 0x80 (WAK_STS) to SLEEP_STATUS_REG first, to clear it;
/// the VMM can ignore status writes and read the status register as 0.
public enum ACPISleepControl {
    /// SLP_TYP for S5, soft-off: the first element of the DSDT's `\_S5_`.
    public static let sleepTypeS5: UInt8 = 5
    /// SLP_EN: start the transition to the state in SLP_TYP.
    public static let sleepEnable: UInt8 = 1 << 5
    static let sleepTypeShift: UInt8 = 2
    static let sleepTypeMask: UInt8 = 0b111 << 2
    /// The byte a guest writes to power off: 0x34.
    public static let powerOffValue: UInt8 = sleepTypeS5 << sleepTypeShift | sleepEnable

    /// The SLP_TYP a write asks for, or nil when SLP_EN is clear.
    public static func requestedSleepType(_ value: UInt8) -> UInt8? {
        guard value & sleepEnable != 0 else { return nil }
        return (value & sleepTypeMask) >> sleepTypeShift
    }

    /// True when writing `value` to SLEEP_CONTROL_REG asks for S5.
    public static func requestsPowerOff(_ value: UInt8) -> Bool {
        requestedSleepType(value) == sleepTypeS5
    }
}
