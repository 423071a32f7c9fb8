import Foundation
import Testing

/// `swiftvm inspect rootfs` on images a user builds: the one
/// scripts/build-rootfs.sh makes, a tree without init, and a file that is not
/// a file system.
@Suite("swiftvm inspect rootfs")
struct InspectRootfsTests {
    static let mke2fs: String? = ["/sbin/mke2fs", "/usr/sbin/mke2fs"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let busybox = FileManager.default.isExecutableFile(atPath: "/bin/busybox")

    static func scratch() throws -> String {
        let path = NSTemporaryDirectory() + "swiftvm-inspect-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        let output = Pipe()
        let errors = Pipe()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }

    @Test(
        "the image build-rootfs.sh makes boots /sbin/init, a link to a static x86-64 BusyBox",
        .enabled(if: mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"),
        .enabled(if: busybox, "needs /bin/busybox: apt-get install busybox-static"))
    func builtImage() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = SwiftVMProcess.packageRoot.appendingPathComponent("scripts/build-rootfs.sh").path
        let built = try Self.run(script, ["--output", directory + "/rootfs.ext4", "--test-command", "echo ok"])
        #expect(built.status == 0, "build-rootfs.sh: \(built.stderr)")
        let image = try #require(built.stdout.split(separator: "\n").last.map(String.init))
        #expect(image == directory + "/rootfs.ext4")

        let outcome = try SwiftVMProcess.run(["inspect", "rootfs", image])
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)\nstdout: \(outcome.stdout)")
        let lines = outcome.stdoutLines
        #expect(lines.first == "\(image): ext4 file system")
        #expect(outcome.stdout.contains("magic        0xEF53"))
        #expect(outcome.stdout.contains("block size   4096 bytes"))
        #expect(outcome.stdout.contains("volume name  rootfs"))
        let initLine = try #require(lines.first { $0.hasPrefix("  /sbin/init ") })
        #expect(initLine.contains("RUNS: a symbolic link (/sbin/init -> /bin/busybox); /bin/busybox: an x86-64 ELF"), "\(initLine)")
        for mountPoint in ["/dev", "/proc", "/sys", "/run", "/var"] {
            #expect(lines.contains { $0.hasPrefix("  \(mountPoint)") && $0.contains("ok: a directory") }, "\(mountPoint)")
        }
        #expect(lines.last == "verdict: the kernel will run /sbin/init as PID 1")

        let arm = try SwiftVMProcess.run(["inspect", "rootfs", image, "--arch", "aarch64"])
        #expect(arm.status == 65)
        #expect(arm.stdout.contains("the guest is aarch64"))
    }

    @Test("a tree without init: exit 65, the kernel's panic, and why each path failed",
          .enabled(if: mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"))
    func noInit() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tree = directory + "/tree"
        for name in ["dev", "proc", "etc"] {
            try FileManager.default.createDirectory(atPath: "\(tree)/\(name)", withIntermediateDirectories: true)
        }
        let image = directory + "/noinit.ext4"
        let made = try Self.run(try #require(Self.mke2fs), ["-q", "-F", "-t", "ext4", "-d", tree, image, "8M"])
        try #require(made.status == 0, "mke2fs: \(made.stderr)")

        let outcome = try SwiftVMProcess.run(["inspect", "rootfs", image])
        #expect(outcome.status == 65)
        for path in ["/sbin/init", "/etc/init", "/bin/init", "/bin/sh"] {
            #expect(outcome.stdoutLines.contains { $0.hasPrefix("  \(path)") && $0.contains("missing") }, "\(path)")
        }
        #expect(outcome.stdout.contains("/sys   warning: missing"))
        #expect(outcome.stdoutLines.last?.contains("No working init found") == true)

        let requested = try SwiftVMProcess.run(["inspect", "rootfs", image, "--init", "/etc"])
        #expect(requested.status == 65)
        #expect(requested.stdout.contains("Requested init /etc failed (error -13)"))
    }

    @Test("a file that is not an ext file system is exit 65 with the reason")
    func notExt() throws {
        let path = try SwiftVMProcess.temporaryFile([UInt8](repeating: 0, count: 1 << 16), name: "zeros.img")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let outcome = try SwiftVMProcess.run(["inspect", "rootfs", path])
        #expect(outcome.status == 65)
        #expect(outcome.stdout.contains("not a usable ext file system"))
        #expect(outcome.stdout.contains("0xEF53"))
    }

    /// An ext4 image (a few MiB, mostly empty) made to multiply the work of an
    /// init search: 38 symbolic links, each 4 KiB of `sub/./././../` that
    /// walks in and out of a directory of 3000 entries, chained into each
    /// other and ending in a `#!` script whose interpreter is the chain's
    /// start again; every path the kernel tries leads into the chain. Before
    /// the work limit a check re-read that directory at every step and took
    /// hours; each lookup alone stays within its own bounds.
    static func craftedImage(mountPoints: Bool = true) throws -> String {
        let tool = try #require(mke2fs)
        let tree = try scratch()
        defer { try? FileManager.default.removeItem(atPath: tree) }
        let files = FileManager.default
        for directory in ["big/sub", "sbin", "etc", "bin"] + (mountPoints ? ["dev", "proc", "sys"] : []) {
            try files.createDirectory(atPath: "\(tree)/\(directory)", withIntermediateDirectories: true)
        }
        for index in 0..<3000 {
            _ = files.createFile(atPath: "\(tree)/big/f\(index)", contents: nil)
        }
        let unit = "sub/./././../"
        let repeats = (4095 - 8) / unit.utf8.count
        for index in 1...38 {
            let next = index < 38 ? "l\(index + 1)" : "x"
            try files.createSymbolicLink(
                atPath: "\(tree)/big/l\(index)", withDestinationPath: String(repeating: unit, count: repeats) + next)
        }
        _ = files.createFile(atPath: "\(tree)/big/x", contents: Data("#!/big/l1\n".utf8), attributes: [.posixPermissions: 0o755])
        for path in ["sbin/init", "etc/init", "bin/init", "bin/sh", "init"] {
            try files.createSymbolicLink(atPath: "\(tree)/\(path)", withDestinationPath: "/big/l1")
        }
        let image = tree + ".ext4"
        let made = try run(tool, ["-q", "-F", "-t", "ext4", "-b", "4096", "-N", "4096", "-d", tree, image, "16M"])
        try #require(made.status == 0, "mke2fs: \(made.stderr)")
        return image
    }

    @Test(
        "an image crafted to multiply lookups ends within seconds: the work limit is named, and the status says undecided (75)",
        .enabled(if: mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"))
    func craftedImageHitsTheWorkLimit() throws {
        let image = try Self.craftedImage()
        defer { unlink(image) }
        let started = Date()
        let outcome = try SwiftVMProcess.run(["inspect", "rootfs", image], timeout: 60)
        #expect(!outcome.timedOut)
        #expect(Date().timeIntervalSince(started) < 20, "the check took \(Date().timeIntervalSince(started)) s")
        #expect(outcome.status == 75, "stderr: \(outcome.stderr)")
        #expect(outcome.stdoutLines.last?.hasPrefix(
            "verdict: cannot decide whether the kernel will find an init: the check gave up after its work limit") == true,
            "\(outcome.stdoutLines.last ?? "")")
        #expect(outcome.stdout.contains("not decided: the check ran out of its work limit first"))
        // Long link chains are shown cut short, not as 40 targets of 4 KiB each.
        #expect(outcome.stdout.utf8.count < 64 << 10, "\(outcome.stdout.utf8.count) bytes of output")
    }
}
