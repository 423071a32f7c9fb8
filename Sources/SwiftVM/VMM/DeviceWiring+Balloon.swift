import SwiftVMDevices
import SwiftVMMemory

extension DeviceWiring {
    /// A balloon whose reclaimed pages go back to the host through `memory`.
    func makeBalloonDevice(_ balloon: BalloonConfig, memory: GuestMemory) throws(VMMError) -> VirtioBalloon {
        let guestMiB = Int(memory.size >> 20)
        do { try balloon.validate(memoryMiB: guestMiB) } catch { throw VMMError(.usage, error.description) }
        // Seconds to milliseconds; an interval past a day is as good as off
        // and keeps the timer arithmetic far from overflow.
        let maxSeconds = 24 * 60 * 60
        guard balloon.statsPollingSeconds <= maxSeconds else {
            throw VMMError(.usage, "balloon statistics interval \(balloon.statsPollingSeconds) s is too long; give at most \(maxSeconds) s (a day), or 0 to turn statistics off")
        }
        // validate() bounded the target by guest RAM, so the pages fit a u32.
        guard let pages = UInt32(exactly: UInt64(balloon.targetMiB) * 256) else {
            throw VMMError(.usage, "balloon target \(balloon.targetMiB) MiB does not fit the device's 32-bit page count")
        }
        let settings = VirtioBalloon.Settings(
            targetPages: pages, deflateOnOOM: balloon.deflateOnOOM,
            statsIntervalMilliseconds: balloon.statsPollingSeconds * 1000,
            freePageReporting: balloon.freePageReporting)
        return VirtioBalloon(settings: settings, guestMemoryBytes: memory.size)
    }
}
