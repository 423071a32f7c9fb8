import Foundation
import Testing
import SwiftVMMemory
import SwiftVMInspect
import SwiftVMTestSupport

/// Which init the kernel would run from a root file system, and why the
/// others fail, for the trees people actually build.
@Suite("Init discovery on a root file system", .enabled(if: Ext4Fixture.mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"))
struct InitDiscoveryTests {
    static func report(
        _ tree: [String: Ext4Fixture.Node], type: String = "ext4", initParameter: String? = nil,
        arch: InitDiscovery.Architecture = .x86_64
    ) throws -> InitReport {
        let reader = try Ext4Reader(InMemoryImage(try Ext4Fixture.image(tree, type: type)))
        return InitDiscovery.find(in: reader, initParameter: initParameter, arch: arch)
    }

    static func rootfs(_ entries: [String: Ext4Fixture.Node]) -> [String: Ext4Fixture.Node] {
        Ext4Fixture.mountPoints.merging(entries) { $1 }
    }

    static func candidate(_ report: InitReport, _ path: String) throws -> InitReport.Candidate {
        try #require(report.candidates.first { $0.path == path && $0.role != .initramfsOnly })
    }

    @Test("/sbin/init as a symlink to a static x86-64 BusyBox runs, absolute or relative", arguments: [
        ("/bin/busybox", "ext4"), ("../bin/busybox", "ext4"), ("/bin/busybox", "ext2"), ("../bin/busybox", "ext2"),
    ])
    func symlinkToBusybox(target: String, type: String) throws {
        let report = try Self.report(
            Self.rootfs(["bin/busybox": .file(Ext4Fixture.elf()), "sbin/init": .symlink(target)]), type: type)
        #expect(report.chosen == "/sbin/init")
        #expect(report.panicMessage == nil)
        let initCandidate = try Self.candidate(report, "/sbin/init")
        #expect(initCandidate.outcome == .runs)
        #expect(initCandidate.detail.contains("/sbin/init -> \(target)"))
        #expect(initCandidate.detail.contains("/bin/busybox: an x86-64 ELF"))
        #expect(initCandidate.detail.contains("statically linked"))
        // The fallbacks after the one that runs are not tried.
        #expect(report.candidates.filter(\.tried).map(\.path) == ["/sbin/init"])
        #expect(report.warnings.isEmpty)
    }

    @Test("a chain of links is followed to its end and shown")
    func chain() throws {
        let report = try Self.report(Self.rootfs([
            "bin/busybox": .file(Ext4Fixture.elf()),
            "usr/bin/init": .symlink("../../bin/busybox"),
            "sbin/init": .symlink("/usr/bin/init"),
        ]))
        let initCandidate = try Self.candidate(report, "/sbin/init")
        #expect(initCandidate.outcome == .runs)
        #expect(initCandidate.detail.contains("/sbin/init -> /usr/bin/init, /usr/bin/init -> ../../bin/busybox"))
    }

    @Test("a symlink loop and a dangling link fail, and the kernel goes on to /bin/sh")
    func loopAndDangling() throws {
        let report = try Self.report(Self.rootfs([
            "sbin/init": .symlink("/sbin/other"),
            "sbin/other": .symlink("init"),
            "etc/init": .symlink("/lib/systemd/systemd"),
            "bin/busybox": .file(Ext4Fixture.elf()),
            "bin/sh": .symlink("busybox"),
        ]))
        #expect(try Self.candidate(report, "/sbin/init").outcome == .fails(errno: 40))
        #expect(try Self.candidate(report, "/sbin/init").detail.contains("ELOOP"))
        let dangling = try Self.candidate(report, "/etc/init")
        #expect(dangling.outcome == .missing)
        #expect(dangling.detail.contains("dangles"))
        #expect(report.chosen == "/bin/sh")
    }

    @Test("init= is the only path tried when given; when it fails the kernel panics without trying the rest")
    func initParameter() throws {
        let tree = Self.rootfs([
            "bin/busybox": .file(Ext4Fixture.elf()),
            "sbin/init": .symlink("/bin/busybox"),
            "opt/custom-init": .file(Ext4Fixture.elf()),
        ])
        let given = try Self.report(tree, initParameter: "/opt/custom-init")
        #expect(given.chosen == "/opt/custom-init")
        #expect(given.candidates.first { $0.role == .initParameter }?.tried == true)
        #expect(given.candidates.filter { $0.role == .fallback }.allSatisfy { !$0.tried })

        let missing = try Self.report(tree, initParameter: "/bin/not-there")
        #expect(missing.chosen == nil)
        #expect(missing.panicMessage == "Kernel panic - not syncing: Requested init /bin/not-there failed (error -2).")
    }

    @Test("a script whose interpreter is missing fails; one whose interpreter exists runs")
    func scripts() throws {
        let report = try Self.report(Self.rootfs([
            "sbin/init": .text("#!/bin/bash -e\necho hi\n"),
            "etc/init": .text("#! /bin/sh\nexec /bin/busybox sh\n"),
            "bin/busybox": .file(Ext4Fixture.elf()),
            "bin/sh": .symlink("busybox"),
        ]))
        let bash = try Self.candidate(report, "/sbin/init")
        #expect(bash.outcome == .fails(errno: 2))
        #expect(bash.detail.contains("#! script for /bin/bash, which is missing"))
        #expect(report.chosen == "/etc/init")
        #expect(try Self.candidate(report, "/etc/init").detail.contains("#! script for /bin/sh; /bin/sh: a symbolic link"))
    }

    @Test("a file without an x bit, a directory and an unknown format fail with the kernel's errno")
    func notExecutable() throws {
        let report = try Self.report(Self.rootfs([
            "sbin/init": .file(Ext4Fixture.elf(), mode: 0o644),
            "etc/init": .directory,
            "bin/init": .text("just text, no #!\n"),
        ]))
        let plain = try Self.candidate(report, "/sbin/init")
        #expect(plain.outcome == .fails(errno: 13))
        #expect(plain.detail.contains("not executable (mode rw-r--r--"))
        #expect(try Self.candidate(report, "/etc/init").outcome == .fails(errno: 13))
        #expect(try Self.candidate(report, "/bin/init").outcome == .fails(errno: 8))
        #expect(try Self.candidate(report, "/bin/sh").outcome == .missing)
        #expect(report.chosen == nil)
        #expect(report.panicMessage?.contains("No working init found") == true)
    }

    @Test("an ELF for another machine fails for this guest and runs on its own")
    func otherMachine() throws {
        let tree = Self.rootfs(["sbin/init": .file(Ext4Fixture.elf(machine: 183))])
        let onX86 = try Self.report(tree)
        let candidate = try Self.candidate(onX86, "/sbin/init")
        #expect(candidate.outcome == .fails(errno: 8))
        #expect(candidate.detail.contains("an AArch64 ELF"))
        #expect(candidate.detail.contains("the guest is x86_64"))
        #expect(onX86.chosen == nil)
        #expect(try Self.report(tree, arch: .aarch64).chosen == "/sbin/init")
    }

    @Test("a dynamically linked init needs its program interpreter in the image")
    func dynamicELF() throws {
        let interpreter = "/lib/ld-musl-x86_64.so.1"
        let without = try Self.report(Self.rootfs(["sbin/init": .file(Ext4Fixture.elf(interpreter: interpreter))]))
        let candidate = try Self.candidate(without, "/sbin/init")
        #expect(candidate.outcome == .fails(errno: 2))
        #expect(candidate.detail.contains("its interpreter \(interpreter) is missing"))
        let with = try Self.report(Self.rootfs([
            "sbin/init": .file(Ext4Fixture.elf(interpreter: interpreter)),
            String(interpreter.dropFirst()): .file(Ext4Fixture.elf()),
        ]))
        #expect(with.chosen == "/sbin/init")
        #expect(try Self.candidate(with, "/sbin/init").detail.contains("dynamically linked (interpreter \(interpreter))"))
    }

    @Test("no init at all: the kernel panics, and each path says why")
    func noInit() throws {
        let report = try Self.report(Self.rootfs(["etc/motd": .text("hi", mode: 0o644)]))
        #expect(report.chosen == nil)
        #expect(report.panicMessage == InitDiscovery.noInitPanic)
        #expect(report.candidates.filter { $0.role == .fallback }.map(\.path) == InitDiscovery.fallbacks)
        #expect(report.candidates.filter { $0.role == .fallback }.allSatisfy { $0.outcome == .missing && $0.tried })
    }

    @Test("/init is reported as the initramfs path only and never chosen on an ext root")
    func initramfsInit() throws {
        let report = try Self.report(Self.rootfs(["init": .file(Ext4Fixture.elf())]))
        let initramfs = try #require(report.candidates.first)
        #expect(initramfs.path == "/init")
        #expect(initramfs.role == .initramfsOnly)
        #expect(initramfs.outcome == .runs)
        #expect(!initramfs.tried)
        #expect(report.chosen == nil)
    }

    @Test("missing /proc and /sys are warnings; /run and /var are notes")
    func mountPoints() throws {
        let report = try Self.report(["dev": .directory, "sbin/init": .file(Ext4Fixture.elf())])
        #expect(report.chosen == "/sbin/init")
        #expect(report.warnings.count == 2)
        #expect(report.warnings.contains { $0.hasPrefix("/proc: missing") })
        #expect(report.warnings.contains { $0.hasPrefix("/sys: missing") })
        let notes = report.mountPoints.filter { !$0.required }
        #expect(notes.map(\.path) == ["/run", "/var"])
        #expect(notes.allSatisfy { !$0.present && $0.detail.contains("OpenRC") })
    }
}
