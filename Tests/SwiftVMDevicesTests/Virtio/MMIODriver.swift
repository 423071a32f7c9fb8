import SwiftVMDevices
import Synchronization
import SwiftVMMemory

/// Drives a ``VirtioMMIOTransport`` through its registers as the guest's
/// virtio_mmio driver would, with 16 MiB of guest RAM at address 0. Queue
/// notifications go to a recorder, and ``runEventLoop()`` serves them the way
/// the VMM's event loop does.
final class MMIODriver {
    enum Register {
        static let magic: UInt64 = 0x000
        static let version: UInt64 = 0x004
        static let deviceID: UInt64 = 0x008
        static let vendorID: UInt64 = 0x00c
        static let deviceFeatures: UInt64 = 0x010
        static let deviceFeaturesSel: UInt64 = 0x014
        static let driverFeatures: UInt64 = 0x020
        static let driverFeaturesSel: UInt64 = 0x024
        static let queueSel: UInt64 = 0x030
        static let queueNumMax: UInt64 = 0x034
        static let queueNum: UInt64 = 0x038
        static let queueReady: UInt64 = 0x044
        static let queueNotify: UInt64 = 0x050
        static let interruptStatus: UInt64 = 0x060
        static let interruptACK: UInt64 = 0x064
        static let status: UInt64 = 0x070
        static let queueDescLow: UInt64 = 0x080
        static let queueDescHigh: UInt64 = 0x084
        static let queueDriverLow: UInt64 = 0x090
        static let queueDriverHigh: UInt64 = 0x094
        static let queueDeviceLow: UInt64 = 0x0a0
        static let queueDeviceHigh: UInt64 = 0x0a4
        static let configGeneration: UInt64 = 0x0fc
        static let config: UInt64 = 0x100
    }

    enum Status {
        static let acknowledge: UInt32 = 1
        static let driver: UInt32 = 2
        static let driverOK: UInt32 = 4
        static let featuresOK: UInt32 = 8
        static let needsReset: UInt32 = 64
        static let failed: UInt32 = 128
    }

    let memory: GuestMemory
    let interrupt = CountingInterruptLine()
    let kicks = CallRecorder<Int>()
    let transport: VirtioMMIOTransport
    private var kicksServed = 0

    /// - Parameter events: the event registry the device gets at activation.
    init(device: any VirtioDevice, events: (any EventRegistry)? = nil) throws {
        memory = try GuestMemory(regions: [(GuestAddress(0), 16 << 20)])
        transport = VirtioMMIOTransport(device: device, memory: memory, interrupt: interrupt, events: events)
        let kicks = kicks
        transport.queueNotificationHandler = { kicks.record($0) }
    }

    func read(_ offset: UInt64) -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { transport.read(offset: offset, into: $0) }
        return UInt32(littleEndian: value)
    }

    func write(_ offset: UInt64, _ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { transport.write(offset: offset, from: $0) }
    }

    var status: UInt32 { read(Register.status) }

    func addStatus(_ bits: UInt32) { write(Register.status, status | bits) }

    var deviceFeatures: UInt64 {
        write(Register.deviceFeaturesSel, 0)
        let low = UInt64(read(Register.deviceFeatures))
        write(Register.deviceFeaturesSel, 1)
        return low | UInt64(read(Register.deviceFeatures)) << 32
    }

    func writeDriverFeatures(_ features: UInt64) {
        write(Register.driverFeaturesSel, 0)
        write(Register.driverFeatures, UInt32(truncatingIfNeeded: features))
        write(Register.driverFeaturesSel, 1)
        write(Register.driverFeatures, UInt32(truncatingIfNeeded: features >> 32))
    }

    /// Programs queue `index` with `queue`'s layout and enables it.
    func setUpQueue(_ index: Int, _ queue: MockDriverQueue) {
        write(Register.queueSel, UInt32(index))
        write(Register.queueNum, UInt32(queue.size))
        writeAddress(Register.queueDescLow, queue.descriptorTable)
        writeAddress(Register.queueDriverLow, queue.availableRing)
        writeAddress(Register.queueDeviceLow, queue.usedRing)
        write(Register.queueReady, 1)
    }

    func writeAddress(_ low: UInt64, _ address: GuestAddress) {
        write(low, UInt32(truncatingIfNeeded: address.rawValue))
        write(low + 4, UInt32(truncatingIfNeeded: address.rawValue >> 32))
    }

    /// Resets the device and runs the first half of the init sequence
    /// (§3.1.1): ACKNOWLEDGE, DRIVER, feature negotiation and FEATURES_OK.
    /// Returns the status read back, which lacks FEATURES_OK if the device
    /// refused the features.
    @discardableResult
    func negotiate(features: UInt64? = nil) -> UInt32 {
        write(Register.status, 0)
        addStatus(Status.acknowledge)
        addStatus(Status.driver)
        writeDriverFeatures(features ?? deviceFeatures)
        addStatus(Status.featuresOK)
        return status
    }

    /// The whole init sequence: negotiation, queue setup, DRIVER_OK.
    /// Returns the final status.
    @discardableResult
    func initialize(features: UInt64? = nil, queues: [MockDriverQueue]) -> UInt32 {
        guard negotiate(features: features) & Status.featuresOK != 0 else { return status }
        for (index, queue) in queues.enumerated() { setUpQueue(index, queue) }
        addStatus(Status.driverOK)
        return status
    }

    /// Writes QueueNotify, then serves the notification like the event loop.
    func kick(_ queue: Int = 0) {
        write(Register.queueNotify, UInt32(queue))
        runEventLoop()
    }

    /// Calls `processQueue` for every notification not yet served.
    func runEventLoop() {
        let pending = kicks.arguments.dropFirst(kicksServed)
        kicksServed += pending.count
        for index in pending { transport.processQueue(index) }
    }

    /// Reads and acknowledges InterruptStatus, as the guest's handler does.
    @discardableResult
    func acknowledgeInterrupt() -> UInt32 {
        let pending = read(Register.interruptStatus)
        write(Register.interruptACK, pending)
        return pending
    }
}

/// A device that records what the transport tells it.
final class SpyDevice: VirtioDevice {
    private let log = Mutex<(features: [UInt64], resets: Int, processed: [Int], configWrites: [(Int, [UInt8])])>(([], 0, [], []))
    let offeredFeatures: UInt64
    let queueMaxSizes: [UInt16]

    init(features: UInt64 = 1 << 3, queueMaxSizes: [UInt16] = [16, 16]) {
        self.offeredFeatures = features
        self.queueMaxSizes = queueMaxSizes
    }

    var activations: [UInt64] { log.withLock { $0.features } }
    var resets: Int { log.withLock { $0.resets } }
    var processed: [Int] { log.withLock { $0.processed } }
    var configWrites: [(Int, [UInt8])] { log.withLock { $0.configWrites } }
    private(set) var lastActivation: VirtioActivation? {
        get { activation.withLock { $0 } }
        set { activation.withLock { $0 = newValue } }
    }
    private let activation = Mutex<VirtioActivation?>(nil)

    var deviceType: UInt32 { 0x7f }

    func readConfig(at offset: Int, into data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count { data[i] = UInt8(truncatingIfNeeded: offset + i) }
    }

    func writeConfig(at offset: Int, from data: UnsafeRawBufferPointer) {
        log.withLock { $0.configWrites.append((offset, Array(data))) }
    }

    func activate(_ activation: VirtioActivation) {
        log.withLock { $0.features.append(activation.features) }
        lastActivation = activation
    }

    func reset() {
        log.withLock { $0.resets += 1 }
        lastActivation = nil
    }

    func process(queue index: Int) -> Bool {
        log.withLock { $0.processed.append(index) }
        return false
    }
}
