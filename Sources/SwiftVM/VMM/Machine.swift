import Glibc
import Synchronization
import SwiftVMHost
import SwiftVMDevices
import SwiftVMMemory
import SwiftVMBoot
import SwiftVMInspect

/// The assembled machine. `build` is the one place that decides what the
/// guest gets; `run` owns the threads.
final class Machine: @unchecked Sendable {
    let kvm: KVM
    let vm: VirtualMachine
    let memory: GuestMemory
    let vcpus: [VCPU]
    let devices: DeviceWiring
    let latch: ExitLatch
    /// How long the last `run` lasted, for diagnosis.
    private(set) var runSeconds: Double = 0
    private let kernelPath: String
    private let mailbox: VCPUStateMailbox
    /// The vCPU threads while `run` runs, so their registers can be asked for.
    private let vcpuThreads = Mutex<[HostThread]>([])
    /// The kernel's symbol table, read at the first report that needs it.
    private let symbols = Mutex<KernelSymbols??>(nil)

    private init(
        kvm: KVM, vm: VirtualMachine, memory: GuestMemory, vcpus: [VCPU], devices: DeviceWiring, latch: ExitLatch,
        mailbox: VCPUStateMailbox, kernelPath: String
    ) {
        self.kvm = kvm
        self.vm = vm
        self.memory = memory
        self.vcpus = vcpus
        self.devices = devices
        self.latch = latch
        self.mailbox = mailbox
        self.kernelPath = kernelPath
    }

    static func build(_ config: VMConfig) throws(VMMError) -> Machine {
        BootClock.markStart()
        do { try config.validate() } catch { throw VMMError(.usage, error.description) }

        // Inputs first: a wrong file is reported even on a host without KVM,
        // and guest RAM is filled before KVM is opened.
        let (memory, kernel, kernelFile) = try loadGuest(config)
        try preflightCommandLine(config, kernel: kernelFile)
        let backends = try openDrives(config)

        let latch: ExitLatch
        let mailbox: VCPUStateMailbox
        do {
            latch = try ExitLatch()
            mailbox = try VCPUStateMailbox()
        } catch { throw VMMError(.hostResource, "\(error)") }
        let (kvm, vm) = try createVM(config, memory: memory)
        var devices = try DeviceWiring(vm: vm)
        try devices.attachLegacyDevices(config, latch: latch)
        try devices.attachVirtioDevices(config, memory: memory, backends: backends)
        let vcpus = try createVCPUs(kvm: kvm, vm: vm, config: config, entry: kernel.entry)
        return Machine(
            kvm: kvm, vm: vm, memory: memory, vcpus: vcpus, devices: devices, latch: latch, mailbox: mailbox,
            kernelPath: config.kernelPath)
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

    /// A warning, while the guest runs, when its console stays empty.
    private func silenceWatch(_ config: VMConfig) -> SilenceWatch? {
        guard let console = devices.console, let seconds = config.consoleSilenceWarningSeconds, seconds > 0 else { return nil }
        let commandLine = config.guestCommandLine
        return SilenceWatch(
            milliseconds: Int32(seconds * 1000),
            quiet: { console.bytesSeen == 0 },
            report: {
                let why = ConsoleWatcher.silenceExplanation(commandLine: commandLine, emulatingHost: HostReport.isEmulating)
                Log.warning("after \(seconds) s: " + why)
            })
    }

    /// Asks every running vCPU for its registers and describes them (see
    /// `VCPUReport`); a vCPU that does not stop within a second is named.
    func vcpuReport() -> String {
        let threads = vcpuThreads.withLock { $0 }
        guard threads.count == vcpus.count else { return "the vCPUs are not running" }
        mailbox.ask(vcpus.map(\.id))
        for (vcpu, thread) in zip(vcpus, threads) {
            vcpu.requestExit()
            thread.send(signal: Signals.vcpuKick)
        }
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
            let loaded = (try? FileImage(path: kernelPath, role: "kernel")).flatMap { KernelSymbols(image: $0) }
            cached = .some(loaded)
            return loaded
        }
    }

    /// Runs the vCPU threads and the event loop until the latch fires.
    func run(config: VMConfig) -> VMExitReason {
        let started = ContinuousClock.now
        defer {
            let elapsed = ContinuousClock.now - started
            runSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
        Signals.installVCPUKickHandler()
        let signals: FileDescriptor
        do { signals = try Signals.blockTerminationSignals() } catch {
            return .vmmError("blocking termination signals: \(error)")
        }
        let interactive = config.serialInput && Terminal.isTerminal(0)
        if interactive {
            do { try Terminal.enterRawMode(0) } catch {
                Log.warning("cannot put the terminal in raw mode (\(error)); input is line-buffered")
            }
        }
        defer { Terminal.restore() }

        let loop: EventLoop
        do {
            loop = try EventLoop(
                latch: latch, signals: signals, serial: devices.serial, inputResume: devices.serialInputResume,
                input: config.serialInput ? 0 : nil, escapes: interactive, virtio: devices.virtio,
                silence: silenceWatch(config),
                stateRequest: { [self] in Log.info("vCPU registers (SIGUSR1):\n" + vcpuReport()) })
        } catch { return .vmmError("creating the event loop: \(error)") }

        var threads: [HostThread] = []
        do {
            threads.append(try HostThread.spawn(name: "swiftvm-events") { loop.run() })
            for vcpu in vcpus {
                let runner = VCPURunner(
                    vcpu: vcpu, portBus: devices.portBus, mmioBus: devices.mmioBus, memory: memory, latch: latch,
                    mailbox: mailbox)
                threads.append(try HostThread.spawn(name: "swiftvm-vcpu\(vcpu.id)") { runner.run() })
            }
        } catch {
            latch.finish(.vmmError("starting threads: \(error)"))
        }
        vcpuThreads.withLock { $0 = Array(threads.dropFirst()) }

        var reason = latch.wait()
        vcpuThreads.withLock { $0 = [] }
        if reason.crashState != nil {
            let table = kernelSymbols()
            reason = reason.symbolized { table?.describe($0) }
        }

        // Stop: kick every vCPU out of KVM_RUN, stop the loop, wait for all.
        loop.requestStop()
        for (vcpu, thread) in zip(vcpus, threads.dropFirst()) {
            vcpu.requestExit()
            thread.send(signal: Signals.vcpuKick)
        }
        for thread in threads { thread.join() }
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
