@_exported import SwiftVMDevices
@_exported import SwiftVMHost
import SwiftVMBoot

/// Everything needed to assemble and boot one microVM.
///
/// Front ends (the CLI, the config file, the API) fill this in; the VMM only
/// reads it.
public struct VMConfig: Sendable {
    /// The guest kernel: an x86_64 ELF `vmlinux`.
    public var kernelPath: String
    /// An optional initrd / initramfs image.
    public var initrdPath: String?
    /// The kernel command line, exactly as the guest will see it.
    public var commandLine: String
    /// Number of vCPUs (1...VMConfig.maxVCPUs).
    public var vcpuCount: Int
    /// Guest RAM in MiB.
    public var memoryMiB: Int
    /// Where the serial console's output goes.
    public var serialOutput: SerialOutput
    /// Whether the serial console reads the VMM's standard input.
    public var serialInput: Bool
    /// A CPU template applied on top of the normalized host CPUID.
    public var cpuTemplate: CPUTemplate?
    /// The KVM device to use.
    public var kvmPath: String
    /// Describe the machine with ACPI tables (the default) or, when false, only
    /// with the MP table and `virtio_mmio.device=` stanzas on the command line.
    public var acpi: Bool = true
    /// virtio-block drives, in the order the guest sees them (/dev/vda first).
    public var drives: [DriveConfig] = []
    /// Attach a virtio-rng device so the guest's CSPRNG is seeded from the host.
    public var entropyDevice: Bool = true
    /// Check the kernel and root drive for problems that would make the boot
    /// fail silently, before the guest runs.
    public var preflight: Bool = true
    /// Warn once when the guest has printed nothing on its console after this
    /// many seconds (nil: never).
    public var consoleSilenceWarningSeconds: Int? = 20

    public enum SerialOutput: Sendable {
        case standardOutput
        case file(String)
        /// Hands every byte the guest writes to a sink of the embedding program.
        case sink(any ByteSink)
        case none
    }

    public static let maxVCPUs = 32
    public static let minMemoryMiB = 16
    /// Guest-physical addresses are limited by the page tables and e820 we build; 1 TiB is ample.
    public static let maxMemoryMiB = 1 << 20

    public init(
        kernelPath: String, initrdPath: String? = nil, commandLine: String = KernelCommandLine.defaultX86,
        vcpuCount: Int = 1, memoryMiB: Int = 128, serialOutput: SerialOutput = .standardOutput,
        serialInput: Bool = true, cpuTemplate: CPUTemplate? = nil, kvmPath: String = "/dev/kvm"
    ) {
        self.kernelPath = kernelPath
        self.initrdPath = initrdPath
        self.commandLine = commandLine
        self.vcpuCount = vcpuCount
        self.memoryMiB = memoryMiB
        self.serialOutput = serialOutput
        self.serialInput = serialInput
        self.cpuTemplate = cpuTemplate
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
        guard drives.count + (entropyDevice ? 1 : 0) <= VMConfig.maxVirtioDevices else {
            throw .invalid("at most \(VMConfig.maxVirtioDevices) virtio devices fit on the interrupt controller; \(drives.count) drives were given")
        }
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
