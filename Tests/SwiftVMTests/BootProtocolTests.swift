import Foundation
import Testing

/// The two x86_64 entries (`--boot-protocol`): the test guest carries a PVH
/// note and a 64-bit e_entry, so the same file boots both ways; the same
/// guest packed as a bzImage boots through a bzImage's 64-bit entry.
@Suite("Boot protocols: PVH and the Linux 64-bit entry", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct BootProtocolTests {
    static func guest() throws -> String {
        try #require(SwiftVMProcess.testGuest, "the test guest did not build (make -C Tests/TestGuest)")
    }

    static func commandLine(memory: Int, vcpus: Int) -> String {
        "console=ttyS0 reboot=k panic=1 testguest.mode=selftest testguest.mem_mib=\(memory) testguest.cpus=\(vcpus) "
            + "testguest.acpi=1 testguest.virtio=rng"
    }

    @Test("the test guest boots through PVH: hvm_start_info at 0x6000, every check passes, an initrd arrives as a module")
    func pvh() throws {
        var initrd = Array("SWIFTVM-INITRD\n".utf8)
        initrd += [UInt8](repeating: 0x5a, count: 8192)
        initrd += Array("\nEND-INITRD\n".utf8)
        let path = try SwiftVMProcess.temporaryFile(initrd, name: "initrd")
        defer { unlink(path) }
        let cmdline = Self.commandLine(memory: 256, vcpus: 2)
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", try Self.guest(), "--boot-protocol", "pvh", "--vcpus", "2", "--memory", "256",
            "--initrd", path, "--cmdline", cmdline, "--no-console-input",
        ])
        let lines = outcome.stdoutLines
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(lines.contains("CMDLINE \(cmdline)"))
        #expect(lines.contains { $0.hasPrefix("PASS boot-protocol: PVH start_info at 0x6000 (version 1, 3 memmap entries)") },
                "stdout: \(outcome.stdout)")
        for check in ["e820", "memory-size", "acpi", "mptable", "smp", "uart-irq", "virtio-rng0", "initrd"] {
            #expect(lines.contains { $0.hasPrefix("PASS \(check)") }, "no PASS line for \(check) in:\n\(outcome.stdout)")
        }
        #expect(lines.filter { $0.hasPrefix("FAIL") }.isEmpty, "stdout: \(outcome.stdout)")
        #expect(outcome.stderr.contains("the guest reset the machine"))
    }

    @Test("auto picks PVH for the test guest (it has the note); linux64 still enters at e_entry with the zero page")
    func autoAndLinux64() throws {
        for (choice, expected) in [("auto", "PASS boot-protocol: PVH start_info"), ("linux64", "PASS boot-protocol: zero page at 0x7000")] {
            let outcome = try SwiftVMProcess.run([
                "run", "--kernel", try Self.guest(), "--boot-protocol", choice, "--memory", "128",
                "--cmdline", Self.commandLine(memory: 128, vcpus: 1), "--no-console-input",
            ])
            #expect(outcome.status == 0, "\(choice): stderr: \(outcome.stderr)")
            #expect(outcome.stdoutLines.contains { $0.hasPrefix(expected) }, "\(choice): stdout: \(outcome.stdout)")
            #expect(outcome.stdoutLines.contains { $0.hasPrefix("RESULT ") && $0.hasSuffix(" 0 failed") })
        }
    }

    @Test("the minimal guest boots through its PVH entry, in 32-bit mode without paging")
    func minimalPVH() throws {
        _ = try Self.guest()  // builds both guests
        let minimal = SwiftVMProcess.packageRoot.appendingPathComponent("Tests/TestGuest/build/swiftvm-minimal").path
        let outcome = try SwiftVMProcess.run(["run", "--kernel", minimal, "--boot-protocol", "pvh", "--no-rng", "--no-console-input"])
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("Guest-boot-time = "))
    }

    @Test("the test guest packed as a bzImage: loaded at 16 MiB, entered at its 64-bit entry with the zero page, every check passes")
    func bzImageTestGuest() throws {
        _ = try Self.guest()  // builds every guest file
        let bzImage = SwiftVMProcess.packageRoot.appendingPathComponent("Tests/TestGuest/build/swiftvm-testguest.bzImage").path
        let inspect = try SwiftVMProcess.run(["inspect", "kernel", bzImage])
        #expect(inspect.stdout.contains("a bzImage (Linux boot protocol 2.15)"), "stdout: \(inspect.stdout)")
        #expect(inspect.stdout.contains("the Linux 64-bit entry at 0x1000200"), "stdout: \(inspect.stdout)")
        let cmdline = Self.commandLine(memory: 128, vcpus: 2)
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", bzImage, "--vcpus", "2", "--memory", "128", "--cmdline", cmdline, "--no-console-input",
        ])
        let lines = outcome.stdoutLines
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(lines.contains("CMDLINE \(cmdline)"))
        #expect(lines.contains { $0.hasPrefix("PASS boot-protocol: zero page at 0x7000") }, "stdout: \(outcome.stdout)")
        // The guest finds itself where the bzImage's header asked to be loaded.
        #expect(lines.contains { $0.hasPrefix("PASS e820:") && $0.contains("guest image 0x1000200-") }, "stdout: \(outcome.stdout)")
        for check in ["memory-size", "acpi", "mptable", "smp", "uart-irq", "virtio-rng0"] {
            #expect(lines.contains { $0.hasPrefix("PASS \(check)") }, "no PASS line for \(check) in:\n\(outcome.stdout)")
        }
        #expect(lines.filter { $0.hasPrefix("FAIL") }.isEmpty, "stdout: \(outcome.stdout)")
        #expect(outcome.stderr.contains("the guest reset the machine"))
    }

    @Test("inspect kernel names the entry run takes")
    func inspectSaysEntry() throws {
        let outcome = try SwiftVMProcess.run(["inspect", "kernel", try Self.guest()])
        #expect(outcome.stdout.contains("the PVH 32-bit entry at 0x"), "stdout: \(outcome.stdout)")
        #expect(outcome.stdout.contains("--boot-protocol linux64 enters at 0x1000000"))
    }
}

/// A real bzImage: `swiftvm run` loads its protected-mode part, its
/// decompressor runs in the guest and hands over to the kernel, which prints
/// its banner. Skipped, with the reason, when no bzImage is at hand.
@Suite("Booting a bzImage", .serialized)
struct BzImageBootTests {
    /// SWIFTVM_BZIMAGE, else a bzImage next to a cached kernel, else the
    /// host's /boot/vmlinuz-*.
    static let path: String? = {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["SWIFTVM_BZIMAGE"], !path.isEmpty { return path }
        let files = FileManager.default
        let cache = (environment["HOME"] ?? "/root") + "/.cache/swiftvm/kernels"
        for directory in ((try? files.contentsOfDirectory(atPath: cache)) ?? []).sorted() {
            let candidate = "\(cache)/\(directory)/bzImage"
            if files.isReadableFile(atPath: candidate) { return candidate }
        }
        for name in ((try? files.contentsOfDirectory(atPath: "/boot")) ?? []).sorted() where name.hasPrefix("vmlinuz-") {
            if files.isReadableFile(atPath: "/boot/\(name)") { return "/boot/\(name)" }
        }
        return nil
    }()

    @Test(
        "the decompressor runs and the kernel prints its banner",
        .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"),
        .enabled(if: path != nil, "no bzImage: set SWIFTVM_BZIMAGE, or put a bzImage next to a cached kernel in ~/.cache/swiftvm/kernels/<key>/"))
    func banner() throws {
        let kernel = try #require(Self.path)
        let inspect = try SwiftVMProcess.run(["inspect", "kernel", kernel])
        #expect(inspect.stdout.contains("the Linux 64-bit entry at 0x"), "stdout: \(inspect.stdout)")
        #expect(inspect.stdout.contains("x86_64: usable"), "stdout: \(inspect.stdout)")
        // Stopped as soon as the banner is out: how far the kernel gets after
        // that depends on the host (docs/guest-kernels.md). On a host whose
        // KVM emulates guests the decompressor alone takes minutes (about 8
        // for a gzip-compressed 6.1 kernel, under one for lz4).
        let outcome = try SwiftVMProcess.run(
            ["run", "--kernel", kernel, "--memory", "512", "--no-console-input",
             "--cmdline", "console=ttyS0 earlyprintk=serial reboot=k panic=1"],
            waitFor: "Linux version", timeout: 900, signal: SIGTERM)
        #expect(outcome.stdout.contains("Linux version"), "no banner; stdout: \(outcome.stdout)\nstderr: \(outcome.stderr)")
    }
}
