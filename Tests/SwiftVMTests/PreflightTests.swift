import Foundation
import Testing
@testable import SwiftVM

/// `swiftvm run` reports, before the guest runs, what would make the boot fail silently.
@Suite("Pre-flight checks of swiftvm run")
struct PreflightTests {
    static let mke2fs: String? = ["/sbin/mke2fs", "/usr/sbin/mke2fs"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// An ext4 image of a tree with the mount points but no init.
    static func imageWithoutInit() throws -> String {
        let tree = NSTemporaryDirectory() + "swiftvm-noinit-\(UUID().uuidString)"
        for directory in ["dev", "proc", "sys", "etc"] {
            try FileManager.default.createDirectory(atPath: "\(tree)/\(directory)", withIntermediateDirectories: true)
        }
        defer { try? FileManager.default.removeItem(atPath: tree) }
        let image = tree + ".ext4"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(mke2fs))
        process.arguments = ["-q", "-F", "-t", "ext4", "-d", tree, image, "8M"]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        return image
    }

    @Test("a root image without an init is refused with the kernel's panic and the fix", .enabled(if: mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"))
    func noInit() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let image = try Self.imageWithoutInit()
        defer { unlink(image) }
        let outcome = try SwiftVMProcess.run(["run", "--kernel", guest, "--rootfs", image, "--no-console-input"])
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("No working init found"))
        #expect(outcome.stderr.contains("/sbin/init: missing"))
        #expect(outcome.stderr.contains("swiftvm inspect rootfs"))
        // --no-preflight boots it anyway.
        let forced = try SwiftVMProcess.run([
            "run", "--kernel", guest, "--rootfs", image, "--no-preflight", "--no-console-input",
            "--cmdline", "testguest.mode=reset",
        ])
        #expect(forced.status == 0)
    }

    @Test(
        "a root image without /dev, /proc and /sys gets each warning once",
        .enabled(if: mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"))
    func mountPointWarningsOnce() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let tree = NSTemporaryDirectory() + "swiftvm-nodev-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tree + "/sbin", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tree) }
        // The test guest is a static x86-64 ELF: an init the check accepts.
        try FileManager.default.copyItem(atPath: guest, toPath: tree + "/sbin/init")
        let image = tree + ".ext4"
        defer { unlink(image) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(Self.mke2fs))
        process.arguments = ["-q", "-F", "-t", "ext4", "-d", tree, image, "8M"]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        // No KVM: the pre-flight runs and the command stops before the guest would.
        let outcome = try SwiftVMProcess.run(["run", "--kernel", guest, "--rootfs", image, "--no-console-input", "--kvm-device", "/nonexistent/kvm"])
        #expect(outcome.status == 69, "stderr: \(outcome.stderr)")
        for path in ["/dev", "/proc", "/sys"] {
            let count = outcome.stderr.components(separatedBy: "root drive rootfs: \(path): missing").count - 1
            #expect(count == 1, "\(path) warned \(count) times; stderr: \(outcome.stderr)")
        }
    }

    @Test(
        "an image the check cannot decide within its work limit boots anyway, with a warning that says why",
        .enabled(if: mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"))
    func undecidedImageBoots() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let image = try InspectRootfsTests.craftedImage()
        defer { unlink(image) }
        var arguments = ["run", "--kernel", guest, "--rootfs", image, "--no-console-input", "--cmdline", "testguest.mode=reset"]
        if !SwiftVMProcess.kvmAvailable { arguments += ["--kvm-device", "/nonexistent/kvm"] }
        let started = Date()
        let outcome = try SwiftVMProcess.run(arguments, timeout: 60)
        #expect(Date().timeIntervalSince(started) < 30, "the pre-flight took \(Date().timeIntervalSince(started)) s")
        #expect(outcome.stderr.contains("root drive rootfs (\(image)): cannot tell whether the kernel will find an init: "
            + "the check gave up after its work limit"), "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("booting it anyway"))
        #expect(outcome.status == (SwiftVMProcess.kvmAvailable ? 0 : 69), "stderr: \(outcome.stderr)")
    }

    @Test("for a Linux kernel: a missing console, a disabled UART and a root= without its drive are named before boot", .enabled(if: GuestKernel.path != nil, "no guest kernel: run scripts/build-kernel.sh"))
    func linuxCommandLine() throws {
        let kernel = try #require(GuestKernel.path)
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", kernel, "--cmdline", "reboot=k panic=1 8250.nr_uarts=0 root=/dev/vdb", "--no-console-input",
        ])
        #expect(outcome.status == 64)
        #expect(outcome.stderr.contains("no console=ttyS0"))
        #expect(outcome.stderr.contains("8250.nr_uarts=0 switches off the guest's only serial port"))
        #expect(outcome.stderr.contains("root=/dev/vdb names virtio disk 2, but no drives are attached"))
    }

    @Test("quoted console= and root= are read as the kernel reads them", .enabled(if: GuestKernel.path != nil, "no guest kernel: run scripts/build-kernel.sh"))
    func quotedParameters() throws {
        let kernel = try #require(GuestKernel.path)
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", kernel, "--cmdline", #"reboot=k console="ttyS0" root="/dev/vdb""#, "--no-console-input",
        ])
        #expect(outcome.status == 64)
        #expect(!outcome.stderr.contains("no console=ttyS0"), "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("root=/dev/vdb names virtio disk 2, but no drives are attached"), "stderr: \(outcome.stderr)")
    }

    @Test("the findings take quoted values, and nothing after --, which goes to init")
    func findingsFromParameters() {
        var config = VMConfig(kernelPath: "/vmlinux", commandLine: #"console="ttyS0,115200n8" root="/dev/vdb""#)
        #expect(Machine.commandLineFindings(config, kernelIsLinux: true) == [.init(
            severity: .error, message: "root=/dev/vdb names virtio disk 2, but no drives are attached (--rootfs or --drive)")])

        config.commandLine = #""console=ttyS0" 8250.nr_uarts="0" -- root=/dev/vda console=ttyS0"#
        let messages = Machine.commandLineFindings(config, kernelIsLinux: true).map(\.message)
        #expect(messages.count == 2, "\(messages)")
        #expect(messages.contains { $0.hasPrefix("8250.nr_uarts=0 switches off") })
        #expect(messages.contains { $0.hasPrefix("no root file system") })

        config.commandLine = "console=tty0"
        #expect(Machine.commandLineFindings(config, kernelIsLinux: true).first?.message.hasPrefix(
            "the command line has console=tty0 but no console=ttyS0") == true)
    }

    @Test("root= and virtio_mmio.device= are added before a --, and a quoted root= counts as one")
    func guestCommandLine() {
        var config = VMConfig(kernelPath: "/vmlinux", commandLine: "console=ttyS0 -- single")
        config.drives = [DriveConfig(id: "rootfs", path: "/rootfs.ext4", isRootDevice: true)]
        config.entropyDevice = false
        #expect(config.guestCommandLine == "console=ttyS0 root=/dev/vda rw -- single")
        config.acpi = false
        #expect(config.guestCommandLine == "console=ttyS0 root=/dev/vda rw virtio_mmio.device=4K@0xc0001000:5 -- single")

        config.acpi = true
        config.commandLine = #"console=ttyS0 root="/dev/vda1""#
        #expect(config.guestCommandLine == #"console=ttyS0 root="/dev/vda1""#)
    }
}
