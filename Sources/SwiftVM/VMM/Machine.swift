import Glibc
import Synchronization
import SwiftVMHost
import SwiftVMDevices
import SwiftVMMemory
import SwiftVMBoot
import SwiftVMInspect

/// The assembled machine. `build` is the one place that decides what the
/// guest gets; `start`, `wait`, `pause` and `resume` own the threads.
final class Machine: @unchecked Sendable {
    let kvm: KVM
    let vm: VirtualMachine
    let memory: GuestMemory
    let vcpus: [VCPU]
    let devices: DeviceWiring
    let latch: ExitLatch
    /// The device event loop; parts of the VMM and embedders subscribe to it.
    let events: EventLoop
    private let config: VMConfig
    private let mailbox: VCPUStateMailbox
    private let gate: PauseGate
    /// The kernel's symbol table, read at the first report that needs it.
    private let symbols = Mutex<KernelSymbols??>(nil)
    /// The kernel file, kept open when the threads run under seccomp filters
    /// (which let no thread open a file): reports read its symbols from it.
    private let kernelImage = Mutex<FileImage?>(nil)
    /// Each vCPU's exits by reason.
    let vcpuCounters: [DeviceCounters]
    /// The console's input side, once started (it counts what the guest got).
    private let consoleInput = Mutex<ConsoleInput?>(nil)

    enum Phase {
        case created
        /// The event loop's thread first, then one per vCPU.
        case running(loop: HostThread, vcpus: [HostThread], started: ContinuousClock.Instant)
        case finished(VMExitReason)
    }
    private let phase = Mutex<Phase>(.created)
    /// Held while the first `wait` tears the machine down; later ones queue on it.
    private let teardown = Mutex(())
    /// How long the run lasted, for diagnosis.
    private let runDuration = Mutex<Double>(0)

    private init(
        kvm: KVM, vm: VirtualMachine, memory: GuestMemory, vcpus: [VCPU], devices: DeviceWiring, latch: ExitLatch,
        events: EventLoop, config: VMConfig, mailbox: VCPUStateMailbox, gate: PauseGate
    ) {
        self.kvm = kvm
        self.vm = vm
        self.memory = memory
        self.vcpus = vcpus
        self.devices = devices
        self.latch = latch
        self.events = events
        self.config = config
        self.mailbox = mailbox
        self.gate = gate
        vcpuCounters = vcpus.map { _ in DeviceCounters(VCPURunner.Exit.self) }
    }

    static func build(_ config: VMConfig) throws(VMMError) -> Machine {
        let clock = BootClock()
        do { try config.validate() } catch { throw VMMError(.usage, error.description) }

        // Inputs first: a wrong file is reported even on a host without KVM,
        // and guest RAM is filled before KVM is opened.
        let (memory, kernel, kernelFile) = try loadGuest(config)
        try preflightCommandLine(config, kernel: kernelFile)
        let backends = try openDrives(config)

        let latch: ExitLatch
        let mailbox: VCPUStateMailbox
        let gate: PauseGate
        let events: EventLoop
        do {
            latch = try ExitLatch()
            mailbox = try VCPUStateMailbox()
            gate = try PauseGate(vcpuCount: config.vcpuCount)
            events = try EventLoop()
        } catch { throw VMMError(.hostResource, "\(error)") }
        let (kvm, vm) = try createVM(config, memory: memory)
        var devices = try DeviceWiring(vm: vm)
        try devices.attachLegacyDevices(config, latch: latch, clock: clock)
        try devices.attachVirtioDevices(config, memory: memory, backends: backends, events: events)
        let vcpus = try createVCPUs(kvm: kvm, vm: vm, config: config, entry: kernel.entry)
        return Machine(
            kvm: kvm, vm: vm, memory: memory, vcpus: vcpus, devices: devices, latch: latch, events: events,
            config: config, mailbox: mailbox, gate: gate)
    }

    /// Opens KVM and creates the VM with its in-kernel devices and guest RAM.
    private static func createVM(_ config: VMConfig, memory: GuestMemory) throws(VMMError) -> (KVM, VirtualMachine) {
        let kvm: KVM
        do { kvm = try KVM(path: config.kvmPath) } catch { throw .kvm(error, while: "opening KVM") }
        let vm: VirtualMachine
        do {
            vm = try kvm.createVM()
            try vm.setTSSAddress(X86Layout.kvmTSS.rawValue)
            try vm.createIRQChip()
            try vm.createPIT()
        } catch { throw .kvm(error, while: "creating the VM") }
        for (slot, region) in memory.regions.enumerated() {
            do {
                try vm.setMemoryRegion(
                    slot: UInt32(slot), guestAddress: region.start.rawValue, size: region.size,
                    host: memory.hostAddress(ofRegion: slot))
            } catch { throw .kvm(error, while: "registering guest RAM") }
        }
        return (kvm, vm)
    }

    var runSeconds: Double { runDuration.withLock { $0 } }

    /// Bytes the guest's UART received from the console input.
    var consoleBytesIn: Int { consoleInput.withLock { $0?.bytesDelivered } ?? 0 }

    var isRunning: Bool {
        phase.withLock { if case .running = $0 { true } else { false } }
    }

    var isPaused: Bool { gate.isPaused }

    /// Subscribes the machine's own event sources, then starts the event loop
    /// and one thread per vCPU. The vCPU kick signal's handler is installed
    /// once per process; nothing else process-wide is touched.
    func start() throws(VMMError) {
        try phase.withLock { (phase) throws(VMMError) in
            guard case .created = phase else {
                throw VMMError(.usage, "the VM was already started; a MicroVM runs once")
            }
            Signals.installVCPUKickHandler()
            try subscribeSources()
            // Seccomp (docs/security.md): each thread loads its filter before anything else.
            let filters = config.seccompFilters
            if filters != nil { kernelImage.withLock { $0 = try? FileImage(path: config.kernelPath, role: "kernel") } }
            let latch = latch
            let loop: HostThread
            var threads: [HostThread] = []
            do {
                loop = try HostThread.spawn(name: "swiftvm-events") { [self] in
                    do { try filters?.install(.events) } catch { return latch.finish(.vmmError("\(error)")) }
                    Signals.keepSIGPIPEOffThisThread()
                    events.run { latch.finish(.vmmError($0)) }
                }
            } catch { throw VMMError(.hostResource, "starting the event loop: \(error)") }
            for (vcpu, counters) in zip(vcpus, vcpuCounters) {
                let runner = VCPURunner(
                    vcpu: vcpu, portBus: devices.portBus, mmioBus: devices.mmioBus, memory: memory, latch: latch,
                    mailbox: mailbox, gate: gate, counters: counters)
                do {
                    threads.append(try HostThread.spawn(name: "swiftvm-vcpu\(vcpu.id)") {
                        do { try filters?.install(.vcpu) } catch { return latch.finish(.vmmError("\(error)")) }
                        runner.run()
                    })
                } catch {
                    // The threads already started stop through the latch in `wait`.
                    latch.finish(.vmmError("starting vCPU \(vcpu.id): \(error)"))
                    break
                }
            }
            phase = .running(loop: loop, vcpus: threads, started: .now)
        }
    }

    /// The virtio doorbells, the console and the silence watch, on the event loop.
    private func subscribeSources() throws(VMMError) {
        for endpoint in devices.virtio {
            try events.subscribe(endpoint.notify.rawValue) { _ in endpoint.serve() }
        }
        try devices.consoleOutput?.attach(to: events)
        if let serial = devices.serial, let input = config.serialInput {
            let latch = latch
            let console = ConsoleInput(
                fd: input.fd, serial: serial, resume: devices.serialInputResume, escapes: input.escapes,
                onQuit: { latch.finish(.userQuit) })
            try console.attach(to: events)
            consoleInput.withLock { $0 = console }
        }
        if let console = devices.console, let seconds = config.consoleSilenceWarningSeconds, seconds > 0 {
            let commandLine = config.guestCommandLine
            events.addTimer(afterMilliseconds: seconds * 1000) {
                guard console.bytesSeen == 0 else { return }
                let why = ConsoleWatcher.silenceExplanation(commandLine: commandLine, emulatingHost: HostReport.isEmulating)
                Log.warning("after \(seconds) s: " + why)
            }
        }
    }

    /// Stops every vCPU out of `KVM_RUN` and holds it there; the event loop
    /// (and with it the devices' back ends) goes on. Throws when the VM is
    /// not running or a vCPU does not stop within `milliseconds`.
    func pause(waitingAtMost milliseconds: Int32 = 2000) throws(VMMError) {
        guard case .running(_, let threads, _) = phase.withLock({ $0 }), !latch.isSet else {
            throw VMMError(.usage, "the VM is not running, so it cannot be paused")
        }
        gate.close()
        kick(threads)
        guard gate.waitUntilAllHeld(timeoutMilliseconds: milliseconds) else {
            gate.open()
            throw VMMError(.internalError, "the vCPUs did not stop within \(milliseconds) ms; the VM keeps running")
        }
    }

    /// Lets paused vCPUs run again.
    func resume() {
        gate.open()
    }

    /// Kicks each vCPU thread out of `KVM_RUN` (immediate_exit, then the signal).
    private func kick(_ threads: [HostThread]) {
        for (vcpu, thread) in zip(vcpus, threads) {
            vcpu.requestExit()
            thread.send(signal: Signals.vcpuKick)
        }
    }

    /// Asks every running vCPU for its registers and describes them (see
    /// `VCPUReport`); a vCPU that does not stop within a second is named.
    func vcpuReport() -> String {
        guard case .running(_, let threads, _) = phase.withLock({ $0 }), threads.count == vcpus.count else {
            return "the vCPUs are not running"
        }
        mailbox.ask(vcpus.map(\.id))
        kick(threads)
        let (states, silent) = mailbox.collect(timeoutMilliseconds: 1000)
        return describe(states, silent: silent)
    }

    private func describe(_ states: [VCPUState], silent: [Int]) -> String {
        VCPUReport.describe(states, silent: silent, symbols: kernelSymbols())
    }

    /// The kernel's symbol table, read once, at the first report that needs it.
    private func kernelSymbols() -> KernelSymbols? {
        symbols.withLock { cached in
            if let cached { return cached }
            let image = kernelImage.withLock { $0 } ?? (try? FileImage(path: config.kernelPath, role: "kernel"))
            let loaded = image.flatMap { KernelSymbols(image: $0) }
            cached = .some(loaded)
            return loaded
        }
    }

    /// Blocks until the VM stops, tears it down (once: later calls return the
    /// same reason) and returns why it stopped.
    func wait() -> VMExitReason {
        teardown.withLock { _ in
            switch phase.withLock({ $0 }) {
            case .finished(let reason):
                return reason
            case .created:
                return .vmmError("the VM was never started")
            case .running(let loop, let threads, let started):
                let reason = stop(loop: loop, threads: threads, started: started)
                phase.withLock { $0 = .finished(reason) }
                return reason
            }
        }
    }

    private func stop(loop: HostThread, threads: [HostThread], started: ContinuousClock.Instant) -> VMExitReason {
        var reason = latch.wait()
        if reason.crashState != nil {
            let table = kernelSymbols()
            reason = reason.symbolized { table?.describe($0) }
        }
        // Kick every vCPU out of KVM_RUN (a paused one out of its hold), let
        // the loop write what the console still holds, then wait for all.
        gate.release()
        kick(threads)
        for thread in threads { thread.join() }
        let console = devices.consoleOutput
        events.post { console?.finish(waitingAtMost: 500) }
        events.requestStop()
        loop.join()
        let elapsed = ContinuousClock.now - started
        runDuration.withLock {
            $0 = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
        switch reason {
        case .signal, .stopped:
            // Where the guest was when it was stopped from outside: the first
            // clue to a boot that hangs or spins.
            let states = vcpus.compactMap { VCPURunner.state(of: $0, memory: memory) }
            Log.info("vCPU registers at the stop:\n" + describe(states, silent: []))
        default:
            break
        }
        if Log.isEnabled(.debug) {
            let guest = memory.residentBytes() >> 10
            Log.debug("guest RAM resident at exit: \(guest) KiB of \(memory.size >> 10) KiB")
            if let own = ProcessMemory.current() {
                Log.debug("VMM memory at exit: peak RSS \(own.peakResidentKiB) KiB; anonymous \(own.anonymousKiB) KiB "
                    + "(\(max(0, own.anonymousKiB - Int(guest))) KiB beyond guest RAM); file-backed \(own.fileKiB) KiB")
            }
        }
        return reason
    }
}
