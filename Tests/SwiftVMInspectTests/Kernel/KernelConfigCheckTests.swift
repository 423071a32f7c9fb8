import Foundation
import Testing
@testable import SwiftVMInspect
import SwiftVMTestSupport

/// The seed's silent failure modes, each fed to the checker, which must name
/// the option, its value and what the guest suffers.
@Suite("KernelConfigCheck")
struct KernelConfigCheckTests {
    static let configDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("GuestConfigs")

    /// The project's fragment for `path`, parsed: it names every option the guest needs.
    static func fragment(_ path: GuestPath) throws -> KernelConfig {
        let name = switch path {
        case .x86_64ACPI: "microvm-x86_64-6.1.config"
        case .x86_64NoACPI: "microvm-x86_64-6.1-no-acpi.config"
        case .aarch64: "microvm-aarch64-6.1.config"
        }
        return try KernelConfig.parse(String(contentsOf: configDirectory.appendingPathComponent(name), encoding: .utf8))
    }

    /// `config` with some options changed (`nil` removes the line: not set).
    static func changed(_ config: KernelConfig, _ changes: [String: KernelConfigValue?]) -> KernelConfig {
        var options = config.options
        for (name, value) in changes { options["CONFIG_" + name] = value ?? nil }
        return KernelConfig(options: options)
    }

    static func findings(_ path: GuestPath, _ changes: [String: KernelConfigValue?]) throws -> [KernelConfigFinding] {
        KernelConfigCheck.check(changed(try fragment(path), changes), path: path)
    }

    @Test("each GuestConfigs fragment passes the check for its own path", arguments: GuestPath.allCases)
    func fragmentsPass(path: GuestPath) throws {
        let findings = KernelConfigCheck.check(try Self.fragment(path), path: path)
        #expect(findings.isEmpty, "\(findings.map(\.description))")
    }

    @Test("a missing driver for a device swiftvm always gives is an error", arguments: ["VIRTIO_MMIO", "VIRTIO_BLK", "HW_RANDOM_VIRTIO"])
    func missingVirtio(option: String) throws {
        for path in GuestPath.allCases {
            let findings = try Self.findings(path, [option: nil])
            let finding = try #require(findings.first { $0.option == "CONFIG_" + option })
            #expect(finding.severity == .error)
            #expect(finding.description.hasPrefix("error CONFIG_\(option) is not set: "))
            #expect(finding.fix.hasPrefix("CONFIG_\(option)=y"))
        }
    }

    @Test("a missing driver for a device attached only on request is a warning that says so",
          arguments: ["VIRTIO_NET", "VSOCKETS", "VIRTIO_VSOCKETS", "VIRTIO_BALLOON"])
    func missingOptionalVirtio(option: String) throws {
        for path in GuestPath.allCases {
            let findings = try Self.findings(path, [option: nil])
            #expect(findings.map(\.option) == ["CONFIG_" + option])
            let finding = try #require(findings.first)
            #expect(finding.severity == .warning)
            #expect(finding.problem.contains(" is attached"), "\(finding.problem)")
            #expect(finding.fix.hasPrefix("CONFIG_\(option)=y"))
        }
    }

    @Test("no virtio-rng driver: the host's entropy is unused, but nothing claims getrandom() stalls")
    func entropy() throws {
        let finding = try #require(try Self.findings(.x86_64ACPI, ["HW_RANDOM_VIRTIO": nil]).first)
        #expect(finding.problem.contains("host entropy never seeds the kernel's CRNG"))
        #expect(!finding.problem.contains("stall"))
        let trustCPU = try #require(try Self.findings(.aarch64, ["RANDOM_TRUST_CPU": nil]).first)
        #expect(trustCPU.severity == .warning)
        #expect(!trustCPU.problem.contains("stall"))
    }

    @Test("a virtio driver built as a module is its own error")
    func modularVirtio() throws {
        let findings = try Self.findings(.x86_64ACPI, ["VIRTIO_BLK": .module])
        #expect(findings.count == 1)
        let finding = try #require(findings.first)
        #expect(finding.setting == "CONFIG_VIRTIO_BLK=m")
        #expect(finding.problem.hasPrefix("built as a module"))
        #expect(finding.problem.contains("Unable to mount root fs"))
        #expect(finding.fix == "CONFIG_VIRTIO_BLK=y (built in: CONFIG_MODULES is off in a microVM guest, so =m cannot load)")
    }

    @Test("no 8250 driver, or no console on it, boots into silence", arguments: ["SERIAL_8250", "SERIAL_8250_CONSOLE"])
    func silentConsole(option: String) throws {
        for path in GuestPath.allCases {
            let finding = try #require(try Self.findings(path, [option: nil]).first { $0.option == "CONFIG_" + option })
            #expect(finding.severity == .error)
            #expect(finding.problem.contains("the kernel boots into silence: no boot messages"))
        }
    }

    @Test("no printk: the kernel's own messages are gone, not userspace's")
    func noPrintk() throws {
        for path in GuestPath.allCases {
            let finding = try #require(try Self.findings(path, ["PRINTK": nil]).first)
            #expect(finding.option == "CONFIG_PRINTK")
            #expect(finding.severity == .error)
            #expect(finding.problem.contains("no boot log and no panic text"))
            #expect(!finding.problem.contains("shell prompt"))
        }
    }

    @Test("the aarch64 UART needs device-tree probing too")
    func serialOF() throws {
        let finding = try #require(try Self.findings(.aarch64, ["SERIAL_OF_PLATFORM": nil]).first)
        #expect(finding.option == "CONFIG_SERIAL_OF_PLATFORM")
        #expect(finding.problem.contains("boots into silence"))
    }

    @Test("ACPI without PCI is a warning on the ACPI path: 6.1 builds it, but it is untested")
    func acpiWithoutPCI() throws {
        let findings = try Self.findings(.x86_64ACPI, ["PCI": nil])
        #expect(findings.map(\.description) == [
            "warning CONFIG_PCI is not set: ACPI without the PCI core is an untested combination on x86: Linux 6.1 builds it,"
                + " but microVM kernels with ACPI are built and tested with PCI on, and Firecracker documents CONFIG_PCI=y"
                + " as needed for ACPI initialisation."
                + " Fix: CONFIG_PCI=y (no PCI bus is needed; it is the configuration ACPI guests are tested in)",
        ])
        // Without ACPI nothing needs PCI.
        #expect(try Self.findings(.x86_64NoACPI, ["PCI": nil]).isEmpty)
    }

    @Test("the ACPI path without ACPI cannot find its devices")
    func acpiMissing() throws {
        let findings = try Self.findings(.x86_64ACPI, ["ACPI": nil])
        #expect(findings.map(\.option) == ["CONFIG_ACPI"])
        #expect(findings.first?.severity == .error)
        #expect(findings.first?.problem.contains("no root disk") == true)
    }

    @Test("VIRTIO_MMIO_CMDLINE_DEVICES: a warning with ACPI, an error when missing without it")
    func cmdlineDevices() throws {
        let withACPI = try Self.findings(.x86_64ACPI, ["VIRTIO_MMIO_CMDLINE_DEVICES": .builtIn])
        #expect(withACPI.count == 1)
        #expect(withACPI.first?.severity == .warning)
        #expect(withACPI.first?.problem.contains("no function on the ACPI path") == true)
        #expect(withACPI.first?.fix == "# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set")

        let withoutACPI = try Self.findings(.x86_64NoACPI, ["VIRTIO_MMIO_CMDLINE_DEVICES": nil])
        #expect(withoutACPI.count == 1)
        #expect(withoutACPI.first?.severity == .error)
        #expect(withoutACPI.first?.problem.contains("virtio_mmio.device=") == true)
    }

    @Test("no i8042 or AT keyboard driver: a warning about Ctrl-Alt-Del, not about reboot", arguments: ["SERIO_I8042", "KEYBOARD_ATKBD"])
    func ctrlAltDel(option: String) throws {
        for path in [GuestPath.x86_64ACPI, .x86_64NoACPI] {
            let finding = try #require(try Self.findings(path, [option: nil]).first)
            #expect(finding.option == "CONFIG_" + option)
            #expect(finding.severity == .warning)
            #expect(finding.problem.contains("Ctrl-Alt-Del the host sends through the i8042"))
            #expect(finding.problem.contains("reboot=k does not need it"))
            #expect(!finding.problem.contains("hangs"))
        }
        #expect(try Self.findings(.aarch64, [option: nil]).isEmpty, "aarch64 has no i8042")
    }

    @Test("64K and 16K pages on aarch64 are one error each, naming the page size")
    func pageSize() throws {
        let sixtyFour = try Self.findings(.aarch64, ["ARM64_4K_PAGES": nil, "ARM64_64K_PAGES": .builtIn])
        #expect(sixtyFour.map(\.setting) == ["CONFIG_ARM64_64K_PAGES=y"])
        #expect(sixtyFour.first?.problem.contains("nothing in CI exercises a 64K-page guest") == true)
        #expect(sixtyFour.first?.fix == "CONFIG_ARM64_4K_PAGES=y")
        let sixteen = try Self.findings(.aarch64, ["ARM64_4K_PAGES": nil, "ARM64_16K_PAGES": .builtIn])
        #expect(sixteen.map(\.setting) == ["CONFIG_ARM64_16K_PAGES=y"])
    }

    @Test("a 39-bit VA space is a warning, not an error")
    func vaBits() throws {
        let findings = try Self.findings(.aarch64, ["ARM64_VA_BITS_48": nil, "ARM64_VA_BITS_39": .builtIn])
        #expect(findings.map(\.option) == ["CONFIG_ARM64_VA_BITS_48"])
        #expect(findings.first?.severity == .warning)
        #expect(findings.first?.problem.contains("Go race detector") == true)
    }

    @Test("KVM_GUEST and the KVM PTP clock are warnings that mention what degrades")
    func x86Warnings() throws {
        let findings = try Self.findings(.x86_64ACPI, ["KVM_GUEST": nil, "PTP_1588_CLOCK_KVM": nil])
        #expect(findings.map(\.severity) == [.warning, .warning])
        #expect(findings.first?.fix.contains("kvmclock") == true)
        #expect(findings.first?.problem.contains("wall clock starts at 1970") == true)
    }

    @Test("aarch64: EFI and the GICv2 driver are warnings (swiftvm boots the raw Image on a GICv3); the GICv3 and the timer are fatal")
    func aarch64Firmware() throws {
        let efi = try Self.findings(.aarch64, ["EFI": nil, "EFI_STUB": nil])
        #expect(efi.map(\.option) == ["CONFIG_EFI"])
        #expect(efi.first?.severity == .warning)
        #expect(efi.first?.problem.contains("swiftvm does not need it") == true)

        let gicV2 = try Self.findings(.aarch64, ["ARM_GIC": nil])
        #expect(gicV2.map(\.severity) == [.warning])
        #expect(try Self.findings(.aarch64, ["ARM_GIC_V3": nil]).map(\.severity) == [.error])
        let timer = try #require(try Self.findings(.aarch64, ["ARM_ARCH_TIMER": nil]).first)
        #expect(timer.severity == .error)
        #expect(timer.problem.contains("panics in time_init()"))
    }

    @Test("no rule names an option without a prompt that only another option selects")
    func noHiddenOptions() {
        let options = Set(KernelConfigCheck.rules.map(\.option))
        #expect(options.isDisjoint(with: ["CONFIG_EFI_STUB", "CONFIG_HVC_DRIVER"]))
    }

    @Test("errors come before warnings, and the summary counts both")
    func ordering() throws {
        let findings = try Self.findings(.x86_64ACPI, ["KVM_GUEST": nil, "EXT4_FS": nil, "MODULES": .builtIn])
        #expect(findings.map(\.severity) == [.error, .warning, .warning])
        #expect(KernelConfigCheck.summary(findings) == "1 error, 2 warnings")
    }

    @Test("the config build-kernel.sh published next to the cached vmlinux passes",
          .enabled(if: builtConfig != nil, "no cached guest kernel: run scripts/build-kernel.sh"))
    func builtKernelConfig() throws {
        let text = try String(contentsOfFile: try #require(Self.builtConfig), encoding: .utf8)
        let findings = try KernelConfigCheck.check(configText: text, path: .x86_64ACPI)
        #expect(findings.isEmpty, "\(findings.map(\.description))")
    }

    /// The `config` file next to the kernel `scripts/build-kernel.sh --print-path` names, if built.
    static let builtConfig: String? = {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [configDirectory.deletingLastPathComponent().appendingPathComponent("scripts/build-kernel.sh").path, "--print-path"]
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        process.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard process.terminationStatus == 0, let kernel = text.split(separator: "\n").last else { return nil }
        let config = URL(fileURLWithPath: String(kernel)).deletingLastPathComponent().appendingPathComponent("config").path
        return FileManager.default.fileExists(atPath: config) ? config : nil
    }()
}
