/// Lets a guest announce that it has finished booting, so the VMM can
/// measure boot time.
///
/// This follows Firecracker's convention: the VMM maps a page of MMIO space
/// for this device, and the guest's init writes the magic byte 123 (0x7b) to
/// the first byte of that page once user space is up. Nothing else in the
/// page means anything, and reads return zero, so a guest that probes the
/// page learns nothing and changes nothing.
public final class BootTimer: BusDevice {
    /// The byte a guest writes at offset 0 to say it has booted.
    public static let bootCompleteMagic: UInt8 = 123

    private let onBoot: @Sendable (UInt8) -> Void

    /// - Parameter onBoot: called with the magic value each time the guest
    ///   writes it; it runs on the vCPU thread, so it should only record the
    ///   time or post a message.
    public init(onBoot: @escaping @Sendable (UInt8) -> Void) {
        self.onBoot = onBoot
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0)
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        // A wider store counts when its little-endian value is 123, so it
        // does not matter whether the guest writes a byte or a word.
        guard offset == 0, let first = data.first, first == Self.bootCompleteMagic,
            data.dropFirst().allSatisfy({ $0 == 0 })
        else { return }
        onBoot(first)
    }
}
