import Foundation
import Testing

/// Boots the project's test guest under the real swiftvm binary and checks
/// what a user sees: the guest's own checks, the console, the exit status.
@Suite("Booting the test guest", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct BootTests {
    static func guest() throws -> String {
        try #require(SwiftVMProcess.testGuest, "the test guest did not build (make -C Tests/TestGuest)")
    }

    static func commandLine(mode: String, memory: Int, vcpus: Int) -> String {
        "console=ttyS0 reboot=k panic=1 testguest.mode=\(mode) testguest.mem_mib=\(memory) testguest.cpus=\(vcpus)"
    }

    @Test("the guest's boot-protocol, memory, MP table, SMP and UART checks pass", arguments: [
        (1, 128), (4, 128), (1, 1024), (4, 1024), (1, 4096), (4, 4096),
    ])
    func selftestGuest(vcpus: Int, memory: Int) throws {
        let cmdline = Self.commandLine(mode: "selftest", memory: memory, vcpus: vcpus)
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", try Self.guest(), "--vcpus", "\(vcpus)", "--memory", "\(memory)",
            "--cmdline", cmdline, "--no-console-input",
        ])
        let lines = outcome.stdoutLines
        #expect(!outcome.timedOut)
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(lines.contains("CMDLINE \(cmdline)"), "the guest must see exactly the command line given")
        let failures = lines.filter { $0.hasPrefix("FAIL") }
        #expect(failures.isEmpty, "guest checks failed: \(failures)")
        for check in ["boot-protocol", "e820", "memory-size", "mptable", "smp", "uart-irq"] {
            #expect(lines.contains { $0.hasPrefix("PASS \(check)") }, "no PASS line for \(check) in:\n\(outcome.stdout)")
        }
        let cpus = vcpus == 1 ? "PASS smp: 1 cpu" : "PASS smp: \(vcpus) cpus: apic ids " + (0..<vcpus).map(String.init).joined(separator: " ")
        #expect(lines.contains(cpus))
        #expect(lines.contains("RESULT 6 passed, 0 failed"))
        #expect(outcome.stderr.contains("Guest-boot-time = "), "the boot timer write must be logged")
        #expect(outcome.stderr.contains("the guest reset the machine"))
    }

    @Test("an initrd lands in RAM below the MMIO gap, described in the zero page, byte for byte", arguments: [128, 4096])
    func initrd(memory: Int) throws {
        // The test guest checks these markers at both ends of the image.
        var bytes = Array("SWIFTVM-INITRD\n".utf8)
        bytes += (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
        bytes += Array("\nEND-INITRD\n".utf8)
        let path = try SwiftVMProcess.temporaryFile(bytes, name: "initrd")
        defer { unlink(path) }
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", try Self.guest(), "--initrd", path, "--memory", "\(memory)",
            "--cmdline", Self.commandLine(mode: "selftest", memory: memory, vcpus: 1), "--no-console-input",
        ])
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(outcome.stdoutLines.contains { $0.hasPrefix("PASS initrd: \(bytes.count) bytes at 0x") }, "stdout: \(outcome.stdout)")
        #expect(outcome.stdoutLines.contains("RESULT 7 passed, 0 failed"))
    }

    @Test("the minimal guest of the start-up benchmark boots and resets")
    func minimalGuest() throws {
        _ = try Self.guest()  // builds both guests
        let minimal = SwiftVMProcess.packageRoot.appendingPathComponent("Tests/TestGuest/build/swiftvm-minimal").path
        let outcome = try SwiftVMProcess.run(["run", "--kernel", minimal, "--no-rng", "--no-console-input"])
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("Guest-boot-time = "))
    }

    @Test("a triple fault ends the run with status 80 and a report naming RIP and the instruction")
    func tripleFault() throws {
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", try Self.guest(), "--cmdline", Self.commandLine(mode: "triplefault", memory: 128, vcpus: 1),
            "--no-console-input",
        ])
        #expect(outcome.status == 80)
        #expect(outcome.stderr.contains("triple fault"))
        #expect(outcome.stderr.contains("rip 0x"))
        // The guest faults on ud2 (0f 0b) with no IDT.
        #expect(outcome.stderr.contains("instruction bytes at rip: 0f 0b"), "stderr: \(outcome.stderr)")
    }

    @Test("standard input reaches the guest through the UART's receive interrupt")
    func consoleInput() throws {
        let outcome = try SwiftVMProcess.run(
            ["run", "--kernel", try Self.guest(), "--cmdline", Self.commandLine(mode: "echo", memory: 128, vcpus: 1)],
            input: "hello swiftvm\n", waitFor: "READY")
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(outcome.stdoutLines.contains("ECHO hello swiftvm"), "stdout: \(outcome.stdout)")
    }

    @Test("a kernel panic on the console is explained when the run ends")
    func panicDiagnosis() throws {
        // The echo guest repeats the line, so the console shows a real panic line.
        let outcome = try SwiftVMProcess.run(
            ["run", "--kernel", try Self.guest(), "--cmdline", Self.commandLine(mode: "echo", memory: 128, vcpus: 1)],
            input: "Kernel panic - not syncing: No working init found.\n", waitFor: "READY")
        #expect(outcome.status == 0)
        #expect(outcome.stderr.contains("the guest console showed \"Kernel panic - not syncing: No working init found\""))
        #expect(outcome.stderr.contains("/sbin/init"))
    }

    @Test("a guest that prints nothing gets a warning while it runs, naming the likely causes")
    func silentConsole() throws {
        let outcome = try SwiftVMProcess.run(
            ["run", "--kernel", try Self.guest(), "--cmdline", "reboot=k 8250.nr_uarts=0 testguest.mode=silent",
             "--console-silence-warning", "1", "--no-console-input", "--no-rng"],
            timeout: 3)
        #expect(outcome.timedOut)
        #expect(outcome.stdout.isEmpty)
        #expect(outcome.stderr.contains("after 1 s: the guest printed nothing on its serial console"))
        #expect(outcome.stderr.contains("no console=ttyS0"))
        #expect(outcome.stderr.contains("8250.nr_uarts=0"))
    }

    @Test("SIGTERM stops a running guest with status 143 and says why")
    func terminate() throws {
        let outcome = try SwiftVMProcess.run(
            ["run", "--kernel", try Self.guest(), "--cmdline", Self.commandLine(mode: "spin", memory: 128, vcpus: 2),
             "--vcpus", "2", "--no-console-input"],
            waitFor: "SPINNING", signal: SIGTERM)
        #expect(!outcome.timedOut)
        #expect(outcome.status == 128 + SIGTERM)
        #expect(outcome.stderr.contains("stopped by signal 15"))
    }

    @Test("--serial-out writes the console to a file instead of standard output")
    func serialToFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-serial-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", try Self.guest(), "--cmdline", Self.commandLine(mode: "selftest", memory: 128, vcpus: 1),
            "--serial-out", path, "--no-console-input",
        ])
        #expect(outcome.status == 0)
        #expect(!outcome.stdout.contains("RESULT"))
        let file = try String(contentsOfFile: path, encoding: .utf8)
        #expect(file.contains("RESULT 6 passed, 0 failed"))
    }

    @Test("without --cmdline the guest gets the default command line, and --append adds to it")
    func defaultCommandLine() throws {
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", try Self.guest(), "--append", "testguest.mode=selftest testguest.mem_mib=128 testguest.cpus=1",
            "--no-console-input",
        ])
        #expect(outcome.status == 0)
        let expected = "CMDLINE console=ttyS0 reboot=k panic=1 nomodule 8250.nr_uarts=1 i8042.noaux i8042.nomux "
            + "i8042.dumbkbd swiotlb=noforce testguest.mode=selftest testguest.mem_mib=128 testguest.cpus=1"
        #expect(outcome.stdoutLines.contains(expected), "stdout: \(outcome.stdout)")
    }

    @Test("the shipped no-cx16-no-xsave CPU template applies and the guest still boots")
    func cpuTemplate() throws {
        let template = SwiftVMProcess.packageRoot.appendingPathComponent("GuestConfigs/cpu-templates/no-cx16-no-xsave.json").path
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", try Self.guest(), "--cpu-template", template,
            "--cmdline", Self.commandLine(mode: "selftest", memory: 128, vcpus: 2), "--vcpus", "2", "--no-console-input",
        ])
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(outcome.stdoutLines.contains("RESULT 6 passed, 0 failed"))
    }

    @Test("swiftvm selftest reports the host and passes every check")
    func selftestCommand() throws {
        let outcome = try SwiftVMProcess.run(["selftest", "--guest", try Self.guest()], timeout: 300)
        #expect(outcome.status == 0, "stdout: \(outcome.stdout)")
        #expect(outcome.stdout.contains("KVM API version 12"))
        #expect(outcome.stdout.contains("KVM backend module: "))
        #expect(!outcome.stdout.contains("\nFAIL "))
        let lines = outcome.stdoutLines
        // The device checks with a host side: one line each.
        #expect(lines.contains { $0.hasPrefix("PASS vsock: cid 42, port 5000 echoed 5000 bytes") }, "stdout: \(outcome.stdout)")
        #expect(lines.contains { $0.hasPrefix("PASS balloon: inflated 16384 pages") && $0.contains("guest RAM backed by the host ") },
                "stdout: \(outcome.stdout)")
        #expect(lines.contains { $0.hasPrefix("PASS net: mac 06:00:ac:10:00:02") || $0.hasPrefix("SKIP net: ") },
                "stdout: \(outcome.stdout)")
        let summary = lines.last ?? ""
        let skipped = lines.filter { $0.hasPrefix("SKIP ") }.count
        #expect(summary.hasSuffix("passed, 0 failed" + (skipped > 0 ? ", \(skipped) skipped" : "")), "\(summary)")
    }
}
