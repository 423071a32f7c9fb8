import SwiftVMBoot

/// Everything needed to assemble and boot one microVM.
///
/// Front ends (the CLI, the config file, the API) fill this in; the VMM only
/// reads it.
public struct VMConfig: Sendable {
    /// The guest kernel: an x86_64 ELF `vmlinux` or a bzImage.
    public var kernelPath: String
    /// An optional initrd / initramfs image.
    public var initrdPath: String?
    /// Which entry of the kernel the boot vCPU starts at (`--boot-protocol`):
    /// `.auto` is Firecracker's rule, PVH for a vmlinux with a PVH note and
    /// the Linux 64-bit entry otherwise (docs/guest-kernels.md).
    public var bootProtocol: X86BootProtocol = .auto
    /// The kernel command line, exactly as the guest will see it.
    public var commandLine: String
    /// Number of vCPUs (1...VMConfig.maxVCPUs).
    public var vcpuCount: Int
    /// Guest RAM in MiB.
    public var memoryMiB: Int
    /// Where the serial console's output goes.
    public var serialOutput: SerialOutput
    /// What the serial console reads, if anything.
    public var serialInput: SerialInput?
    /// A CPU template file (Firecracker's custom template JSON) applied on top
    /// of the normalized host CPUID and MSRs.
    public var cpuTemplatePath: String?
    /// A CPU template given as JSON text instead of a file (the API's
    /// `PUT /cpu-config`); used when `cpuTemplatePath` is nil.
    public var cpuTemplateJSON: [UInt8]?
    /// The template the machine applies: read from `cpuTemplatePath` or
    /// `cpuTemplateJSON` when the machine is built.
    var cpuTemplate: CPUTemplate?
    /// The KVM device to use.
    public var kvmPath: String
    /// Describe the machine with ACPI tables (the default) or, when false, only
    /// with the MP table and `virtio_mmio.device=` stanzas on the command line.
    public var acpi: Bool = true
    /// virtio-block drives, in the order the guest sees them (/dev/vda first).
    public var drives: [DriveConfig] = []
    /// virtio-net interfaces, each backed by a host TAP device (eth0 first).
    public var netInterfaces: [NetConfig] = []
    /// A hybrid vsock device over Unix sockets.
    public var vsock: VsockConfig?
    /// A memory balloon.
    public var balloon: BalloonConfig?
    /// Attach a virtio-rng device so the guest's CSPRNG is seeded from the host.
    public var entropyDevice: Bool = true
    /// What the entropy device may hand out (Firecracker's `rate_limiter` of
    /// `/entropy`): bytes, and requests as operations. Nil: no limit.
    public var entropyRateLimiter: RateLimiterConfig?
    /// Check the kernel and root drive for problems that would make the boot
    /// fail silently, before the guest runs.
    public var preflight: Bool = true
    /// Warn once when the guest has printed nothing on its console after this
    /// many seconds (nil: never).
    public var consoleSilenceWarningSeconds: Int? = 20
    /// Console output held for a destination that does not keep up; more is
    /// dropped and counted.
    public var consoleBufferBytes: Int = 256 * 1024
    /// Log `Guest-boot-time = ...` when the guest writes the boot-timer byte
    /// (always with `swiftvm run`; with Firecracker's `--boot-timer` otherwise).
    public var reportBootTime = true
    /// Seccomp filters for the VM's event loop and vCPU threads, each loaded
    /// by its thread as it starts (docs/security.md). The default,
    /// `.processDefault`, is off unless the program sets
    /// `VMConfig.defaultSeccomp`: the library leaves the program's threads
    /// alone unless asked. `swiftvm run` and Firecracker mode turn them on.
    public var seccomp: Seccomp = .processDefault

    /// Where the guest's console output goes. Output passes through a bounded
    /// buffer drained by the VMM's event loop: a destination that stops
    /// reading never stalls the guest, and what does not fit is dropped and
    /// counted (`MicroVM.droppedConsoleBytes`).
    public enum SerialOutput: Sendable {
        case standardOutput
        /// A file (created or truncated), or a FIFO that already has a reader.
        case file(String)
        /// Hands every byte the guest writes to a sink of the embedding
        /// program, on the VMM's event-loop thread; the sink must not block.
        case sink(any ConsoleSink)
        case none
    }

    /// A descriptor the serial console reads: while the guest's receive FIFO
    /// is full it is not read, so no input is lost.
    public struct SerialInput: Sendable {
        public var fd: Int32
        /// Ctrl-A x stops the VM, Ctrl-A Ctrl-A sends one Ctrl-A: for a person
        /// at a terminal.
        public var escapes: Bool

        public init(fd: Int32, escapes: Bool = false) {
            self.fd = fd
            self.escapes = escapes
        }

        /// The process's standard input.
        public static let standardInput = SerialInput(fd: 0)
    }

    /// swiftvm's default kernel command line for x86_64 guests.
    public static let defaultCommandLine = KernelCommandLine.defaultX86

    public static let maxVCPUs = 32
    public static let minMemoryMiB = 16
    /// Guest-physical addresses are limited by the page tables and e820 we build; 1 TiB is ample.
    public static let maxMemoryMiB = 1 << 20

    public init(
        kernelPath: String, initrdPath: String? = nil, commandLine: String = VMConfig.defaultCommandLine,
        vcpuCount: Int = 1, memoryMiB: Int = 128, serialOutput: SerialOutput = .standardOutput,
        serialInput: SerialInput? = nil, cpuTemplatePath: String? = nil, kvmPath: String = "/dev/kvm"
    ) {
        self.kernelPath = kernelPath
        self.initrdPath = initrdPath
        self.commandLine = commandLine
        self.vcpuCount = vcpuCount
        self.memoryMiB = memoryMiB
        self.serialOutput = serialOutput
        self.serialInput = serialInput
        self.cpuTemplatePath = cpuTemplatePath
        self.kvmPath = kvmPath
    }

    /// Checks the values that do not need any file to be opened.
    public func validate() throws(VMConfigError) {
        guard (1...VMConfig.maxVCPUs).contains(vcpuCount) else {
            throw .invalid("--vcpus must be between 1 and \(VMConfig.maxVCPUs); got \(vcpuCount)")
        }
        guard (VMConfig.minMemoryMiB...VMConfig.maxMemoryMiB).contains(memoryMiB) else {
            throw .invalid("--memory must be between \(VMConfig.minMemoryMiB) and \(VMConfig.maxMemoryMiB) MiB; got \(memoryMiB)")
        }
        let deviceCount = drives.count + netInterfaces.count + (vsock == nil ? 0 : 1) + (balloon == nil ? 0 : 1)
            + (entropyDevice ? 1 : 0)
        guard deviceCount <= VMConfig.maxVirtioDevices else {
            throw .invalid("at most \(VMConfig.maxVirtioDevices) virtio devices fit on the interrupt controller; "
                + "\(deviceCount) were asked for")
        }
        var interfaces: Set<String> = []
        var taps: Set<String> = []
        for net in netInterfaces {
            try net.validate()
            guard interfaces.insert(net.id).inserted else {
                throw .invalid("two network interfaces are named \(net.id); interface ids must be unique")
            }
            guard taps.insert(net.tapName).inserted else {
                throw .invalid("two network interfaces use the TAP device \(net.tapName); each needs its own")
            }
        }
        try vsock?.validate()
        try balloon?.validate(memoryMiB: memoryMiB)
        try entropyRateLimiter?.validate("entropy rate limiter")
        do { _ = try KernelCommandLine(guestCommandLine) } catch { throw .invalid(error.description) }
        var seen: Set<String> = []
        for drive in drives {
            try drive.validate()
            guard seen.insert(drive.id).inserted else { throw .invalid("two drives are named \(drive.id); drive ids must be unique") }
        }
        let roots = drives.filter(\.isRootDevice)
        if roots.count > 1 {
            throw .invalid("drives \(roots.map(\.id).joined(separator: " and ")) are both marked root; only one drive can hold /")
        }
    }

    /// The drives with the root drive first, so that it is /dev/vda.
    public var orderedDrives: [DriveConfig] {
        drives.filter(\.isRootDevice) + drives.filter { !$0.isRootDevice }
    }
}

/// A configuration that cannot describe a bootable machine.
public enum VMConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let message): message
        }
    }
}
