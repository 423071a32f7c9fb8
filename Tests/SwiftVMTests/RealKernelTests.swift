import Foundation
import SwiftVM
import Testing

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
            print("real kernel: this host's KVM (\(host.kvmModules.joined(separator: ", "))) has no hardware "
                + "virtualization; the kernel got as far as '\(log.last ?? "")' and stopped at its int3 "
                + "self-test, so nothing past early boot was checked")
        }
    }

    @Test("boot smoke: a GuestConfigs kernel with a BusyBox rootfs (scripts/boot-smoke.sh)", .enabled(if: FileManager.default.isExecutableFile(atPath: "/bin/busybox"), "needs Debian's busybox-static for the rootfs"))
    func bootSmoke() throws {
        let binary = try #require(SwiftVMProcess.binary)
        let script = SwiftVMProcess.packageRoot.appendingPathComponent("scripts/boot-smoke.sh").path
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script, "--swiftvm", binary, "--kernel", try #require(GuestKernel.path), "--timeout", "300"]
        process.currentDirectoryURL = SwiftVMProcess.packageRoot
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let lines = text.split(separator: "\n").map(String.init)
        #expect(process.terminationStatus == 0, "boot-smoke.sh:\n\(text)")
        #expect(lines.contains("PASS kernel command line has root=/dev/vda rw"))
        #expect(lines.contains("PASS serial console enabled"))
        #expect(lines.contains("PASS ACPI tables read (MADT)"))
        for note in lines where note.hasPrefix("NOTE") { print("boot smoke: \(note)") }
    }

    static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }
}

/// Where the built guest kernel is, if there is one.
enum GuestKernel {
    static let path: String? = {
        if let path = ProcessInfo.processInfo.environment["SWIFTVM_TEST_KERNEL"], !path.isEmpty { return path }
        let script = SwiftVMProcess.packageRoot.appendingPathComponent("scripts/build-kernel.sh").path
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script, "--print-path"]
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        process.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let path = text.split(separator: "\n").last.map(String.init) ?? ""
        return process.terminationStatus == 0 && FileManager.default.fileExists(atPath: path) ? path : nil
    }()
}
