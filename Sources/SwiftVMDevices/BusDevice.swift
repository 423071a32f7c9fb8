/// A device that answers register accesses on a bus.
///
/// Offsets are relative to the start of the range the device was inserted at,
/// so a device never knows where it sits in the address space. Accesses are
/// at most 8 bytes and arrive on vCPU threads, possibly several at once:
/// implementations do their own locking and never block.
public protocol BusDevice: AnyObject, Sendable {
    /// Fills `data` with the value read at `offset`. `data.count` is the access width.
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    /// Takes the value written at `offset`.
    func write(offset: UInt64, from data: UnsafeRawBufferPointer)
}

/// An interrupt the device can raise towards the guest (an edge on a GSI).
///
/// The VMM backs it with a KVM irqfd; tests count the calls.
public protocol InterruptLine: Sendable {
    func trigger()
}

/// Where a device sends bytes it produces (the serial console's output).
public protocol ByteSink: Sendable {
    func write(_ bytes: UnsafeRawBufferPointer)
}
