import SwiftVMDevices

extension DeviceWiring {
    /// A hybrid vsock device: the Unix socket at `vsock.udsPath` is created
    /// and listening now, so that a bad or taken path is reported before the
    /// guest boots; host programs that connect early wait in its backlog
    /// until the guest's driver starts the device.
    func makeVsockDevice(_ vsock: VsockConfig) throws(VMMError) -> any VirtioDevice {
        let host = try VsockUnixHost(path: vsock.udsPath)
        return VirtioVsock(guestCID: UInt64(vsock.guestCID), host: host)
    }
}
