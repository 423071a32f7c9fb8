import SwiftVMBoot

/// The hardware-reduced ACPI sleep control and status registers (one byte
/// each, at the ports the FADT names): a guest `poweroff` writes SLP_TYP=S5
/// with SLP_EN to the control register, and the VMM stops.
///
/// Offset 0 is SLEEP_CONTROL_REG, offset 1 SLEEP_STATUS_REG. Status reads as 0
/// (no wake event pending); Linux writes WAK_STS to it first, which needs no effect.
public final class ACPIPowerControl: BusDevice {
    private let onPowerOff: @Sendable () -> Void

    public init(onPowerOff: @escaping @Sendable () -> Void) {
        self.onPowerOff = onPowerOff
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0)
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        guard offset == 0, let value = data.first else { return }
        if ACPISleepControl.requestsPowerOff(value) { onPowerOff() }
    }
}
