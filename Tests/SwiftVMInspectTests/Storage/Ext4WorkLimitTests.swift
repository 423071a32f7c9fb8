import Foundation
import Testing
import SwiftVMMemory
@testable import SwiftVMInspect

/// One inspection's total work is bounded, and what it read is not read again.
@Suite("ext reader work limit", .enabled(if: Ext4Fixture.mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"))
struct Ext4WorkLimitTests {
    /// A tree made to multiply the work of an init search (see
    /// InspectRootfsTests.craftedImage, which the binary test uses): a chain of
    /// 38 links of 4 KiB each walking in and out of a 3000-entry directory,
    /// ending in a script whose interpreter is the chain again.
    static func craftedTree() -> [String: Ext4Fixture.Node] {
        var tree: [String: Ext4Fixture.Node] = Ext4Fixture.mountPoints
        tree["big/sub"] = .directory
        for index in 0..<3000 { tree["big/f\(index)"] = .file([], mode: 0o644) }
        let unit = "sub/./././../"
        let repeats = (4095 - 8) / unit.utf8.count
        for index in 1...38 {
            tree["big/l\(index)"] = .symlink(String(repeating: unit, count: repeats) + (index < 38 ? "l\(index + 1)" : "x"))
        }
        tree["big/x"] = .text("#!/big/l1\n")
        for path in ["sbin/init", "etc/init", "bin/init", "bin/sh", "init"] { tree[path] = .symlink("/big/l1") }
        return tree
    }

    /// What a Debian root looks like to the init search: merged /usr, a few
    /// thousand names in the directories walked, init behind two links, a
    /// dynamically linked systemd with its loader behind another.
    static func debianLikeTree() -> [String: Ext4Fixture.Node] {
        var tree: [String: Ext4Fixture.Node] = Ext4Fixture.mountPoints
        for directory in ["run", "var/lib", "usr/lib64", "usr/lib/systemd"] { tree[directory] = .directory }
        for index in 0..<1100 { tree["usr/bin/tool\(index)"] = .file([], mode: 0o755) }
        for index in 0..<300 { tree["usr/sbin/admin\(index)"] = .file([], mode: 0o755) }
        for index in 0..<1500 { tree["usr/lib/x86_64-linux-gnu/lib\(index).so.1"] = .file([], mode: 0o644) }
        for index in 0..<150 { tree["etc/conf\(index)"] = .file([], mode: 0o644) }
        tree["bin"] = .symlink("usr/bin")
        tree["sbin"] = .symlink("usr/sbin")
        tree["lib"] = .symlink("usr/lib")
        tree["lib64"] = .symlink("usr/lib64")
        tree["usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"] = .file(Ext4Fixture.elf())
        tree["usr/lib64/ld-linux-x86-64.so.2"] = .symlink("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        tree["usr/lib/systemd/systemd"] = .file(Ext4Fixture.elf(interpreter: "/lib64/ld-linux-x86-64.so.2"))
        tree["usr/sbin/init"] = .symlink("../lib/systemd/systemd")
        tree["usr/bin/sh"] = .symlink("dash")
        tree["usr/bin/dash"] = .file(Ext4Fixture.elf(interpreter: "/lib64/ld-linux-x86-64.so.2"))
        return tree
    }

    @Test("an image crafted to multiply lookups ends within seconds, undecided, with the work limit as the reason")
    func craftedImage() throws {
        let bytes = try Ext4Fixture.image(Self.craftedTree(), blockSize: 4096, megabytes: 16, inodes: 4096)
        let reader = try Ext4Reader(InMemoryImage(bytes))
        let started = ContinuousClock.now
        let report = InitDiscovery.find(in: reader, initParameter: nil)
        #expect(ContinuousClock.now - started < .seconds(10))
        let reason = try #require(report.undecidedReason)
        #expect(reason.hasPrefix("the check gave up after its work limit (it reads at most 64 MiB of an image and takes at most 1000000 steps"))
        #expect(!report.findsInit)
        #expect(report.panicMessage == nil, "an undecided check does not predict a panic")
        #expect(report.candidates.contains { $0.tried && $0.outcome == .undecided })
        #expect(reader.workDone.steps > Ext4Reader.Limits.standard.steps)
        // The big directory was read once, not once per step.
        #expect(reader.workDone.bytesRead < 1 << 20, "\(reader.workDone.bytesRead) bytes read")
        // Mount points after the limit are not reported missing.
        #expect(report.mountPoints.allSatisfy { !$0.checked })
        #expect(report.warnings.isEmpty, "\(report.warnings)")
    }

    @Test("a Debian-like root is decided using a small part of the limit")
    func ordinaryRoot() throws {
        let bytes = try Ext4Fixture.image(Self.debianLikeTree(), blockSize: 4096, megabytes: 32, inodes: 8192)
        let reader = try Ext4Reader(InMemoryImage(bytes))
        let report = InitDiscovery.find(in: reader, initParameter: nil)
        #expect(report.isDecided)
        #expect(report.chosen == "/sbin/init", "\(report.candidates.map(\.detail))")
        let limits = Ext4Reader.Limits.standard
        #expect(reader.workDone.steps < limits.steps / 20, "\(reader.workDone.steps) steps")
        #expect(reader.workDone.bytesRead < limits.bytesRead / 20, "\(reader.workDone.bytesRead) bytes")
    }

    @Test("a directory is read and parsed once, however often it is walked")
    func directoriesAreCached() throws {
        let bytes = try Ext4Fixture.image(Self.debianLikeTree(), blockSize: 4096, megabytes: 32, inodes: 8192)
        let reader = try Ext4Reader(InMemoryImage(bytes))
        #expect(try reader.lookup("/usr/bin/tool1") != nil)
        let first = reader.workDone
        for _ in 0..<1000 { #expect(try reader.lookup("/usr/bin/tool1") != nil) }
        #expect(reader.workDone.bytesRead == first.bytesRead, "nothing is read again")
        #expect(reader.workDone.steps == first.steps + 1000 * 3, "only the path's components count")
        // Another name in a directory already read costs its inode, not the directory.
        _ = try reader.lookup("/usr/bin/tool999")
        #expect(reader.workDone.bytesRead - first.bytesRead <= 256)
    }

    @Test("past its limit every operation of the reader fails with the limit, even for what it has cached")
    func limitIsFinal() throws {
        let bytes = try Ext4Fixture.image(Self.debianLikeTree(), blockSize: 4096, megabytes: 32, inodes: 8192)
        let reader = try Ext4Reader(InMemoryImage(bytes), limits: .init(bytesRead: 64 << 20, steps: 1000))
        #expect(try reader.lookup("/etc/conf1") != nil)
        #expect(throws: Ext4Error.self) { try reader.lookup("/usr/lib/x86_64-linux-gnu/lib1.so.1") }
        do {
            _ = try reader.lookup("/etc/conf1")
            Issue.record("a lookup succeeded after the limit")
        } catch {
            #expect(error.kind == .workLimit)
            #expect(error.message.contains("takes at most 1000 steps"))
        }
        let small = try Ext4Reader(InMemoryImage(bytes), limits: .init(bytesRead: 8 << 10, steps: 1_000_000))
        #expect(throws: Ext4Error(.workLimit, small.work.exhausted().message)) { try small.lookup("/usr/lib/x86_64-linux-gnu/lib1.so.1") }
    }
}
