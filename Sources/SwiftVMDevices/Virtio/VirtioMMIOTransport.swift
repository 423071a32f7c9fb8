import Synchronization
import SwiftVMMemory

/// The virtio-MMIO transport, version 2 (virtio 1.2 §4.2): one 4 KiB window of
/// registers in front of a ``VirtioDevice``.
///
/// Wiring, as the VMM does it:
/// - insert the transport on the MMIO bus at its base, ``windowSize`` long, and
///   describe it to the guest (ACPI `LNRO0005`, or `virtio_mmio.device=`);
/// - register a KVM ioeventfd for a 4-byte write at base + ``queueNotifyOffset``
///   (one per queue index with datamatch, or one without) so queue kicks
///   never reach a vCPU exit, and call ``processQueue(_:)`` from the event
///   loop when it fires;
/// - set ``queueNotificationHandler`` to hand kicks that do reach the bus (no
///   ioeventfd) to the same event loop; without a handler they are processed
///   on the vCPU thread, which only tests and simple embedders should accept;
/// - back the `InterruptLine` with an irqfd on the device's GSI.
///
/// Register accesses arrive on vCPU threads; they take a short lock and never
/// wait for device work.
public final class VirtioMMIOTransport: BusDevice {
    /// Bytes of guest-physical address space the transport decodes.
    public static let windowSize: UInt64 = 0x1000
    /// "virt" in little-endian ASCII (§4.2.2).
    public static let magicValue: UInt32 = 0x7472_6976
    /// The non-legacy register layout.
    public static let version: UInt32 = 2
    /// The MMIO transport has no vendor registry and Linux matches MMIO
    /// devices on the device ID alone, so any value works; these bytes read
    /// "SWVM" in memory order, recognizable in a register dump.
    public static let vendorID: UInt32 = 0x4d56_5753

    /// Where the driver writes a queue index to notify it; the VMM's
    /// ioeventfd goes here.
    public var queueNotifyOffset: UInt64 { Register.queueNotify }

    public let device: any VirtioDevice
    public let notifier: VirtioNotifier
    private let memory: GuestMemory
    private let events: (any EventRegistry)?
    private let maxSizes: [UInt16]
    private let state: Mutex<State>
    private let handler = Mutex<(@Sendable (Int) -> Void)?>(nil)

    /// - Parameters:
    ///   - device: the device model behind the registers.
    ///   - memory: guest RAM, where the driver places rings and buffers.
    ///   - interrupt: the device's interrupt (an irqfd on its GSI).
    /// - Parameter events: the event loop the device's back end subscribes
    ///   to once the driver activates it.
    public init(
        device: any VirtioDevice, memory: GuestMemory, interrupt: any InterruptLine, events: (any EventRegistry)? = nil
    ) {
        self.device = device
        self.memory = memory
        self.events = events
        self.maxSizes = device.queueMaxSizes
        self.notifier = VirtioNotifier(name: Self.name(ofType: device.deviceType), line: interrupt)
        self.state = Mutex(State(maxSizes: device.queueMaxSizes))
    }

    /// Receives the queue index of every QueueNotify write that reaches the
    /// bus, to hand it to the event loop, which then calls ``processQueue(_:)``.
    public var queueNotificationHandler: (@Sendable (Int) -> Void)? {
        get { handler.withLock { $0 } }
        set { handler.withLock { $0 = newValue } }
    }

    /// The device status as the driver reads it.
    public var status: VirtioStatus {
        let base = state.withLock { $0.status }
        return notifier.needsReset ? base.union(.deviceNeedsReset) : base
    }

    /// Serves queue `index`: the device performs the requests the driver made
    /// available, then the guest is interrupted if it asked to be. Called on
    /// the event-loop thread; does nothing unless the device is running.
    /// Returns true when the device stopped at its per-pass limit and more
    /// requests may be waiting.
    @discardableResult
    public func processQueue(_ index: Int) -> Bool {
        let queue = state.withLock { s -> SplitQueue? in
            guard s.status.contains(.driverOK), s.active.indices.contains(index) else { return nil }
            return s.active[index]
        }
        guard let queue else {
            Log.debug("\(notifier.name): notify for queue \(index), which is not running")
            return false
        }
        let more = device.process(queue: index)
        if let failure = queue.failure { notifier.requestReset("queue \(index): \(failure)") }
        if queue.needsNotification() { notifier.signalUsedBuffers() }
        return more && queue.failure == nil
    }

    // MARK: - BusDevice

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        if offset >= Register.config {
            device.readConfig(at: Int(offset - Register.config), into: data)
            return
        }
        guard data.count == 4, offset % 4 == 0 else {
            Log.debug("\(notifier.name): \(data.count)-byte read at 0x\(String(offset, radix: 16)) ignored; registers are 32-bit")
            data.initializeMemory(as: UInt8.self, repeating: 0)
            return
        }
        let value = readRegister(offset)
        data.storeBytes(of: value.littleEndian, as: UInt32.self)
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        if offset >= Register.config {
            device.writeConfig(at: Int(offset - Register.config), from: data)
            return
        }
        guard data.count == 4, offset % 4 == 0 else {
            Log.warning("\(notifier.name): \(data.count)-byte write at 0x\(String(offset, radix: 16)) ignored; registers are 32-bit")
            return
        }
        let value = UInt32(littleEndian: data.loadUnaligned(as: UInt32.self))
        if offset == Register.queueNotify {
            notify(queue: Int(value))
            return
        }
        state.withLock { s in writeRegister(offset, value, &s) }
    }

    private func notify(queue index: Int) {
        guard maxSizes.indices.contains(index) else {
            Log.debug("\(notifier.name): notify for queue \(index), which does not exist")
            return
        }
        if let handler = queueNotificationHandler {
            handler(index)
        } else {
            processQueue(index)
        }
    }

    private static func name(ofType type: UInt32) -> String {
        switch type {
        case VirtioDeviceType.network: "virtio-net"
        case VirtioDeviceType.block: "virtio-blk"
        case VirtioDeviceType.entropy: "virtio-rng"
        case VirtioDeviceType.balloon: "virtio-balloon"
        case VirtioDeviceType.vsock: "virtio-vsock"
        default: "virtio-\(type)"
        }
    }
}

// MARK: - Registers

extension VirtioMMIOTransport {
    /// Register offsets (virtio 1.2 §4.2.2, table "MMIO Device Register Layout").
    enum Register {
        static let magicValue: UInt64 = 0x000
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
        static let shmSel: UInt64 = 0x0ac
        static let shmLenLow: UInt64 = 0x0b0
        static let shmLenHigh: UInt64 = 0x0b4
        static let shmBaseLow: UInt64 = 0x0b8
        static let shmBaseHigh: UInt64 = 0x0bc
        static let configGeneration: UInt64 = 0x0fc
        static let config: UInt64 = 0x100
    }

    /// The driver's view of one queue before DRIVER_OK.
    struct QueueSetup {
        var size: UInt16
        var ready = false
        /// Set when the driver wrote something unusable; only a reset clears it.
        var invalid = false
        var descriptorTable: UInt64 = 0
        var availableRing: UInt64 = 0
        var usedRing: UInt64 = 0
    }

    struct State {
        var status: VirtioStatus = []
        var deviceFeaturesSel: UInt32 = 0
        var driverFeaturesSel: UInt32 = 0
        var driverFeatures: UInt64 = 0
        var featuresBeyond64 = false
        var queueSel: UInt32 = 0
        var queues: [QueueSetup]
        /// The running queues after DRIVER_OK, one entry per queue.
        var active: [SplitQueue?] = []

        init(maxSizes: [UInt16]) {
            queues = maxSizes.map { QueueSetup(size: $0) }
        }
    }

    private var offeredFeatures: UInt64 { device.offeredFeatures | VirtioFeature.version1 }

    private func readRegister(_ offset: UInt64) -> UInt32 {
        switch offset {
        case Register.magicValue: return Self.magicValue
        case Register.version: return Self.version
        case Register.deviceID: return device.deviceType
        case Register.vendorID: return Self.vendorID
        case Register.interruptStatus: return notifier.interruptStatus
        case Register.configGeneration: return notifier.configGeneration
        // No shared memory regions: every SHMSel reads back a length of -1 (§4.2.2).
        case Register.shmLenLow, Register.shmLenHigh, Register.shmBaseLow, Register.shmBaseHigh: return UInt32.max
        case Register.status: return UInt32(status.rawValue)
        default: break
        }
        return state.withLock { s -> UInt32 in
            switch offset {
            case Register.deviceFeatures:
                switch s.deviceFeaturesSel {
                case 0: return UInt32(truncatingIfNeeded: offeredFeatures)
                case 1: return UInt32(truncatingIfNeeded: offeredFeatures >> 32)
                default: return 0
                }
            case Register.queueNumMax:
                return maxSizes.indices.contains(Int(s.queueSel)) ? UInt32(maxSizes[Int(s.queueSel)]) : 0
            case Register.queueReady:
                return s.queues.indices.contains(Int(s.queueSel)) && s.queues[Int(s.queueSel)].ready ? 1 : 0
            default:
                // Write-only and reserved registers read as zero.
                Log.debug("\(notifier.name): read of write-only or unknown register 0x\(String(offset, radix: 16))")
                return 0
            }
        }
    }

    private func writeRegister(_ offset: UInt64, _ value: UInt32, _ s: inout State) {
        switch offset {
        case Register.deviceFeaturesSel: s.deviceFeaturesSel = value
        case Register.driverFeaturesSel: s.driverFeaturesSel = value
        case Register.driverFeatures: writeDriverFeatures(value, &s)
        case Register.queueSel: s.queueSel = value
        case Register.interruptACK: notifier.acknowledge(value)
        case Register.status: writeStatus(value, &s)
        case Register.shmSel: break
        case Register.queueNum, Register.queueReady,
             Register.queueDescLow, Register.queueDescHigh,
             Register.queueDriverLow, Register.queueDriverHigh,
             Register.queueDeviceLow, Register.queueDeviceHigh:
            writeQueueRegister(offset, value, &s)
        default:
            Log.warning("\(notifier.name): write of 0x\(String(value, radix: 16)) to read-only or unknown register 0x\(String(offset, radix: 16)) ignored")
        }
    }

    private func writeDriverFeatures(_ value: UInt32, _ s: inout State) {
        // §3.1.1: features are written after DRIVER and before FEATURES_OK.
        guard s.status.contains(.driver), !s.status.contains(.featuresOK) else {
            Log.warning("\(notifier.name): driver features written in status \(s.status); ignored")
            return
        }
        switch s.driverFeaturesSel {
        case 0: s.driverFeatures = (s.driverFeatures & 0xffff_ffff_0000_0000) | UInt64(value)
        case 1: s.driverFeatures = (s.driverFeatures & 0x0000_0000_ffff_ffff) | UInt64(value) << 32
        default:
            if value != 0 {
                // No feature beyond bit 63 exists; FEATURES_OK will be refused.
                Log.warning("\(notifier.name): driver set features in word \(s.driverFeaturesSel), none offered there")
                s.featuresBeyond64 = true
            }
        }
    }
}

// MARK: - Status

extension VirtioMMIOTransport {
    /// The order a driver sets status bits in (§3.1.1); each needs the one before.
    private static let prerequisites: [(VirtioStatus, VirtioStatus)] = [
        (.driver, .acknowledge),
        (.featuresOK, .driver),
        (.driverOK, .featuresOK),
    ]

    private func writeStatus(_ value: UInt32, _ s: inout State) {
        guard value != 0 else {
            reset(&s)
            return
        }
        let known: VirtioStatus = [.acknowledge, .driver, .featuresOK, .driverOK, .failed]
        // DEVICE_NEEDS_RESET is the device's bit; the driver echoing it back is harmless.
        var requested = VirtioStatus(rawValue: UInt8(truncatingIfNeeded: value)).intersection(known)
        guard value <= 0xff, requested.isSuperset(of: s.status) else {
            Log.warning("\(notifier.name): status write 0x\(String(value, radix: 16)) clears bits of \(s.status) without a reset; ignored")
            return
        }
        for (bit, needed) in Self.prerequisites where requested.contains(bit) && !requested.contains(needed) {
            Log.warning("\(notifier.name): status write 0x\(String(value, radix: 16)) sets \(bit) before \(needed); ignored")
            return
        }
        let added = requested.subtracting(s.status)
        if added.contains(.featuresOK), let problem = featureProblem(s.driverFeatures, beyond64: s.featuresBeyond64) {
            // §2.2.2: the device leaves FEATURES_OK clear so the driver reads
            // back that its subset is not supported.
            Log.warning("\(notifier.name): refusing FEATURES_OK: \(problem)")
            requested.remove(.featuresOK)
            requested.remove(.driverOK)
        }
        if requested.contains(.driverOK), !s.status.contains(.driverOK) {
            activate(&s)
        }
        s.status = requested
    }

    private func featureProblem(_ features: UInt64, beyond64: Bool) -> String? {
        if beyond64 { return "driver accepted features above bit 63, none of which exist" }
        let unoffered = features & ~offeredFeatures
        if unoffered != 0 { return "driver accepted features 0x\(String(unoffered, radix: 16)) that were not offered" }
        if features & VirtioFeature.version1 == 0 { return "driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)" }
        return nil
    }

    private func activate(_ s: inout State) {
        let features = s.driverFeatures
        var active: [SplitQueue?] = []
        for (index, setup) in s.queues.enumerated() {
            guard setup.ready, !setup.invalid else {
                active.append(nil)
                continue
            }
            let layout = SplitQueue.Layout(
                size: setup.size,
                descriptorTable: GuestAddress(setup.descriptorTable),
                availableRing: GuestAddress(setup.availableRing),
                usedRing: GuestAddress(setup.usedRing)
            )
            do {
                active.append(try SplitQueue(
                    memory: memory,
                    layout: layout,
                    eventIndex: features & VirtioFeature.eventIndex != 0,
                    indirectDescriptors: features & VirtioFeature.indirectDescriptors != 0,
                    label: "\(notifier.name) queue \(index)"
                ))
            } catch {
                // QueueReady already checked the layout; this is a second line.
                notifier.requestReset("queue \(index): \(error)")
                active.append(nil)
            }
        }
        s.active = active
        notifier.setDriverReady(true)
        device.activate(
            VirtioActivation(memory: memory, features: features, queues: active, notifier: notifier, events: events))
    }

    /// Writing 0 to Status (§4.2.2.1): queues, features, interrupt status and
    /// the device's own state go back to their initial values.
    private func reset(_ s: inout State) {
        for queue in s.active { queue?.disable() }
        device.reset()
        s = State(maxSizes: maxSizes)
        notifier.clear()
    }
}

// MARK: - Queue setup

extension VirtioMMIOTransport {
    private func writeQueueRegister(_ offset: UInt64, _ value: UInt32, _ s: inout State) {
        let index = Int(s.queueSel)
        guard s.queues.indices.contains(index) else {
            Log.warning("\(notifier.name): queue register 0x\(String(offset, radix: 16)) written for queue \(index), which does not exist")
            return
        }
        if offset == Register.queueReady {
            setQueueReady(index, value == 1, &s)
            return
        }
        guard !s.queues[index].ready else {
            invalidate(index, "register 0x\(String(offset, radix: 16)) written while the queue is ready", &s)
            return
        }
        guard !s.status.contains(.driverOK) else {
            Log.warning("\(notifier.name): queue \(index) register 0x\(String(offset, radix: 16)) written after DRIVER_OK; ignored")
            return
        }
        switch offset {
        case Register.queueNum:
            let max = maxSizes[index]
            guard value > 0, value <= UInt32(max), value & (value - 1) == 0 else {
                invalidate(index, "size \(value) is not a power of two between 1 and \(max)", &s)
                return
            }
            s.queues[index].size = UInt16(value)
        case Register.queueDescLow: setLow(&s.queues[index].descriptorTable, value)
        case Register.queueDescHigh: setHigh(&s.queues[index].descriptorTable, value)
        case Register.queueDriverLow: setLow(&s.queues[index].availableRing, value)
        case Register.queueDriverHigh: setHigh(&s.queues[index].availableRing, value)
        case Register.queueDeviceLow: setLow(&s.queues[index].usedRing, value)
        case Register.queueDeviceHigh: setHigh(&s.queues[index].usedRing, value)
        default: break
        }
    }

    private func setQueueReady(_ index: Int, _ ready: Bool, _ s: inout State) {
        guard ready else {
            if s.status.contains(.driverOK), s.queues[index].ready {
                // A live queue switched off cannot be enabled again before a
                // reset (QueueReady 1 after DRIVER_OK is ignored), so the
                // driver is told rather than left with a queue that is
                // silently dead; the device stops using its rings at once.
                invalidate(index, "switched off (QueueReady 0) after DRIVER_OK", &s)
                return
            }
            s.queues[index].ready = false
            if s.active.indices.contains(index) {
                s.active[index]?.disable()
                s.active[index] = nil
            }
            return
        }
        guard !s.queues[index].ready else { return }
        guard !s.status.contains(.driverOK) else {
            Log.warning("\(notifier.name): queue \(index) enabled after DRIVER_OK; ignored")
            return
        }
        guard !s.queues[index].invalid else {
            Log.warning("\(notifier.name): queue \(index) cannot be enabled: its setup was invalid")
            return
        }
        let setup = s.queues[index]
        let layout = SplitQueue.Layout(
            size: setup.size,
            descriptorTable: GuestAddress(setup.descriptorTable),
            availableRing: GuestAddress(setup.availableRing),
            usedRing: GuestAddress(setup.usedRing)
        )
        do {
            try SplitQueue.validate(layout, memory: memory)
            s.queues[index].ready = true
        } catch {
            invalidate(index, "\(error)", &s)
        }
    }

    private func invalidate(_ index: Int, _ reason: String, _ s: inout State) {
        s.queues[index].invalid = true
        s.queues[index].ready = false
        if s.active.indices.contains(index) {
            s.active[index]?.disable()
            s.active[index] = nil
        }
        notifier.requestReset("queue \(index): \(reason)")
    }

    private func setLow(_ field: inout UInt64, _ value: UInt32) {
        field = (field & 0xffff_ffff_0000_0000) | UInt64(value)
    }

    private func setHigh(_ field: inout UInt64, _ value: UInt32) {
        field = (field & 0x0000_0000_ffff_ffff) | UInt64(value) << 32
    }
}
