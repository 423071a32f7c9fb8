import Testing
@testable import SwiftVMInspect
import SwiftVMTestSupport

/// Firecracker's CI guest kernels for Linux 6.1 boot in its CI every day, on a
/// device model close to swiftvm's, so check-config must find no error in them.
///
/// The fixtures reproduce the settings of every option a rule examines, as they
/// stand in Firecracker's resources/guest_configs/microvm-kernel-ci-x86_64-6.1.config
/// and microvm-kernel-ci-aarch64-6.1.config: the option's line where the file
/// has one, and "# CONFIG_X is not set" where the option is unset or has no
/// line at all. Nothing else from those files is copied.
@Suite("Firecracker's 6.1 CI guest configs pass check-config")
struct FirecrackerCIConfigTests {
    static let x86_64: String = """
        CONFIG_VIRTIO_MMIO=y
        CONFIG_VIRTIO_BLK=y
        CONFIG_VIRTIO_NET=y
        CONFIG_VSOCKETS=y
        CONFIG_VIRTIO_VSOCKETS=y
        CONFIG_HW_RANDOM_VIRTIO=y
        CONFIG_VIRTIO_BALLOON=y
        CONFIG_VIRTIO_CONSOLE=y
        CONFIG_PRINTK=y
        CONFIG_SERIAL_8250=y
        CONFIG_SERIAL_8250_CONSOLE=y
        CONFIG_BLK_DEV_INITRD=y
        CONFIG_EXT4_FS=y
        # CONFIG_MODULES is not set
        CONFIG_RANDOM_TRUST_CPU=y
        CONFIG_KVM_GUEST=y
        # CONFIG_SERIO_I8042 is not set
        # CONFIG_KEYBOARD_ATKBD is not set
        CONFIG_PTP_1588_CLOCK_KVM=y
        CONFIG_ACPI=y
        CONFIG_PCI=y
        # CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set
        # CONFIG_X86_MPPARSE is not set
        # CONFIG_ARM64_4K_PAGES is not set
        # CONFIG_ARM64_16K_PAGES is not set
        # CONFIG_ARM64_64K_PAGES is not set
        # CONFIG_ARM64_VA_BITS_48 is not set
        # CONFIG_ARM_GIC is not set
        # CONFIG_ARM_GIC_V3 is not set
        # CONFIG_ARM_GIC_V3_ITS is not set
        # CONFIG_ARM_ARCH_TIMER is not set
        # CONFIG_ARM_AMBA is not set
        # CONFIG_RTC_DRV_PL031 is not set
        # CONFIG_SERIAL_OF_PLATFORM is not set
        # CONFIG_EFI is not set
        # CONFIG_ACPI_REDUCED_HARDWARE_ONLY is not set
        # CONFIG_ACPI_GTDT is not set
        # CONFIG_ACPI_SPCR_TABLE is not set
        # CONFIG_ACPI_IORT is not set
        # CONFIG_ACPI_PPTT is not set
        """

    static let aarch64: String = """
        CONFIG_VIRTIO_MMIO=y
        CONFIG_VIRTIO_BLK=y
        CONFIG_VIRTIO_NET=y
        CONFIG_VSOCKETS=y
        CONFIG_VIRTIO_VSOCKETS=y
        CONFIG_HW_RANDOM_VIRTIO=y
        CONFIG_VIRTIO_BALLOON=y
        CONFIG_VIRTIO_CONSOLE=y
        CONFIG_PRINTK=y
        CONFIG_SERIAL_8250=y
        CONFIG_SERIAL_8250_CONSOLE=y
        CONFIG_BLK_DEV_INITRD=y
        CONFIG_EXT4_FS=y
        # CONFIG_MODULES is not set
        CONFIG_RANDOM_TRUST_CPU=y
        # CONFIG_KVM_GUEST is not set
        # CONFIG_SERIO_I8042 is not set
        # CONFIG_KEYBOARD_ATKBD is not set
        CONFIG_PTP_1588_CLOCK_KVM=y
        CONFIG_ACPI=y
        CONFIG_PCI=y
        # CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set
        # CONFIG_X86_MPPARSE is not set
        CONFIG_ARM64_4K_PAGES=y
        # CONFIG_ARM64_16K_PAGES is not set
        # CONFIG_ARM64_64K_PAGES is not set
        CONFIG_ARM64_VA_BITS_48=y
        CONFIG_ARM_GIC=y
        CONFIG_ARM_GIC_V3=y
        CONFIG_ARM_GIC_V3_ITS=y
        CONFIG_ARM_ARCH_TIMER=y
        CONFIG_ARM_AMBA=y
        CONFIG_RTC_DRV_PL031=y
        CONFIG_SERIAL_OF_PLATFORM=y
        CONFIG_EFI=y
        CONFIG_ACPI_REDUCED_HARDWARE_ONLY=y
        CONFIG_ACPI_GTDT=y
        CONFIG_ACPI_SPCR_TABLE=y
        CONFIG_ACPI_IORT=y
        CONFIG_ACPI_PPTT=y
        """

    @Test("the fixtures give a line for every option a rule examines", arguments: [GuestPath.x86_64ACPI, .aarch64])
    func fixturesCoverRules(path: GuestPath) throws {
        let config = try KernelConfig.parse(path == .aarch64 ? Self.aarch64 : Self.x86_64)
        let examined = Set(KernelConfigCheck.rules.flatMap { [$0.option] + ($0.when.map { ["CONFIG_" + $0] } ?? []) + $0.unless.map { "CONFIG_" + $0 } })
        let missing = examined.filter { config.options[$0] == nil }.sorted()
        #expect(missing.isEmpty, "no line for \(missing)")
    }

    @Test("Firecracker's x86_64 CI config: no error on the ACPI path, only the Ctrl-Alt-Del warnings")
    func x86ACPI() throws {
        let findings = try KernelConfigCheck.check(configText: Self.x86_64, path: .x86_64ACPI)
        #expect(findings.filter { $0.severity == .error }.isEmpty, "\(findings.map(\.description))")
        #expect(findings.map(\.option) == ["CONFIG_SERIO_I8042", "CONFIG_KEYBOARD_ATKBD"])
        #expect(findings.allSatisfy { $0.severity == .warning && $0.problem.contains("Ctrl-Alt-Del") })
    }

    @Test("Firecracker's x86_64 CI config is an ACPI config: without ACPI it lacks the MP table and command-line devices")
    func x86NoACPI() throws {
        let findings = try KernelConfigCheck.check(configText: Self.x86_64, path: .x86_64NoACPI)
        #expect(findings.filter { $0.severity == .error }.map(\.option) == ["CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES", "CONFIG_X86_MPPARSE"])
    }

    @Test("Firecracker's aarch64 CI config: no finding at all")
    func aarch64() throws {
        let findings = try KernelConfigCheck.check(configText: Self.aarch64, path: .aarch64)
        #expect(findings.isEmpty, "\(findings.map(\.description))")
    }
}
