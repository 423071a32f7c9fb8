import Glibc
import Synchronization
import SwiftVMHost
import SwiftVMDevices

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

    private init(kvm: KVM, vm: VirtualMachine, memory: GuestMemory, vcpus: [VCPU], devices: DeviceWiring, latch: ExitLatch) {
        self.kvm = kvm
        self.vm = vm
        self.memory = memory
        self.vcpus = vcpus
        self.devices = devices
        self.latch = latch
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
        do { latch = try ExitLatch() } catch { throw VMMError(.hostResource, "\(error)") }
        let (kvm, vm) = try createVM(config, memory: memory)
        var devices = try DeviceWiring(vm: vm)
        try devices.attachLegacyDevices(config, latch: latch)
        try devices.attachVirtioDevices(config, memory: memory, backends: backends)
        let vcpus = try createVCPUs(kvm: kvm, vm: vm, config: config, entry: kernel.entry)
        return Machine(kvm: kvm, vm: vm, memory: memory, vcpus: vcpus, devices: devices, latch: latch)
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
            report: { Log.warning("after \(seconds) s: " + ConsoleWatcher.silenceExplanation(commandLine: commandLine)) })
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
                silence: silenceWatch(config))
        } catch { return .vmmError("creating the event loop: \(error)") }

        var threads: [HostThread] = []
        do {
            threads.append(try HostThread.spawn(name: "swiftvm-events") { loop.run() })
            for vcpu in vcpus {
                let runner = VCPURunner(vcpu: vcpu, portBus: devices.portBus, mmioBus: devices.mmioBus, memory: memory, latch: latch)
                threads.append(try HostThread.spawn(name: "swiftvm-vcpu\(vcpu.id)") { runner.run() })
            }
        } catch {
            latch.finish(.vmmError("starting threads: \(error)"))
        }

        let reason = latch.wait()

        // Stop: kick every vCPU out of KVM_RUN, stop the loop, wait for all.
        loop.requestStop()
        for (vcpu, thread) in zip(vcpus, threads.dropFirst()) {
            vcpu.requestExit()
            thread.send(signal: Signals.vcpuKick)
        }
        for thread in threads { thread.join() }
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
