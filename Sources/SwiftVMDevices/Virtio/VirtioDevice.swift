import Synchronization
import SwiftVMMemory

/// Feature bits that belong to the transport and the rings rather than to
/// one device type (virtio 1.2 §6, "Reserved Feature Bits").
public enum VirtioFeature {
    /// VIRTIO_F_INDIRECT_DESC: descriptors may point at indirect tables (§2.7.5.3).
    public static let indirectDescriptors: UInt64 = 1 << 28
    /// VIRTIO_F_EVENT_IDX (VIRTIO_RING_F_EVENT_IDX): `used_event` / `avail_event`
    /// replace the ring flags for notification suppression (§2.7.7, §2.7.10).
    public static let eventIndex: UInt64 = 1 << 29
    /// VIRTIO_F_VERSION_1: the device follows virtio 1.x, not the legacy interface.
    /// The MMIO transport always offers it and refuses drivers that do not accept it.
    public static let version1: UInt64 = 1 << 32
}

/// The device status field (virtio 1.2 §2.1).
public struct VirtioStatus: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let acknowledge = VirtioStatus(rawValue: 1)
    public static let driver = VirtioStatus(rawValue: 2)
    public static let driverOK = VirtioStatus(rawValue: 4)
    public static let featuresOK = VirtioStatus(rawValue: 8)
    public static let deviceNeedsReset = VirtioStatus(rawValue: 64)
    public static let failed = VirtioStatus(rawValue: 128)

    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// Device type identifiers (virtio 1.2 §5).
public enum VirtioDeviceType {
    public static let network: UInt32 = 1
    public static let block: UInt32 = 2
    public static let entropy: UInt32 = 4
    public static let balloon: UInt32 = 5
    public static let vsock: UInt32 = 19
}

/// What a device receives when the driver sets DRIVER_OK.
public struct VirtioActivation: Sendable {
    /// Guest RAM, where the rings and every buffer live.
    public let memory: GuestMemory
    /// The features both sides agreed on, VIRTIO_F_VERSION_1 included.
    public let features: UInt64
    /// One entry per queue the device declared; nil where the driver left
    /// the queue unready.
    public let queues: [SplitQueue?]
    /// Raises interrupts and reports fatal device errors.
    public let notifier: VirtioNotifier
    /// The VMM's event loop, for the device's back end: a device subscribes
    /// its descriptors (a tap, sockets, I/O completions) and timers here when
    /// it is activated and removes them on reset. Their handlers run on the
    /// same thread as `process(queue:)`. Nil where no loop runs (unit tests).
    public let events: (any EventRegistry)?

    public init(
        memory: GuestMemory, features: UInt64, queues: [SplitQueue?], notifier: VirtioNotifier,
        events: (any EventRegistry)? = nil
    ) {
        self.memory = memory
        self.features = features
        self.queues = queues
        self.notifier = notifier
        self.events = events
    }

    /// Requests one `process(queue:)` call serves before it yields.
    public static let requestsPerPass = 256

    /// One bounded pass over queue `index`: hands each available chain to
    /// `handle`, which returns the used length, for at most `requestsPerPass`
    /// chains. Returns true when it stopped at the limit (see
    /// `VirtioDevice.process(queue:)`).
    public func serve(queue index: Int, _ handle: (DescriptorChain) -> UInt32) -> Bool {
        guard let queue = queue(at: index) else { return false }
        for _ in 0..<Self.requestsPerPass {
            guard let chain = queue.popAvailable() else { return false }
            queue.addUsed(head: chain.head, length: handle(chain))
        }
        return true
    }

    /// Queue `index` if the driver set it up.
    public func queue(at index: Int) -> SplitQueue? {
        queues.indices.contains(index) ? queues[index] : nil
    }

    public func negotiated(_ feature: UInt64) -> Bool { features & feature == feature }

    /// Interrupts the driver if the used elements added to `queue` since the
    /// last call warrant it under the driver's suppression settings. A device
    /// that completes requests later (an asynchronous backend) calls this
    /// after it adds the used elements.
    public func signalUsedBuffers(on queue: SplitQueue) {
        if queue.needsNotification() { notifier.signalUsedBuffers() }
    }

    /// What follows work on queue `index` that the device did itself (after
    /// a rate limiter's timer, a completion, a backend's readiness), as the
    /// transport does after a notification: a failed queue asks for a reset,
    /// and the guest is interrupted if it asked to be.
    public func settle(_ queue: SplitQueue, index: Int) {
        if let failure = queue.failure { notifier.requestReset("queue \(index): \(failure)") }
        signalUsedBuffers(on: queue)
    }

    /// ``settle(_:index:)`` after a pass the device ran itself, and `again`
    /// on the event loop when the pass stopped at its limit with more waiting.
    public func finishPass(
        on queue: SplitQueue, index: Int, more: Bool, again: @escaping @Sendable () -> Void
    ) {
        settle(queue, index: index)
        if more, queue.failure == nil { events?.post(again) }
    }
}

/// A virtio device model, independent of the transport that exposes it.
///
/// The transport calls `activate` once the driver has set DRIVER_OK and
/// `reset` when the driver writes 0 to the status register; `process(queue:)`
/// runs on the VMM's event-loop thread after the driver notified the queue.
/// It pops descriptor chains, performs the requests and adds used elements;
/// the transport then decides whether to interrupt the guest. Register
/// accesses (config space) arrive on vCPU threads and must not block.
public protocol VirtioDevice: AnyObject, Sendable {
    /// The virtio device ID (§5): 2 for block, 4 for entropy.
    var deviceType: UInt32 { get }
    /// The device-specific features offered to the driver. The transport adds
    /// VIRTIO_F_VERSION_1.
    var offeredFeatures: UInt64 { get }
    /// The largest size of each queue; the count is the number of queues.
    var queueMaxSizes: [UInt16] { get }
    /// Fills `data` with the config space bytes at `offset`; bytes beyond the
    /// config space read as zero.
    func readConfig(at offset: Int, into data: UnsafeMutableRawBufferPointer)
    /// Takes a driver write to the config space.
    func writeConfig(at offset: Int, from data: UnsafeRawBufferPointer)
    /// Starts the device with the rings the driver set up.
    func activate(_ activation: VirtioActivation)
    /// Forgets every request and the activation; the device is as new.
    func reset()
    /// Serves up to `VirtioActivation.requestsPerPass` requests the driver
    /// made available on queue `index`. Returns true when it stopped at that
    /// limit, so more may be waiting: the caller serves its other work and
    /// comes back, and a guest that keeps its queue full cannot hold the
    /// event loop (and with it SIGTERM and the console) to itself.
    @discardableResult
    func process(queue index: Int) -> Bool
}

/// The device's side of the interrupt and error signals of one transport.
///
/// Devices and queues reach the guest through it: used-buffer and
/// configuration-change interrupts, and DEVICE_NEEDS_RESET when the driver
/// handed over something the device cannot safely use. Every field is an
/// atomic, so it can be called from the event loop while vCPUs read the
/// registers.
public final class VirtioNotifier: Sendable {
    /// InterruptStatus bits (§4.2.2).
    public static let usedBufferInterrupt: UInt32 = 1
    public static let configChangeInterrupt: UInt32 = 2

    /// Names the device in log lines, e.g. "virtio-blk".
    public let name: String
    private let line: any InterruptLine
    private let pending = Atomic<UInt32>(0)
    private let generation = Atomic<UInt32>(0)
    private let resetNeeded = Atomic<Bool>(false)
    private let driverReady = Atomic<Bool>(false)

    public init(name: String, line: any InterruptLine) {
        self.name = name
        self.line = line
    }

    /// Tells the driver that used rings changed.
    public func signalUsedBuffers() {
        pending.bitwiseOr(Self.usedBufferInterrupt, ordering: .sequentiallyConsistent)
        line.trigger()
    }

    /// Tells the driver that the config space changed; the device updates the
    /// config space first, so a driver that reads the generation before and
    /// after its config reads sees the change.
    public func signalConfigChange() {
        generation.add(1, ordering: .sequentiallyConsistent)
        raiseConfigInterrupt()
    }

    /// Sets DEVICE_NEEDS_RESET: the device stopped trusting the driver's
    /// setup. A driver that already set DRIVER_OK gets a config-change
    /// interrupt (§2.1.2). Only the first reason is logged.
    public func requestReset(_ reason: String) {
        let (exchanged, _) = resetNeeded.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent)
        guard exchanged else { return }
        Log.warning("\(name): device needs reset: \(reason)")
        if driverReady.load(ordering: .sequentiallyConsistent) { raiseConfigInterrupt() }
    }

    /// The InterruptStatus register.
    public var interruptStatus: UInt32 { pending.load(ordering: .sequentiallyConsistent) }
    /// The ConfigGeneration register.
    public var configGeneration: UInt32 { generation.load(ordering: .sequentiallyConsistent) }
    /// Whether DEVICE_NEEDS_RESET is set.
    public var needsReset: Bool { resetNeeded.load(ordering: .sequentiallyConsistent) }

    func acknowledge(_ bits: UInt32) {
        pending.bitwiseAnd(~bits, ordering: .sequentiallyConsistent)
    }

    func setDriverReady(_ ready: Bool) {
        driverReady.store(ready, ordering: .sequentiallyConsistent)
    }

    /// Clears interrupt status and DEVICE_NEEDS_RESET for a device reset. The
    /// generation keeps counting so a driver never sees an old value again.
    func clear() {
        pending.store(0, ordering: .sequentiallyConsistent)
        resetNeeded.store(false, ordering: .sequentiallyConsistent)
        driverReady.store(false, ordering: .sequentiallyConsistent)
    }

    private func raiseConfigInterrupt() {
        pending.bitwiseOr(Self.configChangeInterrupt, ordering: .sequentiallyConsistent)
        line.trigger()
    }
}
