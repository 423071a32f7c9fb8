import SwiftVMDevices

extension DeviceWiring {
    /// A hybrid vsock device listening on `vsock.udsPath`.
    func makeVsockDevice(_ vsock: VsockConfig) throws(VMMError) -> any VirtioDevice {
        throw VMMError(.usage, "vsock: virtio-vsock is not built yet")
    }
}
