import SwiftVMDevices
import SwiftVMMemory

extension DeviceWiring {
    /// A balloon whose reclaimed pages go back to the host through `memory`.
    func makeBalloonDevice(_ balloon: BalloonConfig, memory: GuestMemory) throws(VMMError) -> VirtioBalloon {
        throw VMMError(.usage, "balloon: virtio-balloon is not built yet")
    }
}
