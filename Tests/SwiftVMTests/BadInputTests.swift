import Foundation
import Testing

/// Every wrong input gets a specific message and a documented exit status,
/// before any guest code runs (and, for files, before KVM is even opened).
@Suite("Bad input is refused with a clear message")
struct BadInputTests {
    static func bzImage() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 8192)
        bytes[0x1fe] = 0x55
        bytes[0x1ff] = 0xaa
        bytes.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        bytes[0x206] = 0x0f
        bytes[0x207] = 0x02
        return bytes
    }

    static func arm64Image() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 8192)
        bytes[0] = UInt8(ascii: "M")
        bytes[1] = UInt8(ascii: "Z")
        bytes.replaceSubrange(0x38..<0x3c, with: [0x41, 0x52, 0x4d, 0x64])
        return bytes
    }

    static func elfHeader(machine: UInt16) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 4096)
        bytes.replaceSubrange(0..<4, with: [0x7f, 0x45, 0x4c, 0x46])
        bytes[4] = 2  // 64-bit
        bytes[5] = 1  // little endian
        bytes[6] = 1
        bytes[16] = 2  // ET_EXEC
        bytes[18] = UInt8(machine & 0xff)
        bytes[19] = UInt8(machine >> 8)
        return bytes
    }

    /// Runs `swiftvm run` on `kernel` and returns the outcome.
    static func run(kernel: String, _ extra: [String] = []) throws -> SwiftVMProcess.Outcome {
        try SwiftVMProcess.run(["run", "--kernel", kernel, "--no-console-input"] + extra, timeout: 30)
    }

    @Test("a bzImage is refused with a pointer to vmlinux")
    func bzImageKernel() throws {
        let path = try SwiftVMProcess.temporaryFile(Self.bzImage(), name: "bzImage")
        defer { unlink(path) }
        let outcome = try Self.run(kernel: path)
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("bzImage"))
        #expect(outcome.stderr.contains("2.15"))
        #expect(outcome.stderr.contains("vmlinux"))
    }

    @Test("an arm64 Image is refused: x86_64 needs vmlinux")
    func arm64Kernel() throws {
        let path = try SwiftVMProcess.temporaryFile(Self.arm64Image(), name: "Image")
        defer { unlink(path) }
        let outcome = try Self.run(kernel: path)
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("arm64"))
        #expect(outcome.stderr.contains("vmlinux"))
    }

    @Test("a compressed kernel names its compression and how to undo it", arguments: [
        ([0x1f, 0x8b, 0x08, 0x00] as [UInt8], "gzip"),
        ([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] as [UInt8], "xz"),
        ([0x28, 0xb5, 0x2f, 0xfd] as [UInt8], "zstd"),
    ])
    func compressedKernel(magic: [UInt8], format: String) throws {
        let path = try SwiftVMProcess.temporaryFile(magic + [UInt8](repeating: 0x11, count: 4000), name: "vmlinux.\(format)")
        defer { unlink(path) }
        let outcome = try Self.run(kernel: path)
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains(format))
        #expect(outcome.stderr.contains("vmlinux"))
    }

    @Test("an ELF for another machine is named as such")
    func foreignELF() throws {
        let path = try SwiftVMProcess.temporaryFile(Self.elfHeader(machine: 183), name: "vmlinux-arm64")
        defer { unlink(path) }
        let outcome = try Self.run(kernel: path)
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("AArch64"))
    }

    @Test("a truncated vmlinux is reported as truncated")
    func truncatedELF() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let whole = try [UInt8](Data(contentsOf: URL(fileURLWithPath: guest)))
        let path = try SwiftVMProcess.temporaryFile(Array(whole.prefix(100)), name: "vmlinux-cut")
        defer { unlink(path) }
        let outcome = try Self.run(kernel: path)
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("truncated"), "stderr: \(outcome.stderr)")
    }

    @Test("an empty file, a directory and a missing file each get their own message")
    func unusableFiles() throws {
        let empty = try SwiftVMProcess.temporaryFile([], name: "empty")
        defer { unlink(empty) }
        let emptyOutcome = try Self.run(kernel: empty)
        #expect(emptyOutcome.status == 65)
        #expect(emptyOutcome.stderr.contains("empty"))

        let directory = try Self.run(kernel: NSTemporaryDirectory())
        #expect(directory.status == 66)
        #expect(directory.stderr.contains("is a directory; give a regular file"))

        let missing = try Self.run(kernel: "/nonexistent/vmlinux")
        #expect(missing.status == 66)
        #expect(missing.stderr.contains("cannot open the kernel /nonexistent/vmlinux"))
        #expect(missing.stderr.contains("No such file"))
    }

    @Test("a command line over 2047 bytes is refused before boot")
    func longCommandLine() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let outcome = try Self.run(kernel: guest, ["--cmdline", String(repeating: "a", count: 2048)])
        #expect(outcome.status == 64)
        #expect(outcome.stderr.contains("2048"))
        #expect(outcome.stderr.contains("2047"))
    }

    @Test("out-of-range vCPU counts and memory sizes are usage errors", arguments: [
        ["--vcpus", "0"], ["--vcpus", "33"], ["--memory", "1"], ["--memory", "abc"],
    ])
    func outOfRange(arguments: [String]) throws {
        let outcome = try Self.run(kernel: "/nonexistent", arguments)
        #expect(outcome.status == 64)
        #expect(outcome.stderr.contains(arguments[0]) || outcome.stderr.contains("memory"), "stderr: \(outcome.stderr)")
    }

    @Test("`run --help` and a usage error name the command as it is typed, `swiftvm run`")
    func runUsageNamesTheCommand() throws {
        let help = try SwiftVMProcess.run(["run", "--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("USAGE: swiftvm run [<options>] --kernel <kernel>"), "stdout: \(help.stdout)")
        let missing = try SwiftVMProcess.run(["run"])
        #expect(missing.status == 64)
        #expect(missing.stderr.contains("Usage: swiftvm run [<options>] --kernel <kernel>"), "stderr: \(missing.stderr)")
    }

    @Test("a malformed CPU template names the entry and field")
    func badTemplate() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let json = #"{"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": [{"register": "exx", "bitmap": "0b0"}]}]}"#
        let path = try SwiftVMProcess.temporaryFile(Array(json.utf8), name: "template.json")
        defer { unlink(path) }
        let outcome = try Self.run(kernel: guest, ["--cpu-template", path])
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("cpuid_modifiers[0].modifiers[0]"), "stderr: \(outcome.stderr)")
    }

    @Test("an initrd larger than guest RAM is refused with the sizes")
    func oversizedInitrd() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let path = try SwiftVMProcess.temporaryFile([UInt8](repeating: 0, count: 40 << 20), name: "initrd")
        defer { unlink(path) }
        let outcome = try Self.run(kernel: guest, ["--memory", "32", "--initrd", path])
        #expect(outcome.status == 64)
        #expect(outcome.stderr.contains("initrd"))
        #expect(outcome.stderr.contains("--memory"), "stderr: \(outcome.stderr)")
    }

    @Test("a host without /dev/kvm gets an explanation and status 69")
    func missingKVM() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let outcome = try Self.run(kernel: guest, ["--kvm-device", "/nonexistent/kvm"])
        #expect(outcome.status == 69)
        #expect(outcome.stderr.contains("/nonexistent/kvm does not exist"))
        #expect(outcome.stderr.contains("kvm_intel"))
    }

    @Test("--kvm-device naming something else (a file, a directory, a FIFO, /dev/null) says what it is, with status 69", arguments: [
        "file", "directory", "fifo", "/dev/null",
    ])
    func notTheKVMDevice(kind: String) throws {
        // Before: "/dev/kvm reports KVM API version -1" (naming neither the
        // path given nor the problem), and exit 70 for a directory.
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let (fifo, directory) = try Self.makeFIFO()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path: String
        let expected: String
        switch kind {
        case "file":
            path = directory + "/kvm"
            try #require(FileManager.default.createFile(atPath: path, contents: Data("kvm".utf8)))
            expected = "is a regular file, not the KVM device"
        case "directory": (path, expected) = (directory, "is a directory, not the KVM device")
        case "fifo": (path, expected) = (fifo, "is a FIFO (named pipe), not the KVM device")
        default: (path, expected) = (kind, "is a character device that does not answer KVM's ioctls, not the KVM device")
        }
        let outcome = try Self.run(kernel: guest, ["--kvm-device", path])
        #expect(outcome.status == 69, "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("\(path) \(expected)"), "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("normally /dev/kvm"))
    }

    @Test("dump-tables refuses a FIFO where a table file goes (exit 66) instead of waiting for a reader")
    func dumpTablesOverFIFO() throws {
        let (_, directory) = try Self.makeFIFO()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try #require(mkfifo(directory + "/RSDP.dat", 0o600) == 0)
        let outcome = try SwiftVMProcess.run(["dump-tables", "--out", directory], timeout: 30)
        #expect(outcome.status == 66, "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("\(directory)/RSDP.dat: it is a FIFO (named pipe), not a file"), "stderr: \(outcome.stderr)")
    }

    /// A FIFO with no writer, in a fresh directory; removed with it.
    static func makeFIFO() throws -> (fifo: String, directory: String) {
        let directory = NSTemporaryDirectory() + "swiftvm-fifo-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let fifo = directory + "/input"
        try #require(mkfifo(fifo, 0o600) == 0)
        return (fifo, directory)
    }

    @Test("a FIFO given as any input file is refused at once (exit 66), never waited on", arguments: [
        ["run", "--kernel", "FIFO"],
        ["run", "--kernel", "GUEST", "--initrd", "FIFO"],
        ["run", "--kernel", "GUEST", "--cpu-template", "FIFO"],
        ["run", "--kernel", "GUEST", "--rootfs", "FIFO"],
        ["run", "--kernel", "GUEST", "--drive", "id=data,path=FIFO"],
        ["run", "--kernel", "GUEST", "--drive", "id=data,path=FIFO,ro,engine=async"],
        ["inspect", "kernel", "FIFO"],
        ["inspect", "rootfs", "FIFO"],
        ["check-config", "FIFO"],
    ])
    func fifoInput(template: [String]) throws {
        // Before: open(2) without O_NONBLOCK waited for a writer forever.
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let (fifo, directory) = try Self.makeFIFO()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var arguments = template.map { $0.replacingOccurrences(of: "FIFO", with: fifo).replacingOccurrences(of: "GUEST", with: guest) }
        // Were the FIFO accepted, nothing would boot: the status would say 69.
        if arguments[0] == "run" { arguments += ["--no-console-input", "--kvm-device", "/nonexistent/kvm"] }
        let outcome = try SwiftVMProcess.run(arguments, timeout: 15)
        #expect(!outcome.timedOut, "swiftvm waited on the FIFO")
        #expect(outcome.status == 66, "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("\(fifo)) is a FIFO (named pipe); give a regular file or a block device")
            || outcome.stderr.contains("\(fifo) is a FIFO (named pipe); give a regular file"), "stderr: \(outcome.stderr)")
    }

    @Test("a directory or a symbolic link loop as the kernel: exit 66 from run and from inspect alike", arguments: ["directory", "loop"])
    func unreadableKernelAgrees(kind: String) throws {
        let directory = NSTemporaryDirectory() + "swiftvm-kernel-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var kernel = directory
        if kind == "loop" {
            kernel = directory + "/a"
            try FileManager.default.createSymbolicLink(atPath: directory + "/a", withDestinationPath: directory + "/b")
            try FileManager.default.createSymbolicLink(atPath: directory + "/b", withDestinationPath: directory + "/a")
        }
        let run = try Self.run(kernel: kernel, ["--kvm-device", "/nonexistent/kvm"])
        let inspect = try SwiftVMProcess.run(["inspect", "kernel", kernel])
        #expect(run.status == 66, "run: \(run.stderr)")
        #expect(inspect.status == 66, "inspect: \(inspect.stderr)")
        let expected = kind == "loop" ? "Too many levels of symbolic links" : "is a directory; give a regular file"
        #expect(run.stderr.contains(expected) && inspect.stderr.contains(expected), "\(run.stderr)\n\(inspect.stderr)")
    }

    @Test("an empty initrd is an unusable input file: exit 65")
    func emptyInitrd() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let empty = try SwiftVMProcess.temporaryFile([], name: "initrd")
        defer { unlink(empty) }
        let outcome = try Self.run(kernel: guest, ["--initrd", empty, "--kvm-device", "/nonexistent/kvm"])
        #expect(outcome.status == 65, "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("the initrd file is empty"))
    }

    @Test("a drive that cannot be opened exits 66 like a missing file, and says how to fix it")
    func unopenableDrive() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let image = try SwiftVMProcess.temporaryFile([UInt8](repeating: 0, count: 65536), name: "drive.img")
        defer { unlink(image) }
        // ENOTDIR: a path through a regular file.
        let through = try Self.run(kernel: guest, ["--drive", "id=data,path=\(image)/x", "--kvm-device", "/nonexistent/kvm"])
        #expect(through.status == 66, "stderr: \(through.stderr)")
        #expect(through.stderr.contains("cannot open drive data (\(image)/x): Not a directory"))

        // EACCES: root opens any file, so as root the check runs as nobody (setpriv).
        try #require(chmod(image, 0) == 0)
        var launcher: [String] = []
        if geteuid() == 0 {
            guard let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
            else { return }
            launcher = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        }
        let denied = try Self.launch(launcher, [
            "run", "--kernel", guest, "--drive", "id=data,path=\(image)", "--no-console-input", "--kvm-device", "/nonexistent/kvm",
        ])
        #expect(denied.status == 66, "stderr: \(denied.stderr)")
        #expect(denied.stderr.contains("cannot open drive data (\(image)): Permission denied; attach it read-only (ro) or fix its permissions"),
            "stderr: \(denied.stderr)")
    }

    /// Runs swiftvm through `launcher` (empty: directly); returns its status and standard error.
    static func launch(_ launcher: [String], _ arguments: [String]) throws -> (status: Int32, stderr: String) {
        let binary = try #require(SwiftVMProcess.binary, "the swiftvm executable was not built next to the tests")
        let process = Process()
        let errors = Pipe()
        let command = launcher + [binary] + arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("one image given to two drives is named up front with both ids (exit 64), not blamed on another process", arguments: [
        "two-drives", "rootfs-and-drive", "through-a-link",
    ])
    func sameImageTwice(how: String) throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let image = try SwiftVMProcess.temporaryFile([UInt8](repeating: 0, count: 1 << 20), name: "disk.img")
        let link = image + ".link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: image)
        defer {
            unlink(image)
            unlink(link)
        }
        let drives: [String]
        let ids: String
        switch how {
        case "two-drives": (drives, ids) = (["--drive", "id=a,path=\(image)", "--drive", "id=b,path=\(image),ro"], "ids a and b")
        case "rootfs-and-drive": (drives, ids) = (["--rootfs", image, "--drive", "id=data,path=\(image)"], "ids rootfs and data")
        default: (drives, ids) = (["--drive", "id=a,path=\(image)", "--drive", "id=b,path=\(link)"], "ids a and b")
        }
        let outcome = try Self.run(kernel: guest, drives + ["--kvm-device", "/nonexistent/kvm"])
        #expect(outcome.status == 64, "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("the same image is given twice (\(ids))"), "stderr: \(outcome.stderr)")
        #expect(!outcome.stderr.contains("in use by another process"))
    }

    @Test("the same image attached read-only twice is allowed: no writer, no corruption")
    func sameImageReadOnly() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let image = try SwiftVMProcess.temporaryFile([UInt8](repeating: 0, count: 1 << 20), name: "disk.img")
        defer { unlink(image) }
        let outcome = try Self.run(kernel: guest, [
            "--drive", "id=a,path=\(image),ro", "--drive", "id=b,path=\(image),ro", "--kvm-device", "/nonexistent/kvm",
        ])
        #expect(outcome.status == 69, "stderr: \(outcome.stderr)")
    }
}
