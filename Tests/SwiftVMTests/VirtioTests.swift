import Foundation
import Testing
import SwiftVMBoot
@testable import SwiftVM

/// The test guest drives swiftvm's virtio devices like a Linux driver would;
/// the host then checks the image files byte for byte.
@Suite("virtio devices", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct VirtioTests {
    static let sectors = 64

    /// The image the guest expects (see Tests/TestGuest/README.md).
    static func pattern() -> [UInt8] { TestImages.pattern(sectors: sectors) }

    /// The image after the guest's writes to sectors 8...11.
    static func guestWrites(_ image: [UInt8]) -> [UInt8] { TestImages.afterGuestWrites(image) }

    static func image(_ name: String) throws -> String {
        try SwiftVMProcess.temporaryFile(pattern(), name: name)
    }

    static func contents(_ path: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func run(acpi: Bool, engine: String = "sync", extra: [String] = [], finish: String = "reset", waitFor: String? = nil, signal: Int32? = nil) throws -> (SwiftVMProcess.Outcome, rw: String, ro: String, wb: String) {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let rw = try image("rw"), ro = try image("ro"), wb = try image("wb")
        let cmdline = "console=ttyS0 testguest.cpus=2 testguest.mem_mib=256 testguest.acpi=\(acpi ? 1 : 0) "
            + "testguest.virtio=rw,ro,wb,rng testguest.finish=\(finish)"
        var arguments = [
            "run", "--kernel", guest, "--vcpus", "2", "--memory", "256", "--cmdline", cmdline, "--no-console-input",
            "--drive", "id=rootfs,path=\(rw),root,engine=\(engine)",
            "--drive", "id=data,path=\(ro),ro,engine=\(engine)",
            "--drive", "id=wbdisk,path=\(wb),cache=writeback,engine=\(engine)",
            "--no-preflight",
        ] + extra
        if !acpi { arguments.append("--no-acpi") }
        let outcome = try SwiftVMProcess.run(arguments, waitFor: waitFor, signal: signal)
        return (outcome, rw, ro, wb)
    }

    @Test("block (read-write, read-only, write-back) and rng work through ACPI and --no-acpi, with both io engines", arguments: [
        (true, "sync"), (false, "sync"), (true, "async"), (false, "async"),
    ])
    func devices(acpi: Bool, engine: String) throws {
        let (outcome, rw, ro, wb) = try Self.run(acpi: acpi, engine: engine)
        defer { for path in [rw, ro, wb] { unlink(path) } }
        let lines = outcome.stdoutLines
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(lines.filter { $0.hasPrefix("FAIL") }.isEmpty, "\(outcome.stdout)")
        #expect(lines.contains { $0.hasPrefix(acpi ? "PASS acpi: RSDP at 0xe0000" : "PASS no-acpi: no RSDP, 4 virtio_mmio.device= stanzas") })
        #expect(lines.contains { $0.hasPrefix("PASS virtio-blk0: id rootfs, 64 sectors, read+write ok") })
        #expect(lines.contains { $0.hasPrefix("PASS virtio-blk1: id data, 64 sectors, read ok, write refused (read-only)") })
        #expect(lines.contains { $0.hasPrefix("PASS virtio-blk2: id wbdisk, 64 sectors, read+write+flush ok") })
        #expect(lines.contains { $0.hasPrefix("PASS virtio-rng3: 2 x 64 random bytes, distinct") })
        // The host sees exactly the guest's writes, and nothing on the read-only drive.
        #expect(try Self.contents(rw) == Self.guestWrites(Self.pattern()))
        #expect(try Self.contents(wb) == Self.guestWrites(Self.pattern()))
        #expect(try Self.contents(ro) == Self.pattern())
    }

    @Test("a write-back drive keeps the guest's flushed writes when swiftvm is killed with SIGKILL", arguments: ["sync", "async"])
    func flushSurvivesKill(engine: String) throws {
        let (outcome, rw, ro, wb) = try Self.run(acpi: true, engine: engine, finish: "hold", waitFor: "HOLDING", signal: SIGKILL)
        defer { for path in [rw, ro, wb] { unlink(path) } }
        #expect(outcome.status == SIGKILL || outcome.status == 128 + SIGKILL, "status \(outcome.status)")
        #expect(outcome.stdout.contains("read+write+flush ok"))
        #expect(try Self.contents(wb) == Self.guestWrites(Self.pattern()))
    }

    @Test("a guest poweroff through the ACPI sleep register ends the run with status 0")
    func acpiPowerOff() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", guest, "--cmdline", "testguest.finish=poweroff testguest.virtio=rng testguest.acpi=1",
            "--no-console-input",
        ])
        #expect(outcome.status == 0)
        #expect(outcome.stderr.contains("the guest powered off"))
        #expect(outcome.stdoutLines.contains { $0.hasPrefix("PASS acpi:") })
    }

    @Test("a root image that is not a file system is refused before boot, with the fix")
    func rootImageRefused() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let zeros = try SwiftVMProcess.temporaryFile([UInt8](repeating: 0, count: 1 << 20), name: "zeros")
        defer { unlink(zeros) }
        let outcome = try SwiftVMProcess.run(["run", "--kernel", guest, "--rootfs", zeros, "--no-console-input"])
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("has no file system"))
        #expect(outcome.stderr.contains("mke2fs -t ext4 -d"))
    }

    @Test("a drive image another VM is writing is refused")
    func lockedImage() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let path = try Self.image("locked")
        defer { unlink(path) }
        let fd = open(path, O_RDWR)
        defer { close(fd) }
        #expect(flock(fd, LOCK_EX) == 0)
        let outcome = try SwiftVMProcess.run(["run", "--kernel", guest, "--drive", "id=d,path=\(path)", "--no-console-input"])
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("in use by another process"))
    }
}
