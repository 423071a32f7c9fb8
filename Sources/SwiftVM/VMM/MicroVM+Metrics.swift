import SwiftVMDevices

/// Counters of a running VM, for metrics: cumulative since the VM was built.
public struct VMMetrics: Sendable {
    /// One device's counters (a virtio device, named as in logs).
    public struct Device: Sendable {
        public var name: String
        public var counters: [(name: String, value: UInt64)]
    }

    /// Each vCPU's KVM exits by reason (`exit_io_in`, `exit_mmio_write`, ...).
    public var vcpus: [[(name: String, value: UInt64)]]
    /// Bytes the guest wrote to its console, and read from it.
    public var uartBytesOut: UInt64
    public var uartBytesIn: UInt64
    /// Console output dropped because its destination did not keep up.
    public var uartBytesDropped: UInt64
    public var devices: [Device]
}

extension MicroVM {
    /// The VM's counters now.
    public var metrics: VMMetrics {
        let devices = machine.devices.virtio.compactMap { endpoint -> VMMetrics.Device? in
            guard let counting = endpoint.transport.device as? any CountingDevice else { return nil }
            return VMMetrics.Device(name: endpoint.name, counters: counting.metricCounters)
        }
        return VMMetrics(
            vcpus: machine.vcpuCounters.map(\.snapshot),
            uartBytesOut: UInt64(machine.devices.console?.bytesSeen ?? 0),
            uartBytesIn: UInt64(machine.consoleBytesIn),
            uartBytesDropped: UInt64(droppedConsoleBytes),
            devices: devices)
    }
}
