/// How a guest finds its devices, which decides the Kconfig options it needs.
public enum GuestPath: String, CaseIterable, Sendable, CustomStringConvertible {
    /// x86_64 described by ACPI tables (`swiftvm run`, the default).
    case x86_64ACPI
    /// x86_64 described by an MP table and `virtio_mmio.device=` stanzas (`swiftvm run --no-acpi`).
    case x86_64NoACPI
    /// aarch64 described by a device tree.
    case aarch64

    public var description: String {
        switch self {
        case .x86_64ACPI: "x86_64 with ACPI"
        case .x86_64NoACPI: "x86_64 without ACPI (MP table, virtio_mmio.device= on the command line)"
        case .aarch64: "aarch64"
        }
    }
}

/// One problem a kernel config has for a ``GuestPath``.
public struct KernelConfigFinding: Equatable, Sendable, CustomStringConvertible {
    public enum Severity: String, Sendable {
        /// The guest fails to boot, is silent, or loses a device swiftvm gives it.
        case error
        /// The guest boots but something is degraded or risky.
        case warning
    }

    /// The option's full name, e.g. `CONFIG_VIRTIO_BLK`.
    public var option: String
    public var value: KernelConfigValue
    public var severity: Severity
    /// What goes wrong in the guest because of it.
    public var problem: String
    /// The line to put in the config instead, with the reason where it helps.
    public var fix: String

    /// `CONFIG_X=m`, `CONFIG_X=y` or `CONFIG_X is not set`.
    public var setting: String {
        value == .notSet ? "\(option) is not set" : "\(option)=\(value)"
    }

    public var description: String { "\(severity.rawValue) \(setting): \(problem). Fix: \(fix)" }
}

/// Checks a kernel `.config` against what a microVM guest needs on each path:
/// the device model swiftvm emulates (virtio-MMIO, one 8250/16550 UART, an
/// i8042 for reboot on x86, ACPI or an MP table or a device tree) and the
/// rule that nothing can be loaded as a module.
///
/// x86_64 has no page-size choice (its base pages are always 4 KiB), so only
/// aarch64 is checked for it.
public enum KernelConfigCheck {
    /// Every finding for `config` on `path`, errors first, in rule order.
    public static func check(_ config: KernelConfig, path: GuestPath) -> [KernelConfigFinding] {
        let findings = rules.filter { $0.paths.contains(path) }.compactMap { $0.evaluate(config) }
        return findings.filter { $0.severity == .error } + findings.filter { $0.severity == .warning }
    }

    /// Parses `text` as a `.config` and checks it.
    public static func check(configText text: String, path: GuestPath) throws(KernelConfigParseError) -> [KernelConfigFinding] {
        check(try KernelConfig.parse(text), path: path)
    }

    /// "2 errors, 1 warning" style summary of `findings`.
    public static func summary(_ findings: [KernelConfigFinding]) -> String {
        let errors = findings.filter { $0.severity == .error }.count
        let warnings = findings.count - errors
        func plural(_ count: Int, _ word: String) -> String { "\(count) \(word)\(count == 1 ? "" : "s")" }
        return "\(plural(errors, "error")), \(plural(warnings, "warning"))"
    }

    static let silentConsole = "the kernel boots into silence: no boot messages, no shell prompt, no panic text"

    // One rule a line: the option, what it must be, how bad it is, on which
    // paths, and what the guest suffers without it (the seed's consequences).
    static let rules: [Rule] = [
        // Every path: the virtio-MMIO transport and each device's driver.
        .builtIn("VIRTIO_MMIO", .error, .all, "no virtio device is found: no root disk, no network, no vsock, no entropy", fix: "(it selects CONFIG_VIRTIO, the virtio core)"),
        .builtIn("VIRTIO_BLK", .error, .all, "the root disk (/dev/vda) never appears and the kernel panics with \"VFS: Unable to mount root fs\""),
        .builtIn("VIRTIO_NET", .error, .all, "the guest has no network interface"),
        .builtIn("VSOCKETS", .error, .all, "AF_VSOCK does not exist, so host-to-guest agents cannot connect"),
        .builtIn("VIRTIO_VSOCKETS", .error, .all, "the vsock device is ignored, so host-to-guest agents cannot connect"),
        .builtIn("HW_RANDOM_VIRTIO", .error, .all, "the entropy device is ignored, so the kernel's CSPRNG is seeded late and getrandom() callers stall at boot", fix: "(with CONFIG_HW_RANDOM=y)"),
        .builtIn("VIRTIO_BALLOON", .error, .all, "the balloon device is ignored, so the host cannot reclaim guest memory"),
        // Every path: the console and the root filesystem.
        .builtIn("PRINTK", .error, .all, "all kernel log output is compiled out: " + silentConsole),
        .builtIn("SERIAL_8250", .error, .all, "the UART has no driver: " + silentConsole),
        .builtIn("SERIAL_8250_CONSOLE", .error, .all, "the UART cannot be the console (console=ttyS0): " + silentConsole),
        .builtIn("BLK_DEV_INITRD", .error, .all, "initrd/initramfs support is missing: --initrd is ignored and rdinit= does nothing"),
        .builtIn("EXT4_FS", .error, .all, "the ext4 root filesystem cannot be mounted: \"VFS: Unable to mount root fs\""),
        .off("MODULES", .warning, .all, "a microVM guest has no module tree and boots with nomodule, so modules only hide drivers (=m) that can never load"),
        .builtIn("RANDOM_TRUST_CPU", .warning, .all, "CPU RNG output is not credited at boot, so early getrandom() callers can block waiting for entropy"),
        // x86_64, both paths.
        .builtIn("KVM_GUEST", .warning, .x86, "no KVM paravirtual clock (kvmclock) or pv ops: timekeeping degrades and falls back to emulated timers", fix: "(in 6.1 it brings kvmclock with it; there is no separate KVM_CLOCK option)"),
        .builtIn("SERIO_I8042", .error, .x86, "the VM hangs on reboot: reboot=k resets through the i8042 controller, the only reset swiftvm emulates"),
        .builtIn("KEYBOARD_ATKBD", .error, .x86, "the VM hangs on reboot: the i8042 keyboard controller reboot=k uses is not set up by its driver"),
        .builtIn("PTP_1588_CLOCK_KVM", .warning, .x86, "no KVM PTP clock (/dev/ptp0) for guests that need precise host time", fix: "(with CONFIG_PTP_1588_CLOCK=y)"),
        // x86_64 with ACPI.
        .builtIn("ACPI", .error, [.x86_64ACPI], "the guest cannot read swiftvm's ACPI tables (MADT, DSDT), so it cannot enumerate its CPUs and virtio devices"),
        .builtIn("PCI", .error, [.x86_64ACPI], "the kernel fails to boot with ACPI enabled: ACPI initialisation walks PCI configuration space", when: "ACPI", fix: "(needed alongside CONFIG_ACPI=y even though there is no PCI bus)"),
        .off("VIRTIO_MMIO_CMDLINE_DEVICES", .warning, [.x86_64ACPI], "it has no function on the ACPI path, where the DSDT describes the devices, and a wrong virtio_mmio.device= address can crash the guest"),
        // x86_64 without ACPI.
        .builtIn("VIRTIO_MMIO_CMDLINE_DEVICES", .error, [.x86_64NoACPI], "swiftvm --no-acpi lists the virtio devices only as virtio_mmio.device= stanzas on the command line, which nothing parses: no root disk, no entropy device"),
        .builtIn("X86_MPPARSE", .error, [.x86_64NoACPI], "the MP table is ignored, so the guest finds neither its other CPUs nor the IOAPIC"),
        // aarch64.
        .builtIn("ARM64_4K_PAGES", .error, [.aarch64], "the kernel does not use 4 KiB pages: swiftvm's loader refuses 16K/64K-page Images, and nothing in CI exercises a 64K-page guest", unless: ["ARM64_16K_PAGES", "ARM64_64K_PAGES"]),
        .off("ARM64_16K_PAGES", .error, [.aarch64], "a 16 KiB-page kernel: swiftvm's loader refuses it, and every tested microVM guest uses 4 KiB pages", fix: "CONFIG_ARM64_4K_PAGES=y"),
        .off("ARM64_64K_PAGES", .error, [.aarch64], "a 64 KiB-page kernel: swiftvm's loader refuses it, and nothing in CI exercises a 64K-page guest", fix: "CONFIG_ARM64_4K_PAGES=y"),
        .builtIn("ARM64_VA_BITS_48", .warning, [.aarch64], "a smaller virtual address space breaks software that assumes 48 bits, such as the Go race detector"),
        .builtIn("ARM_GIC", .error, [.aarch64], "no interrupt controller driver: the kernel cannot take interrupts and stops early in boot"),
        .builtIn("ARM_GIC_V3", .error, [.aarch64], "no GICv3 driver for the interrupt controller swiftvm creates: the kernel stops early in boot"),
        .builtIn("ARM_GIC_V3_ITS", .warning, [.aarch64], "no GICv3 ITS driver, so no message-signalled interrupts"),
        .builtIn("ARM_ARCH_TIMER", .error, [.aarch64], "no driver for the architected timer, the only timer the machine has: the kernel hangs at boot"),
        .builtIn("ARM_AMBA", .error, [.aarch64], "no AMBA bus, so AMBA devices such as the PL031 RTC are never probed"),
        .builtIn("RTC_DRV_PL031", .warning, [.aarch64], "the PL031 RTC has no driver, so wall-clock time starts at 1970 until something sets it"),
        .builtIn("SERIAL_OF_PLATFORM", .error, [.aarch64], "the 16550 UART in the device tree is never bound: " + silentConsole),
        .builtIn("HVC_DRIVER", .warning, [.aarch64], "no hypervisor virtual console, so the virtio console (hvc0) is unusable", fix: "(selected by CONFIG_VIRTIO_CONSOLE=y)"),
        .builtIn("EFI", .error, [.aarch64], "no EFI support: the Image has no PE/EFI-stub header, the format aarch64 microVM kernels are booted in, and ACPI cannot be enabled"),
        .builtIn("EFI_STUB", .error, [.aarch64], "the Image has no EFI stub, the boot handshake aarch64 microVM monitors use", fix: "(selected by CONFIG_EFI=y)"),
        .builtIn("ACPI", .warning, [.aarch64], "the guest cannot use ACPI tables from a VMM that provides them (the device tree still works)"),
        .builtIn("ACPI_REDUCED_HARDWARE_ONLY", .warning, [.aarch64], "ACPI is not in hardware-reduced mode, the only ACPI profile an aarch64 microVM has", when: "ACPI"),
        .builtIn("ACPI_GTDT", .warning, [.aarch64], "the timer cannot be found from ACPI (GTDT) when booted with ACPI tables", when: "ACPI"),
        .builtIn("ACPI_SPCR_TABLE", .warning, [.aarch64], "the serial console cannot be found from ACPI (SPCR) when booted with ACPI tables", when: "ACPI"),
        .builtIn("ACPI_IORT", .warning, [.aarch64], "the ITS cannot be found from ACPI (IORT) when booted with ACPI tables", when: "ACPI"),
        .builtIn("ACPI_PPTT", .warning, [.aarch64], "the CPU topology cannot be read from ACPI (PPTT) when booted with ACPI tables", when: "ACPI"),
        .off("VIRTIO_MMIO_CMDLINE_DEVICES", .warning, [.aarch64], "the device tree already lists every virtio device; command-line stanzas can only disagree with it, and a wrong address can crash the guest"),
    ]

    /// One requirement on one option.
    struct Rule: Sendable {
        enum Expectation: Sendable {
            /// Must be `=y`; `=m` is a separate error because nothing loads modules.
            case builtIn
            /// Must be off; `=y` or `=m` is the finding.
            case off
        }

        var option: String
        var expectation: Expectation
        var severity: KernelConfigFinding.Severity
        var paths: Set<GuestPath>
        var consequence: String
        /// Only checked when this option is `=y`.
        var when: String?
        /// Not checked when any of these is `=y` (their own rule reports it).
        var unless: [String] = []
        /// For ``Expectation/builtIn``, said after `CONFIG_X=y`; for ``Expectation/off``, the whole fix.
        var fix: String?

        static func builtIn(
            _ option: String, _ severity: KernelConfigFinding.Severity, _ paths: Set<GuestPath>, _ consequence: String,
            when: String? = nil, unless: [String] = [], fix: String? = nil
        ) -> Rule {
            Rule(option: "CONFIG_" + option, expectation: .builtIn, severity: severity, paths: paths, consequence: consequence, when: when, unless: unless, fix: fix)
        }

        static func off(
            _ option: String, _ severity: KernelConfigFinding.Severity, _ paths: Set<GuestPath>, _ consequence: String, fix: String? = nil
        ) -> Rule {
            Rule(option: "CONFIG_" + option, expectation: .off, severity: severity, paths: paths, consequence: consequence, fix: fix)
        }

        func evaluate(_ config: KernelConfig) -> KernelConfigFinding? {
            if let when, !config.isBuiltIn(when) { return nil }
            if unless.contains(where: { config.isBuiltIn($0) }) { return nil }
            let value = config[option]
            switch (expectation, value) {
            case (.builtIn, .builtIn), (.off, .notSet):
                return nil
            case (.builtIn, .module):
                return finding(
                    value, "built as a module, which a microVM guest never loads, so at boot " + consequence,
                    fix: "\(option)=y (built in: CONFIG_MODULES is off in a microVM guest, so =m cannot load)")
            case (.builtIn, _):
                return finding(value, consequence, fix: "\(option)=y" + (fix.map { " " + $0 } ?? ""))
            case (.off, _):
                return finding(value, consequence, fix: fix ?? "# \(option) is not set")
            }
        }

        private func finding(_ value: KernelConfigValue, _ problem: String, fix: String) -> KernelConfigFinding {
            KernelConfigFinding(option: option, value: value, severity: severity, problem: problem, fix: fix)
        }
    }
}

extension Set where Element == GuestPath {
    static var all: Self { Set(GuestPath.allCases) }
    static var x86: Self { [.x86_64ACPI, .x86_64NoACPI] }
}
