import Foundation
import SwiftVM
import SwiftVMHost
import Testing
import SwiftVMBoot

/// Boots a real Linux vmlinux built from GuestConfigs/ and reads its early
/// boot log from swiftvm's serial console.
///
/// The kernel comes from SWIFTVM_TEST_KERNEL or the cache of
/// scripts/build-kernel.sh. On a host with hardware virtualization the kernel
/// boots until it finds no root file system and reboots; on a host whose KVM
/// only emulates (kvm_pvm) it stops at its int3 self-test, after the console is
/// up, and the test says so.
@Suite("A real Linux kernel", .serialized, .enabled(if: GuestKernel.path != nil, "no guest kernel: run scripts/build-kernel.sh or set SWIFTVM_TEST_KERNEL"), .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct RealKernelTests {
    @Test("the early boot log shows our command line, our e820 map and the serial console")
    func earlyBoot() throws {
        let kernel = try #require(GuestKernel.path)
        let template = SwiftVMProcess.packageRoot.appendingPathComponent("GuestConfigs/cpu-templates/no-cx16-no-xsave.json").path
        let cmdline = KernelCommandLine.defaultX86 + " noxsave"
        let outcome = try SwiftVMProcess.run(
            ["run", "--kernel", kernel, "--memory", "128", "--cpu-template", template, "--cmdline", cmdline,
             "--no-console-input"],
            timeout: 240)
        let log = outcome.stdoutLines

        #expect(log.contains { $0.hasPrefix("Linux version 6.1") }, "no kernel banner; stderr: \(outcome.stderr)")
        #expect(log.contains("Command line: \(cmdline)"))
        // The e820 map exactly as swiftvm built it, in the kernel's own words.
        for entry in E820Map.x86(ramSize: 128 << 20) {
            let last = entry.addr + entry.size - 1
            let kind = entry.type == .ram ? "usable" : "reserved"
            let line = "BIOS-e820: [mem 0x\(Self.hex16(entry.addr))-0x\(Self.hex16(last))] \(kind)"
            #expect(log.contains(line), "missing \(line)")
        }
        #expect(log.contains { $0.hasSuffix("printk: console [ttyS0] enabled") })
        // Linux found and read swiftvm's ACPI tables.
        for table in ["RSDP", "XSDT", "FACP", "DSDT", "APIC"] {
            #expect(log.contains { $0.hasPrefix("ACPI: \(table) 0x") }, "Linux did not list the \(table) table")
        }
        #expect(log.contains("ACPI: Using ACPI (MADT) for SMP configuration information"))

        let host = HostReport.probe()
        if host.canRunUnmodifiedGuests {
            // No root file system was given: the kernel panics and, with panic=1, reboots.
            #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
            #expect(outcome.stdout.contains("Kernel panic - not syncing"))
        } else {
            // An emulating KVM cannot run the kernel's int3 self-test: it stops with
            // an emulation failure right after the console is up.
            #expect(outcome.status == 81, "stderr: \(outcome.stderr)")
            #expect(outcome.stderr.contains("instruction bytes at rip: cc"))
            // ... and swiftvm says what it is and what gets a kernel past it.
            #expect(outcome.stderr.contains("(int3)"))
            #expect(outcome.stderr.contains("<int3_selftest+0x"))
            #expect(outcome.stderr.contains("this KVM cannot emulate int3"))
            #expect(outcome.stderr.contains("scripts/build-kernel.sh --test-kernel"))
            print("real kernel: this host's KVM (\(host.kvmModules.joined(separator: ", "))) has no hardware "
                + "virtualization; the kernel got as far as '\(log.last ?? "")' and stopped at its int3 "
                + "self-test, so nothing past early boot was checked")
        }
    }

    static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }
}

/// The full boot: Linux to user space, every device driven by Linux's own
/// drivers (scripts/boot-smoke.sh). On a host whose KVM only emulates guests
/// this needs the test kernel (GuestConfigs/test-kernel).
@Suite(
    "Linux boots to user space and drives every device", .serialized,
    .enabled(if: GuestKernel.smokePath != nil, "no kernel for the full boot: run \(GuestKernel.smokeBuildCommand) or set SWIFTVM_SMOKE_KERNEL"),
    .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"),
    .enabled(if: FileManager.default.isExecutableFile(atPath: "/bin/busybox"), "needs Debian's busybox-static for the rootfs"))
struct FullBootTests {
    @Test("boot smoke: user space, device checks, power-off, and a 2-vCPU reboot")
    func bootSmoke() throws {
        let binary = try #require(SwiftVMProcess.binary)
        let script = SwiftVMProcess.packageRoot.appendingPathComponent("scripts/boot-smoke.sh").path
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script, "--swiftvm", binary, "--kernel", try #require(GuestKernel.smokePath), "--timeout", "480"]
        process.currentDirectoryURL = SwiftVMProcess.packageRoot
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let lines = text.split(separator: "\n").map(String.init)
        for line in lines where line.hasPrefix("STAGE") || line.hasPrefix("NOTE") { print("boot smoke: \(line)") }
        #expect(process.terminationStatus == 0, "boot-smoke.sh:\n\(text)")
        #expect(!lines.contains { $0.hasPrefix("FAIL") }, "boot-smoke.sh:\n\(text)")
        // What a user would miss first if it broke: each device's driver, the
        // data on the drives, and both ways the guest ends.
        for check in [
            "PASS 8250 driver bound COM1 (ttyS0 at I/O 0x3f8)",
            "PASS i8042 driver found the controller (PNP0303 at 0x60,0x64)",
            "PASS virtio-blk driver: root drive vda", "PASS virtio-blk driver: scratch drive vdb",
            "PASS ext4 root mounted from vda", "PASS init ran from the rootfs",
            "PASS virtio bus: 2 block devices bound to virtio_blk (saw 2)",
            "PASS virtio bus: the entropy device bound to virtio_rng (saw 1)",
            "PASS hwrng returned 64 bytes, not all zero",
            "PASS file written, fsynced and re-read from the device: same checksum",
            "PASS raw sector on vdb written and re-read", "PASS the scratch image holds the guest's sector",
            "PASS the rootfs image is clean after the power-off (e2fsck -fn)",
            "PASS the guest powered off: swiftvm exited 0", "PASS both CPUs came up",
            "PASS virtio-balloon driver bound",
            "PASS SendCtrlAltDel: the guest's init saw Ctrl-Alt-Del and shut down",
            "PASS the guest rebooted: swiftvm exited 0",
        ] {
            #expect(lines.contains(check), "missing \(check)")
        }
        #expect(lines.contains { $0.hasPrefix("PASS the rootfs image holds the guest's file (md5 ") })
        #expect(lines.contains("PASS the file is the first MiB of the rootfs's busybox"))
        #expect(lines.contains { $0.hasPrefix("PASS ttyS0 delivered interrupts (") })
        #expect(lines.contains { $0.hasPrefix("PASS seccomp filter on every VMM thread (") })
        #expect(lines.contains { $0.hasPrefix("PASS balloon: the guest's MemTotal fell by 64 MiB (") })
        #expect(lines.contains { $0.hasPrefix("PASS balloon: the guest's MemTotal came back (") })
        #expect(lines.filter { $0.hasPrefix("STAGE ") }.count == 2)
    }
}

/// Where the built guest kernels are, if they are built.
enum GuestKernel {
    /// The kernel for the full boot: the stock kernel on a host with hardware
    /// virtualization, the test kernel on a host whose KVM only emulates.
    static let smokePath: String? = {
        if let path = ProcessInfo.processInfo.environment["SWIFTVM_SMOKE_KERNEL"], !path.isEmpty { return path }
        return HostReport.probe().canRunUnmodifiedGuests ? GuestKernel.path : cachedKernel(["--test-kernel"])
    }()

    static var smokeBuildCommand: String {
        HostReport.probe().canRunUnmodifiedGuests ? "scripts/build-kernel.sh" : "scripts/build-kernel.sh --test-kernel"
    }

    static let path: String? = {
        if let path = ProcessInfo.processInfo.environment["SWIFTVM_TEST_KERNEL"], !path.isEmpty { return path }
        return cachedKernel([])
    }()

    /// The cached kernel `scripts/build-kernel.sh ARGUMENTS` would build; nil when it is not built.
    static func cachedKernel(_ arguments: [String]) -> String? {
        let script = SwiftVMProcess.packageRoot.appendingPathComponent("scripts/build-kernel.sh").path
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script, "--print-path"] + arguments
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        process.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let path = text.split(separator: "\n").last.map(String.init) ?? ""
        return process.terminationStatus == 0 && FileManager.default.fileExists(atPath: path) ? path : nil
    }
}
