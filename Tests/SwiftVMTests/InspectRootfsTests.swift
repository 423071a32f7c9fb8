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
        "the image build-rootfs.sh makes boots /sbin/init, a #!/bin/sh script run by a static x86-64 BusyBox",
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
        #expect(initLine.contains("RUNS: a #! script for /bin/sh; /bin/sh: a symbolic link (/bin/sh -> busybox); /bin/busybox: an x86-64 ELF"))
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
}
