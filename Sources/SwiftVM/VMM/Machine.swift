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
    let portBus: Bus
    let mmioBus: Bus
    let serial: Serial8250?
    let serialInputResume: EventFD
    let latch: ExitLatch
    /// irqfds stay open for the VM's lifetime.
    let interruptLines: [EventFD]
    /// Keeps a serial output file open.
    let serialFile: FileDescriptor?

    private init(
        kvm: KVM, vm: VirtualMachine, memory: GuestMemory, vcpus: [VCPU], portBus: Bus, mmioBus: Bus,
        serial: Serial8250?, serialInputResume: EventFD, latch: ExitLatch, interruptLines: [EventFD],
        serialFile: FileDescriptor?
    ) {
        self.kvm = kvm; self.vm = vm; self.memory = memory; self.vcpus = vcpus
        self.portBus = portBus; self.mmioBus = mmioBus; self.serial = serial
        self.serialInputResume = serialInputResume; self.latch = latch
        self.interruptLines = interruptLines; self.serialFile = serialFile
    }

    static func build(_ config: VMConfig) throws(VMMError) -> Machine {
        BootClock.markStart()
        do { try config.validate() } catch { throw VMMError(.usage, error.description) }
        let commandLine: KernelCommandLine
        do { commandLine = try KernelCommandLine(config.commandLine) } catch {
            throw VMMError(.usage, error.description)
        }

        // Inputs first: a wrong file is reported even on a host without KVM,
        // and guest RAM is filled before KVM is opened.
        let kernel = try FileImage(path: config.kernelPath, role: "kernel")
        let initrd = try config.initrdPath.map { (path) throws(VMMError) in try FileImage(path: path, role: "initrd") }

        let latch: ExitLatch
        let resume: EventFD
        do {
            latch = try ExitLatch()
            resume = try EventFD(nonBlocking: true)
        } catch { throw VMMError(.hostResource, "\(error)") }

        // Guest RAM.
        let ramSize = UInt64(config.memoryMiB) << 20
        let memory: GuestMemory
        do { memory = try GuestMemory(regions: X86Layout.ramRegions(size: ramSize)) } catch {
            throw VMMError(.hostResource, error.description)
        }
        // Kernel, initrd and the boot structures the 64-bit boot protocol expects.
        let loaded: LoadedKernel
        do { loaded = try KernelLoader.loadX86Vmlinux(kernel, into: memory) } catch {
            throw VMMError(.badInput, "kernel \(config.kernelPath): \(error)")
        }
        var initrdRange: ZeroPage.Initrd?
        if let initrd, let path = config.initrdPath {
            initrdRange = try loadInitrd(initrd, path: path, kernelEnd: loaded.endAddress, memory: memory)
        }
        do {
            try commandLine.write(to: memory, at: X86Layout.commandLine)
            try BootPageTables.write(to: memory)
            try BootGDT.write(to: memory)
            try MPTable(cpuCount: config.vcpuCount).write(to: memory)
            let zeroPage = ZeroPage(
                e820: E820Map.x86(ramSize: ramSize),
                commandLineSize: UInt32(commandLine.size),
                initrd: initrdRange, acpiRSDP: nil)
            try zeroPage.write(to: memory)
        } catch { throw VMMError(.internalError, "writing boot structures: \(error)") }

        // Only now KVM: every problem with the inputs has been reported by here.
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

        // Devices.
        var portBus = Bus()
        var mmioBus = Bus()
        var irqfds: [EventFD] = []
        func interrupt(gsi: UInt32) throws(VMMError) -> IRQFDLine {
            do {
                let eventfd = try EventFD()
                try vm.registerIRQFD(eventfd, gsi: gsi)
                irqfds.append(eventfd)
                return IRQFDLine(eventfd: eventfd)
            } catch let error as KVMError {
                throw .kvm(error, while: "wiring interrupt \(gsi)")
            } catch {
                throw VMMError(.hostResource, "\(error)")
            }
        }
        var serialFile: FileDescriptor?
        let sink: (any ByteSink)?
        switch config.serialOutput {
        case .standardOutput:
            sink = FileSink(raw: 1)
        case .file(let path):
            do {
                let fd = try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC)
                serialFile = fd
                sink = FileSink(raw: fd.rawValue, owning: fd)
            } catch {
                throw VMMError(.missingInput, "cannot open the serial output file \(path): \(String(cString: strerror(error.errno)))")
            }
        case .sink(let custom):
            sink = custom
        case .none:
            sink = nil
        }
        let serial = Serial8250(
            interrupt: try interrupt(gsi: X86Layout.com1IRQ),
            output: sink ?? DiscardSink(),
            inputSpaceAvailable: { resume.signal() })
        let i8042 = I8042(interrupt: try interrupt(gsi: X86Layout.i8042IRQ), onReset: { latch.finish(.reset) })
        let bootTimer = BootTimer(onBoot: { _ in BootClock.report() })
        do {
            try portBus.insert(serial, base: 0x3f8, size: 8)
            try portBus.insert(i8042, base: 0x60, size: 5)
            try mmioBus.insert(bootTimer, base: X86Layout.bootTimer.rawValue, size: 0x1000)
        } catch { throw VMMError(.internalError, "placing devices: \(error)") }

        // vCPUs.
        let vcpus = try createVCPUs(kvm: kvm, vm: vm, config: config, entry: loaded.entry)

        return Machine(
            kvm: kvm, vm: vm, memory: memory, vcpus: vcpus, portBus: portBus, mmioBus: mmioBus,
            serial: serial, serialInputResume: resume, latch: latch, interruptLines: irqfds,
            serialFile: serialFile)
    }

    private static func loadInitrd(
        _ image: FileImage, path: String, kernelEnd: GuestAddress, memory: GuestMemory
    ) throws(VMMError) -> ZeroPage.Initrd {
        let address: GuestAddress
        do { address = try InitrdPlacement.address(initrdSize: image.size, kernelEnd: kernelEnd, memory: memory) } catch {
            throw VMMError(.usage, "initrd \(path): \(error)")
        }
        do {
            let target = try memory.checkedBytes(at: address, count: Int(image.size))
            try image.read(at: 0, into: target)
        } catch let error as ImageReadError {
            throw VMMError(.badInput, "initrd \(path): \(error)")
        } catch {
            throw VMMError(.internalError, "initrd \(path): \(error)")
        }
        return ZeroPage.Initrd(address: address, size: image.size)
    }

    /// MSRs every vCPU starts with (what firmware leaves for a 64-bit kernel).
    static let bootMSRs: [(index: UInt32, value: UInt64)] = [
        (0x174, 0), (0x175, 0), (0x176, 0),  // SYSENTER_CS/ESP/EIP
        (0xc000_0081, 0), (0xc000_0082, 0), (0xc000_0083, 0),  // STAR, LSTAR, CSTAR
        (0xc000_0084, 0), (0xc000_0102, 0),  // SYSCALL_MASK, KERNEL_GS_BASE
        (0x10, 0),  // TSC
        (0x1a0, 1),  // MISC_ENABLE: fast string operations
        (0x2ff, (1 << 11) | 6),  // MTRRdefType: MTRRs on, default write-back
    ]

    private static func createVCPUs(kvm: KVM, vm: VirtualMachine, config: VMConfig, entry: GuestAddress) throws(VMMError) -> [VCPU] {
        var supported: [CPUIDEntry]
        do { supported = try kvm.supportedCPUID() } catch { throw .kvm(error, while: "reading supported CPUID") }
        // The template goes first and topology last, so a template can hide
        // features but never break APIC ids or counts.
        if let template = config.cpuTemplate {
            do { supported = try template.apply(to: supported) } catch {
                throw VMMError(.badInput, "cpu template: \(error)")
            }
        }
        let tscDeadline = kvm.hasTSCDeadlineTimer
        let longMode = longModeEntry(rip: entry.rawValue)
        var vcpus: [VCPU] = []
        for index in 0..<config.vcpuCount {
            do {
                let vcpu = try vm.createVCPU(id: index)
                let cpuid = CPUIDNormalizer.normalize(
                    supported, vcpuIndex: index, vcpuCount: config.vcpuCount, tscDeadline: tscDeadline)
                try vcpu.setCPUID(cpuid)
                try vcpu.setMSRs(bootMSRs)
                if let template = config.cpuTemplate, !template.msrModifiers.isEmpty {
                    try applyMSRTemplate(template, to: vcpu)
                }
                try vcpu.resetFPU()
                try vcpu.configureLocalInterrupts()
                try vcpu.setLongModeEntry(longMode)
                vcpus.append(vcpu)
            } catch let error as VMMError {
                throw error
            } catch let error as KVMError {
                throw .kvm(error, while: "setting up vCPU \(index)")
            } catch {
                throw VMMError(.internalError, "setting up vCPU \(index): \(error)")
            }
        }
        return vcpus
    }

    /// Reads the MSRs a template names, forces its bits, and writes them back.
    private static func applyMSRTemplate(_ template: CPUTemplate, to vcpu: VCPU) throws(VMMError) {
        let addresses = template.msrAddresses
        let current: [UInt64]
        do { current = try vcpu.getMSRs(addresses) } catch {
            throw VMMError(.badInput, "cpu template: this host's KVM cannot read an MSR the template names (\(error))")
        }
        let updated: [UInt32: UInt64]
        do { updated = try template.applyMSRs(to: Dictionary(uniqueKeysWithValues: zip(addresses, current))) } catch {
            throw VMMError(.badInput, "cpu template: \(error)")
        }
        do { try vcpu.setMSRs(addresses.compactMap { address in updated[address].map { (address, $0) } }) } catch {
            throw VMMError(.badInput, "cpu template: KVM refused an MSR value the template sets (\(error))")
        }
    }

    /// The vCPU state at the 64-bit entry point: the boot GDT's segments, the
    /// boot page tables, the zero page in RSI.
    static func longModeEntry(rip: UInt64) -> X86LongModeEntry {
        func segment(_ descriptor: UInt64, selector: UInt16) -> SegmentRegister {
            let decoded = SegmentDescriptor(descriptor)
            return SegmentRegister(
                base: decoded.base, limit: decoded.limit, selector: selector, type: decoded.type,
                present: decoded.present, dpl: decoded.dpl, db: decoded.db, s: decoded.s, l: decoded.l,
                g: decoded.g, avl: decoded.avl)
        }
        return X86LongModeEntry(
            rip: rip, rsp: X86Layout.bootStack.rawValue, rsi: X86Layout.zeroPage.rawValue,
            pml4: X86Layout.pml4.rawValue, gdtBase: X86Layout.gdt.rawValue, gdtLimit: BootGDT.limit,
            idtBase: X86Layout.idt.rawValue, idtLimit: BootGDT.idtLimit,
            code: segment(BootGDT.code, selector: BootGDT.codeSelector),
            data: segment(BootGDT.data, selector: BootGDT.dataSelector),
            tss: segment(BootGDT.tss, selector: BootGDT.tssSelector))
    }

    /// Runs the vCPU threads and the event loop until the latch fires.
    func run(config: VMConfig) -> VMExitReason {
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
                latch: latch, signals: signals, serial: serial, inputResume: serialInputResume,
                input: config.serialInput ? 0 : nil, escapes: interactive)
        } catch { return .vmmError("creating the event loop: \(error)") }

        var threads: [HostThread] = []
        do {
            threads.append(try HostThread.spawn(name: "swiftvm-events") { loop.run() })
            for vcpu in vcpus {
                let runner = VCPURunner(vcpu: vcpu, portBus: portBus, mmioBus: mmioBus, memory: memory, latch: latch)
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

/// A sink for a console nobody reads.
struct DiscardSink: ByteSink {
    func write(_ bytes: UnsafeRawBufferPointer) {}
}
