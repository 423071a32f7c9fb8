import SwiftVMBoot

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
/// i8042 on x86, ACPI or an MP table or a device tree) and the rule that
/// nothing can be loaded as a module.
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
    // paths, and what the guest suffers without it. Every consequence was
    // checked against the Linux 6.1 source; a comment names the file where
    // the seed's claim was wrong.
    static let rules: [Rule] = [
        // Every path: the virtio-MMIO transport and each device's driver.
        .builtIn("VIRTIO_MMIO", .error, .all, "no virtio device is found: no root disk, no entropy device, and no network, vsock or balloon device when one is attached", fix: "(it selects CONFIG_VIRTIO, the virtio core)"),
        .builtIn("VIRTIO_BLK", .error, .all, "the root disk (/dev/vda) never appears and the kernel panics with \"VFS: Unable to mount root fs\""),
        // Network, vsock and balloon devices are attached only when the user
        // asks for them, and the guest boots without their drivers: warnings.
        .builtIn("VIRTIO_NET", .warning, .all, "a virtio-net device, when one is attached, has no driver: the guest has no network interface"),
        .builtIn("VSOCKETS", .warning, .all, "AF_VSOCK does not exist, so when a vsock device is attached, host-to-guest agents cannot connect"),
        .builtIn("VIRTIO_VSOCKETS", .warning, .all, "a vsock device, when one is attached, has no driver, so host-to-guest agents cannot connect", fix: "(with CONFIG_VSOCKETS=y)"),
        // drivers/char/random.c (6.1): the CRNG is credited from the CPU RNG
        // (random_init_early()) or from timer jitter while a getrandom() caller
        // waits (try_to_generate_entropy()), so nothing stalls without it; what
        // is lost is the default virtio-rng device (virtio-rng.c credits it).
        .builtIn("HW_RANDOM_VIRTIO", .error, .all, "the virtio-rng device swiftvm attaches by default has no driver, so host entropy never seeds the kernel's CRNG (which still initialises from the CPU's RNG or timer jitter)", fix: "(with CONFIG_HW_RANDOM=y)"),
        .builtIn("VIRTIO_BALLOON", .warning, .all, "a balloon device, when one is attached, has no driver, so the host cannot reclaim guest memory"),
        // Every path: the console and the root filesystem.
        // kernel/printk/printk.c: register_console() and console_device() exist
        // without PRINTK, so only the kernel's own messages are lost.
        .builtIn("PRINTK", .error, .all, "every kernel message is compiled out: no boot log and no panic text on the console, only what userspace writes"),
        .builtIn("SERIAL_8250", .error, .all, "the UART has no driver: " + silentConsole),
        .builtIn("SERIAL_8250_CONSOLE", .error, .all, "the UART cannot be the console (console=ttyS0): " + silentConsole),
        // init/Makefile: without it init/noinitramfs.c replaces initramfs.c.
        .builtIn("BLK_DEV_INITRD", .error, .all, "initrd/initramfs support is compiled out: an --initrd image is never unpacked and rdinit= finds nothing to run, so a guest booted from an initrd has no root filesystem"),
        .builtIn("EXT4_FS", .error, .all, "the ext4 root filesystem cannot be mounted: \"VFS: Unable to mount root fs\""),
        .off("MODULES", .warning, .all, "a microVM guest has no module tree to load from (swiftvm's default x86 command line also passes nomodule), so modules only hide drivers (=m) that can never load"),
        // drivers/char/random.c random_init_early(): trust_cpu credits RDRAND
        // (x86) or RNDR/the SMCCC TRNG (arm64); without it wait_for_random_bytes()
        // gathers timer jitter until the CRNG is ready: a wait, not a stall.
        .builtIn("RANDOM_TRUST_CPU", .warning, .all, "the CPU's RNG output is mixed in but not credited at boot, so the CRNG is not ready at once and early blocking getrandom() callers wait until timer jitter or virtio-rng has seeded it"),
        // x86_64, both paths.
        // arch/x86/Kconfig: KVM_GUEST is "KVM Guest support (including kvmclock)".
        // kvmclock.c also sets x86_platform.get_wallclock; the fallback,
        // mach_get_cmos_time() (arch/x86/kernel/rtc.c), finds no CMOS RTC here.
        .builtIn("KVM_GUEST", .warning, .x86, "no kvmclock or KVM paravirtual features: timekeeping falls back to emulated timers, and the wall clock starts at 1970 because swiftvm has no CMOS RTC to read it from instead", fix: "(with CONFIG_HYPERVISOR_GUEST=y and CONFIG_PARAVIRT=y; in 6.1 it brings kvmclock with it; there is no separate KVM_CLOCK option)"),
        // arch/x86/kernel/reboot.c, BOOT_KBD: kb_wait() and outb(0xfe, 0x64) reset
        // through the controller with no driver. The drivers only turn a
        // Ctrl-Alt-Del into ctrl_alt_del() (drivers/tty/vt/keyboard.c fn_boot_it()).
        .builtIn("SERIO_I8042", .warning, .x86, "no i8042 driver, so a Ctrl-Alt-Del the host sends through the i8042 to ask for a clean shutdown (as Firecracker's SendCtrlAltDel does) never reaches the guest; reboot=k does not need it: the kernel resets the VM by writing 0xfe to port 0x64 itself", fix: "(with CONFIG_SERIO=y)"),
        .builtIn("KEYBOARD_ATKBD", .warning, .x86, "no AT keyboard driver, so a Ctrl-Alt-Del the host sends through the i8042 to ask for a clean shutdown (as Firecracker's SendCtrlAltDel does) is never seen; reboot=k does not need it: the kernel resets the VM by writing 0xfe to port 0x64 itself", fix: "(with CONFIG_INPUT_KEYBOARD=y; it selects CONFIG_SERIO_I8042)"),
        // drivers/ptp/ptp_kvm_x86.c: the host's clock through the KVM_HC_CLOCK_PAIRING hypercall.
        .builtIn("PTP_1588_CLOCK_KVM", .warning, .x86, "no KVM PTP clock (/dev/ptp0), which chrony and similar clients use to follow the host's clock precisely", fix: "(with CONFIG_PTP_1588_CLOCK=y and CONFIG_KVM_GUEST=y)"),
        // x86_64 with ACPI.
        // Machine+Boot.swift writes the MP table on this path too, and without
        // ACPI arch/x86/Kconfig forces X86_MPPARSE on: only the devices are lost.
        .builtIn("ACPI", .error, [.x86_64ACPI], "the guest cannot read swiftvm's ACPI tables, and on this path only the DSDT describes the virtio devices: no root disk, no entropy device (the CPUs are still found through the MP table)"),
        // drivers/acpi/Kconfig: ACPI neither depends on nor selects PCI on x86,
        // and the PCI parts of ACPI compile out (drivers/acpi/Makefile pci_*.o,
        // osl.c, ACPI_PCI_CONFIGURED in include/acpi/platform/aclinux.h); no
        // boot failure follows from the source, so this is a warning.
        .builtIn("PCI", .warning, [.x86_64ACPI], "ACPI without the PCI core is an untested combination on x86: Linux 6.1 builds it, but microVM kernels with ACPI are built and tested with PCI on, and Firecracker documents CONFIG_PCI=y as needed for ACPI initialisation", when: "ACPI", fix: "(no PCI bus is needed; it is the configuration ACPI guests are tested in)"),
        .off("VIRTIO_MMIO_CMDLINE_DEVICES", .warning, [.x86_64ACPI], "it has no function on the ACPI path, where the DSDT describes the devices, and a wrong virtio_mmio.device= address can crash the guest"),
        // x86_64 without ACPI.
        .builtIn("VIRTIO_MMIO_CMDLINE_DEVICES", .error, [.x86_64NoACPI], "swiftvm --no-acpi lists the virtio devices only as virtio_mmio.device= stanzas on the command line, which nothing parses: no root disk, no entropy device"),
        // arch/x86/include/asm/mpspec.h: without it mpparse.c is not built and
        // default_find_smp_config()/default_get_smp_config() do nothing.
        .builtIn("X86_MPPARSE", .error, [.x86_64NoACPI], "the MP table is ignored, so the guest finds neither its other CPUs nor the IOAPIC"),
        // aarch64.
        .builtIn("ARM64_4K_PAGES", .error, [.aarch64], "the kernel does not use 4 KiB pages: swiftvm's loader refuses 16K/64K-page Images, and nothing in CI exercises a 64K-page guest", unless: ["ARM64_16K_PAGES", "ARM64_64K_PAGES"]),
        .off("ARM64_16K_PAGES", .error, [.aarch64], "a 16 KiB-page kernel: swiftvm's loader refuses it, and every tested microVM guest uses 4 KiB pages", fix: "CONFIG_ARM64_4K_PAGES=y"),
        .off("ARM64_64K_PAGES", .error, [.aarch64], "a 64 KiB-page kernel: swiftvm's loader refuses it, and nothing in CI exercises a 64K-page guest", fix: "CONFIG_ARM64_4K_PAGES=y"),
        .builtIn("ARM64_VA_BITS_48", .warning, [.aarch64], "a smaller virtual address space breaks software that assumes 48 bits, such as the Go race detector"),
        // drivers/irqchip/Makefile: ARM_GIC is the GICv2 driver (irq-gic.o);
        // swiftvm creates only a GICv3 (SwiftVMHost/KVM/Arm64/GICv3.swift).
        .builtIn("ARM_GIC", .warning, [.aarch64], "no GICv2 driver: swiftvm's GICv3 does not need it, but the kernel cannot take interrupts on a host or VMM that offers only a GICv2", fix: "(arm64 selects it)"),
        .builtIn("ARM_GIC_V3", .error, [.aarch64], "no GICv3 driver for the interrupt controller swiftvm creates: the kernel stops early in boot"),
        .builtIn("ARM_GIC_V3_ITS", .warning, [.aarch64], "no GICv3 ITS driver, so no message-signalled interrupts"),
        // arch/arm64/kernel/time.c time_init(): panic("Unable to initialise
        // architected timer.") comes before console_init() (init/main.c).
        .builtIn("ARM_ARCH_TIMER", .error, [.aarch64], "no driver for the architected timer, the only timer the machine has: the kernel panics in time_init() before the console is up, so the guest seems to hang"),
        // The PL031 is the one AMBA device in swiftvm's device tree: losing the
        // bus loses no more than the RTC rule below, so it weighs the same.
        .builtIn("ARM_AMBA", .warning, [.aarch64], "no AMBA bus, so the PL031 RTC (the one AMBA device swiftvm gives the guest) is never probed and wall-clock time starts at 1970"),
        .builtIn("RTC_DRV_PL031", .warning, [.aarch64], "the PL031 RTC has no driver, so wall-clock time starts at 1970 until something sets it"),
        .builtIn("SERIAL_OF_PLATFORM", .error, [.aarch64], "the 16550 UART in the device tree is never bound: " + silentConsole),
        // Arm64ImageLoader enters the raw Image at its first byte with X0 = the
        // device tree (Documentation/arm64/booting.rst); the PE header the EFI
        // stub adds (arch/arm64/kernel/efi-header.S) is only for UEFI firmware.
        .builtIn("EFI", .warning, [.aarch64], "no UEFI support: swiftvm does not need it, since it boots the raw Image through the arm64 boot protocol, but UEFI firmware cannot start this Image and arm64 cannot enable ACPI without it", fix: "(it selects CONFIG_EFI_STUB and, on arm64, ARCH_SUPPORTS_ACPI)"),
        .builtIn("ACPI", .warning, [.aarch64], "the guest cannot use ACPI tables from a VMM that provides them (the device tree still works)", fix: "(with CONFIG_EFI=y, which arm64 ACPI needs)"),
        .builtIn("ACPI_REDUCED_HARDWARE_ONLY", .warning, [.aarch64], "ACPI is not in hardware-reduced mode, the only ACPI profile an aarch64 microVM has", when: "ACPI", fix: arm64SelectsWithACPI),
        .builtIn("ACPI_GTDT", .warning, [.aarch64], "the timer cannot be found from ACPI (GTDT) when booted with ACPI tables", when: "ACPI", fix: arm64SelectsWithACPI),
        // arch/arm64/kernel/acpi.c acpi_boot_table_init() -> acpi_parse_spcr().
        .builtIn("ACPI_SPCR_TABLE", .warning, [.aarch64], "the console is not taken from ACPI's SPCR table when booted with ACPI tables, so console= must name it", when: "ACPI", fix: arm64SelectsWithACPI),
        // drivers/irqchip/irq-gic-v3-its.c finds the ITS in the MADT; the IORT
        // maps devices onto it (include/linux/acpi_iort.h).
        .builtIn("ACPI_IORT", .warning, [.aarch64], "devices cannot be mapped to the ITS (for MSIs) or an IOMMU from ACPI (IORT) when booted with ACPI tables", when: "ACPI", fix: arm64SelectsWithACPI),
        .builtIn("ACPI_PPTT", .warning, [.aarch64], "the CPU topology cannot be read from ACPI (PPTT) when booted with ACPI tables", when: "ACPI", fix: arm64SelectsWithACPI),
        .off("VIRTIO_MMIO_CMDLINE_DEVICES", .warning, [.aarch64], "the device tree already lists every virtio device; command-line stanzas can only disagree with it, and a wrong address can crash the guest"),
    ]

    static let arm64SelectsWithACPI = "(arm64 selects it with CONFIG_ACPI=y)"

    /// One requirement on one option.
    struct Rule: Sendable {
        enum Expectation: Sendable {
            /// Must be `=y`; `=m` is its own finding because nothing loads modules.
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
