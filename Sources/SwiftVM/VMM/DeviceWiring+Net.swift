import SwiftVMDevices

extension DeviceWiring {
    /// A virtio-net device on the TAP `net.tapName`, opened now so that a
    /// missing, busy or unusable TAP is reported before the guest boots.
    func makeNetDevice(_ net: NetConfig) throws(VMMError) -> any VirtioDevice {
        let backend = try TapBackend.open(tapName: net.tapName, id: net.id)
        return VirtioNet(
            id: net.id, mac: net.mac, backend: backend, receiveLimiter: net.rxRateLimiter ?? RateLimiterConfig(),
            transmitLimiter: net.txRateLimiter ?? RateLimiterConfig())
    }
}
