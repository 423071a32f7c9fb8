import Glibc
import SwiftVMHost
import SwiftVMDevices
import SwiftVMMemory
import SwiftVMBoot

/// The guest's devices as the vCPUs reach them: the port-I/O and MMIO buses,
/// the irqfd behind each interrupt line, and the handles the event loop needs.
struct DeviceWiring: @unchecked Sendable {
    let vm: VirtualMachine
    private(set) var portBus = Bus()
    private(set) var mmioBus = Bus()
    /// irqfds stay open for the VM's lifetime.
    private(set) var interruptEventFDs: [EventFD] = []
    private(set) var serial: Serial8250?
    /// Signalled when the UART's receive FIFO has room again.
    let serialInputResume: EventFD
    /// Where the guest's console output goes, through a bounded buffer.
    private(set) var consoleOutput: ConsoleOutput?
    /// Watches the serial console for the signatures of a failed boot.
    private(set) var console: ConsoleWatcher?
    /// The keyboard controller, through which the host sends Ctrl-Alt-Del.
    private(set) var i8042: I8042?
    /// The virtio devices, each with the ioeventfd KVM signals on a queue notify.
    private(set) var virtio: [VirtioEndpoint] = []
    /// The balloon, which the VM's owner steers while the guest runs.
    private(set) var balloon: VirtioBalloon?

    init(vm: VirtualMachine) throws(VMMError) {
        self.vm = vm
        do { serialInputResume = try EventFD(nonBlocking: true) } catch { throw VMMError(.hostResource, "\(error)") }
    }

    /// An edge-triggered interrupt line on `gsi`, backed by a KVM irqfd.
    mutating func interruptLine(gsi: UInt32) throws(VMMError) -> IRQFDLine {
        do {
            let eventfd = try EventFD()
            try vm.registerIRQFD(eventfd, gsi: gsi)
            interruptEventFDs.append(eventfd)
            return IRQFDLine(eventfd: eventfd)
        } catch let error as KVMError {
            throw .kvm(error, while: "wiring interrupt \(gsi)")
        } catch {
            throw VMMError(.hostResource, "\(error)")
        }
    }

    /// COM1, the i8042, the boot timer and, with ACPI, the sleep registers.
    mutating func attachLegacyDevices(_ config: VMConfig, latch: ExitLatch, clock: BootClock) throws(VMMError) {
        let resume = serialInputResume
        let output = try ConsoleOutput.open(config.serialOutput, capacity: max(4096, config.consoleBufferBytes))
        consoleOutput = output
        let console = ConsoleWatcher(forwardingTo: output)
        self.console = console
        let serial = Serial8250(
            interrupt: try interruptLine(gsi: X86Layout.com1IRQ),
            output: console,
            inputSpaceAvailable: { resume.signal() })
        let i8042 = I8042(interrupt: try interruptLine(gsi: X86Layout.i8042IRQ), onReset: { latch.finish(.reset) })
        let report = config.reportBootTime
        let bootTimer = BootTimer(onBoot: { _ in if report { clock.report() } })
        do {
            try portBus.insert(serial, base: UInt64(X86Layout.com1Port), size: 8)
            try portBus.insert(i8042, base: UInt64(X86Layout.i8042DataPort), size: 5)
            try mmioBus.insert(bootTimer, base: X86Layout.bootTimer.rawValue, size: 0x1000)
            if config.acpi {
                let power = ACPIPowerControl(onPowerOff: { latch.finish(.powerOff) })
                try portBus.insert(power, base: UInt64(X86Layout.acpiSleepControlPort), size: 2)
            }
        } catch { throw VMMError(.internalError, "placing devices: \(error)") }
        self.serial = serial
        self.i8042 = i8042
    }

    /// One virtio-mmio transport per slot: a window on the MMIO bus, an irqfd
    /// on its GSI, and an ioeventfd on its QueueNotify register so that kicks
    /// go to the event loop without a vCPU exit.
    mutating func attachVirtioDevices(
        _ config: VMConfig, memory: GuestMemory, backends: [String: any BlockBackend], events: EventLoop
    ) throws(VMMError) {
        for slot in config.virtioSlots {
            let device: any VirtioDevice
            let name: String
            switch slot.kind {
            case .block(let drive):
                guard let backend = backends[drive.id] else {
                    throw VMMError(.internalError, "no backend was opened for drive \(drive.id)")
                }
                let settings = BlockDriveConfig(id: drive.id, readOnly: drive.readOnly, cacheWriteback: drive.cacheType == .writeback)
                do {
                    device = try VirtioBlock(
                        config: settings, backend: backend, rateLimiter: drive.rateLimiter ?? RateLimiterConfig())
                } catch {
                    throw VMMError(.usage, "drive \(drive.id): \(error)")
                }
                name = "virtio-blk \(drive.id)"
            case .net(let net):
                device = try makeNetDevice(net)
                name = "virtio-net \(net.id)"
            case .vsock(let vsock):
                device = try makeVsockDevice(vsock)
                name = "virtio-vsock"
            case .balloon(let balloon):
                let made = try makeBalloonDevice(balloon, memory: memory)
                self.balloon = made
                device = made
                name = "virtio-balloon"
            case .entropy:
                device = VirtioRNG(rateLimiter: config.entropyRateLimiter ?? RateLimiterConfig())
                name = "virtio-rng"
            }
            let transport = VirtioMMIOTransport(
                device: device, memory: memory, interrupt: try interruptLine(gsi: slot.window.irq), events: events)
            let notify: EventFD
            do {
                notify = try EventFD(nonBlocking: true)
                try vm.registerIOEventFD(
                    notify, mmioAddress: slot.window.base.rawValue + transport.queueNotifyOffset, length: 4)
            } catch let error as KVMError {
                throw .kvm(error, while: "registering the queue doorbell of \(name)")
            } catch {
                throw VMMError(.hostResource, "\(error)")
            }
            // A kick that reaches the bus anyway is handed to the event loop too.
            transport.queueNotificationHandler = { _ in notify.signal() }
            do { try mmioBus.insert(transport, base: slot.window.base.rawValue, size: slot.window.size) } catch {
                throw VMMError(.internalError, "placing \(name): \(error)")
            }
            virtio.append(VirtioEndpoint(name: name, transport: transport, notify: notify, queueCount: device.queueMaxSizes.count))
        }
    }
}

/// A virtio device as the event loop serves it.
struct VirtioEndpoint: Sendable {
    let name: String
    let transport: VirtioMMIOTransport
    /// Signalled by KVM when the guest writes QueueNotify.
    let notify: EventFD
    let queueCount: Int

    /// Serves every queue: one doorbell covers them all, and a queue with
    /// nothing new costs one index comparison. A queue that still has work
    /// after its pass rings the doorbell again, so the event loop serves its
    /// other events in between.
    func serve() {
        notify.drain()
        var more = false
        for queue in 0..<queueCount where transport.processQueue(queue) { more = true }
        if more { notify.signal() }
    }
}
