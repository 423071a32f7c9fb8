import ArgumentParser
import Glibc
import SwiftVM
import SwiftVMBoot
import SwiftVMHost
import SwiftVMMemory

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        // Only read when `run` is parsed as a root command (SwiftVMCommand's
        // fast path): it skips ArgumentParser's two trial parses for a
        // completion-script request, a third of the parsing time. Under the
        // swiftvm tree the root's configuration decides, as for any command.
        _superCommandName: "swiftvm",
        abstract: "Boot a guest kernel with the serial console on this terminal.",
        discussion: """
            The guest's console is shown on standard output and reads standard input. On a \
            terminal, press Ctrl-A x to stop the VM (Ctrl-A Ctrl-A sends one Ctrl-A). \
            swiftvm exits 0 when the guest reboots or powers off.
            """)

    @Option(help: "The guest kernel: an x86_64 ELF vmlinux or a bzImage.")
    var kernel: String

    @Option(help: ArgumentHelp(
        "Which kernel entry the boot vCPU starts at.",
        discussion: "auto (the default, Firecracker's rule): PVH for a vmlinux with a PVH note, else the Linux 64-bit entry; "
            + "a bzImage always uses its 64-bit entry."))
    var bootProtocol: X86BootProtocol = .auto

    @Option(help: "An initrd or initramfs image.")
    var initrd: String?

    @Option(help: ArgumentHelp(
        "The kernel command line, replacing the default.",
        discussion: "Default: \(KernelCommandLine.defaultX86)"))
    var cmdline: String?

    @Option(help: "Words added to the end of the kernel command line.")
    var append: [String] = []

    @Option(help: ArgumentHelp(
        "An ext4 image to boot as the root file system: drive \"rootfs\", /dev/vda, root=/dev/vda rw.",
        valueName: "image"))
    var rootfs: String?

    @Option(help: ArgumentHelp(
        "A virtio-block drive (repeatable): id=NAME,path=FILE[,ro][,root][,cache=unsafe|writeback][,engine=sync|async][,partuuid=UUID][,bw=SIZE/REFILL_MS[/BURST]][,ops=SIZE/REFILL_MS[/BURST]].",
        valueName: "spec"))
    var drive: [String] = []

    @Option(help: ArgumentHelp(
        "A virtio-net interface on a host TAP device (repeatable): id=NAME,tap=TAPNAME[,mac=XX:XX:XX:XX:XX:XX][,rx-bw=B][,rx-ops=B][,tx-bw=B][,tx-ops=B], B a rate limit SIZE/REFILL_MS[/BURST].",
        valueName: "spec"))
    var net: [String] = []

    @Option(help: ArgumentHelp(
        "A vsock device: cid=N,uds=PATH. Host programs connect to PATH and write \"CONNECT <port>\\n\"; guest connections to port P reach PATH_P.",
        valueName: "spec"))
    var vsock: String?

    @Option(help: ArgumentHelp(
        "A memory balloon: MIB[,deflate-on-oom][,stats=SECONDS][,reporting]; MIB is how much memory the guest gives back.",
        valueName: "spec"))
    var balloon: String?

    @Flag(help: "Describe the machine with the MP table and virtio_mmio.device= stanzas instead of ACPI tables.")
    var noACPI = false

    @Flag(help: "Do not attach the virtio-rng entropy device.")
    var noRNG = false

    @Option(help: ArgumentHelp(
        "Rate-limit the virtio-rng device: bw=SIZE/REFILL_MS[/BURST],ops=SIZE/REFILL_MS[/BURST] (either or both; SIZE in bytes or requests, K/M/G suffixes).",
        valueName: "spec"))
    var rngLimit: String?

    @Flag(help: "Skip the checks of the kernel and root drive before boot.")
    var noPreflight = false

    @Option(help: "Number of vCPUs (1 to \(VMConfig.maxVCPUs)).")
    var vcpus: Int = 1

    @Option(help: "Guest RAM in MiB.")
    var memory: Int = 128

    @Option(help: "Write the serial console to this file instead of standard output.")
    var serialOut: String?

    @Flag(help: "Do not connect standard input to the serial console.")
    var noConsoleInput = false

    @Option(help: "A CPU template (Firecracker's custom template JSON) applied to the guest's CPUID and MSRs.")
    var cpuTemplate: String?

    @Flag(help: "Run without seccomp filters (by default every thread runs under an allow-list; docs/security.md).")
    var noSeccomp = false

    @Option(help: ArgumentHelp(
        "A seccomp filter file (JSON) replacing the built-in allow-lists; see docs/security.md.", valueName: "file"))
    var seccompFilter: String?

    @Option(help: ArgumentHelp("Seconds of an empty guest console before swiftvm says why that happens (0: never).", visibility: .hidden))
    var consoleSilenceWarning: Int = 20

    @Option(help: ArgumentHelp("KiB of console output held for a reader that does not keep up; more is dropped.", visibility: .hidden))
    var consoleBufferKib: Int = 256

    @Option(help: ArgumentHelp("The KVM device to open.", visibility: .hidden))
    var kvmDevice: String = "/dev/kvm"

    @OptionGroup var log: LogOptions

    func validate() throws {
        guard (1...VMConfig.maxVCPUs).contains(vcpus) else {
            throw ValidationError("--vcpus must be between 1 and \(VMConfig.maxVCPUs); got \(vcpus)")
        }
        guard (VMConfig.minMemoryMiB...VMConfig.maxMemoryMiB).contains(memory) else {
            throw ValidationError("--memory must be between \(VMConfig.minMemoryMiB) and \(VMConfig.maxMemoryMiB) MiB; got \(memory)")
        }
        if noSeccomp && seccompFilter != nil {
            throw ValidationError("--no-seccomp and --seccomp-filter contradict each other; give one")
        }
    }

    func run() throws {
        log.apply()
        var commandLine = cmdline ?? KernelCommandLine.defaultX86
        // Kernel parameters go before a "--", after which words are init's.
        commandLine = KernelCommandLine.addingParameters(append, to: commandLine)
        var config = VMConfig(kernelPath: kernel, commandLine: commandLine, vcpuCount: vcpus, memoryMiB: memory)
        config.initrdPath = initrd
        config.bootProtocol = bootProtocol
        let interactive = !noConsoleInput && Terminal.isTerminal(0)
        config.serialInput = noConsoleInput ? nil : VMConfig.SerialInput(fd: 0, escapes: interactive)
        config.cpuTemplatePath = cpuTemplate
        config.kvmPath = kvmDevice
        config.consoleSilenceWarningSeconds = consoleSilenceWarning > 0 ? consoleSilenceWarning : nil
        config.consoleBufferBytes = max(4, consoleBufferKib) * 1024
        if let serialOut { config.serialOutput = .file(serialOut) }
        config.acpi = !noACPI
        config.entropyDevice = !noRNG
        config.preflight = !noPreflight
        let seccomp: SeccompFilters?
        // `run` has no API thread, so its list is not compiled.
        do { seccomp = try SeccompFilterFile.filters(disabled: noSeccomp, file: seccompFilter, kinds: [.main, .events, .vcpu]) } catch {
            Log.error(error.description)
            throw ExitCode(error.exitCode)
        }
        config.seccomp = seccomp.map { .on($0) } ?? .off
        if let note = SeccompFilterFile.rootNote { Log.info(note) }
        do {
            if let rootfs { config.drives.append(DriveConfig(id: "rootfs", path: rootfs, isRootDevice: true)) }
            for spec in drive { config.drives.append(try DriveConfig.parse(spec)) }
            config.netInterfaces = try net.map { (spec) throws(VMConfigError) in try NetConfig.parse(spec) }
            if let rngLimit { config.entropyRateLimiter = try RateLimiterConfig.parseEntropyLimit(rngLimit) }
            config.vsock = try vsock.map { (spec) throws(VMConfigError) in try VsockConfig.parse(spec) }
            config.balloon = try balloon.map { (spec) throws(VMConfigError) in try BalloonConfig.parse(spec) }
            try config.validate()
        } catch {
            Log.error(error.description)
            throw ExitCode(ExitStatus.usage)
        }
        let vm: MicroVM
        do { vm = try MicroVM(config: config) } catch {
            Log.error(error.description)
            throw ExitCode(error.exitCode)
        }
        let reason = try Self.run(vm, interactive: interactive, seccomp: seccomp)
        // A clean exit with an empty console is a guest that chose to be quiet.
        if let diagnosis = vm.bootDiagnosis, !(reason.isClean && vm.machineWasSilent) {
            Log.warning(diagnosis)
        }
        if case .userQuit = reason {
            Log.info(reason.description)
        } else if reason.isClean {
            Log.info(reason.description)
        } else {
            Log.error(reason.description)
        }
        throw ExitCode(reason.exitCode)
    }

    /// Runs `vm` as the process's one VM: termination signals stop it (and
    /// are reported as the exit reason), SIGUSR1 prints the vCPUs' registers,
    /// SIGPIPE is ignored, and an interactive terminal is in raw mode for the
    /// run. This is the process policy the library leaves to its front end.
    static func run(_ vm: MicroVM, interactive: Bool, seccomp: SeccompFilters? = nil) throws -> VMExitReason {
        signal(SIGPIPE, SIG_IGN)
        let signals: FileDescriptor
        do { signals = try Signals.signalDescriptor(for: Signals.termination + [Signals.stateReport]) } catch {
            Log.error("cannot watch for signals: \(error)")
            throw ExitCode(ExitStatus.hostResource)
        }
        do {
            try vm.events.subscribe(signals.rawValue) { _ in
                while let number = Signals.readSignal(from: signals) {
                    if number == Signals.stateReport {
                        Log.info("vCPU registers (SIGUSR1):\n" + vm.vcpuReport())
                    } else {
                        vm.stop(because: .signal(number))
                    }
                }
            }
        } catch {
            Log.error(error.description)
            throw ExitCode(error.exitCode)
        }
        if interactive {
            if seccomp != nil { SeccompFilters.restoreTerminalOnViolation(0) }
            do { try Terminal.enterRawMode(0) } catch {
                Log.warning("cannot put the terminal in raw mode (\(error)); input is line-buffered")
            }
            Log.info("console attached; Ctrl-A x stops the VM")
        }
        defer { Terminal.restore() }
        do { try vm.start() } catch {
            Log.error(error.description)
            throw ExitCode(error.exitCode)
        }
        // Last: the VM's threads have loaded theirs (docs/security.md).
        do { try seccomp?.install(.main) } catch { vm.stop(because: .vmmError("\(error)")) }
        return vm.wait()
    }
}

extension X86BootProtocol: ExpressibleByArgument {}
