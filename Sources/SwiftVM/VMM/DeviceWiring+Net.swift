import SwiftVMDevices

extension DeviceWiring {
    /// A virtio-net device on the TAP `net.tapName`, opened now so that a
    /// missing or busy TAP is reported before the guest boots.
    func makeNetDevice(_ net: NetConfig) throws(VMMError) -> any VirtioDevice {
        throw VMMError(.usage, "network interface \(net.id): virtio-net is not built yet")
    }
}
