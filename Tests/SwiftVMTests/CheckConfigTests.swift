import Foundation
import Testing
@testable import SwiftVM

/// `swiftvm check-config` as a user runs it: findings on stdout, exit 65 on errors.
@Suite("swiftvm check-config")
struct CheckConfigTests {
    static func fragment(_ name: String) throws -> String {
        try String(contentsOf: SwiftVMProcess.packageRoot.appendingPathComponent("GuestConfigs/\(name)"), encoding: .utf8)
    }

    /// `text` with each `CONFIG_X` line in `replacements` replaced by the given line.
    static func edited(_ text: String, _ replacements: [String: String]) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            for (option, replacement) in replacements
            where line.hasPrefix(option + "=") || line == "# \(option) is not set" {
                return replacement
            }
            return String(line)
        }.joined(separator: "\n")
    }

    static func check(_ text: String, _ arguments: [String] = []) throws -> SwiftVMProcess.Outcome {
        let path = try SwiftVMProcess.temporaryFile(Array(text.utf8), name: "config")
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try SwiftVMProcess.run(["check-config", path] + arguments)
    }

    @Test("the project's fragments pass for their own paths")
    func fragments() throws {
        for (name, arguments) in [
            ("microvm-x86_64-6.1.config", []), ("microvm-x86_64-6.1-no-acpi.config", ["--no-acpi"]),
            ("microvm-aarch64-6.1.config", ["--arch", "aarch64"]),
        ] {
            let outcome = try Self.check(try Self.fragment(name), arguments)
            #expect(outcome.status == 0, "\(name): \(outcome.stdout)")
            #expect(outcome.stdout.contains("0 errors, 0 warnings"))
        }
    }

    @Test("a modular virtio-blk and a missing console: one line each, exit 65")
    func badConfig() throws {
        let text = Self.edited(try Self.fragment("microvm-x86_64-6.1.config"), [
            "CONFIG_VIRTIO_BLK": "CONFIG_VIRTIO_BLK=m", "CONFIG_SERIAL_8250_CONSOLE": "# CONFIG_SERIAL_8250_CONSOLE is not set",
        ])
        let outcome = try Self.check(text)
        #expect(outcome.status == 65)
        let lines = outcome.stdoutLines
        #expect(lines.contains { $0.hasPrefix("error CONFIG_VIRTIO_BLK=m: built as a module") && $0.contains("Fix: CONFIG_VIRTIO_BLK=y (built in:") })
        #expect(lines.contains { $0.hasPrefix("error CONFIG_SERIAL_8250_CONSOLE is not set:") && $0.contains("the kernel boots into silence") })
        #expect(lines.last?.contains("2 errors, 0 warnings for x86_64 with ACPI") == true)
    }

    @Test("ACPI without PCI is a warning (exit 0)")
    func acpiWithoutPCI() throws {
        let text = Self.edited(try Self.fragment("microvm-x86_64-6.1.config"), ["CONFIG_PCI": "# CONFIG_PCI is not set"])
        let outcome = try Self.check(text)
        #expect(outcome.status == 0)
        #expect(outcome.stdout.contains("warning CONFIG_PCI is not set: ACPI without the PCI core is an untested combination"))
        #expect(outcome.stdoutLines.last?.contains("0 errors, 1 warning for x86_64 with ACPI") == true)
    }

    @Test("no i8042 or AT keyboard driver: Ctrl-Alt-Del warnings, reboot=k still works (exit 0)")
    func noI8042() throws {
        let text = Self.edited(try Self.fragment("microvm-x86_64-6.1.config"), [
            "CONFIG_SERIO_I8042": "# CONFIG_SERIO_I8042 is not set", "CONFIG_KEYBOARD_ATKBD": "# CONFIG_KEYBOARD_ATKBD is not set",
        ])
        let outcome = try Self.check(text)
        #expect(outcome.status == 0, "\(outcome.stdout)")
        let lines = outcome.stdoutLines
        #expect(lines.contains {
            $0.hasPrefix("warning CONFIG_SERIO_I8042 is not set: no i8042 driver, so a Ctrl-Alt-Del the host sends through the i8042")
                && $0.contains("reboot=k does not need it") && $0.contains("Fix: CONFIG_SERIO_I8042=y")
        })
        #expect(lines.contains { $0.hasPrefix("warning CONFIG_KEYBOARD_ATKBD is not set: no AT keyboard driver") })
        #expect(!outcome.stdout.contains("hangs on reboot"))
        #expect(lines.last?.contains("0 errors, 2 warnings for x86_64 with ACPI") == true)
    }

    @Test("command-line virtio devices: a warning with ACPI (exit 0), an error without (exit 65)")
    func cmdlineDevices() throws {
        let withACPI = Self.edited(try Self.fragment("microvm-x86_64-6.1.config"), [
            "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES": "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y",
        ])
        let warned = try Self.check(withACPI)
        #expect(warned.status == 0)
        #expect(warned.stdout.contains("warning CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y: it has no function on the ACPI path"))

        let withoutACPI = Self.edited(try Self.fragment("microvm-x86_64-6.1-no-acpi.config"), [
            "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES": "# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set",
        ])
        let failed = try Self.check(withoutACPI, ["--no-acpi"])
        #expect(failed.status == 65)
        #expect(failed.stdout.contains("error CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set"))
    }

    @Test("a 64K-page aarch64 kernel")
    func pages() throws {
        let text = Self.edited(try Self.fragment("microvm-aarch64-6.1.config"), ["CONFIG_ARM64_4K_PAGES": "CONFIG_ARM64_64K_PAGES=y"])
        let outcome = try Self.check(text, ["--arch", "aarch64"])
        #expect(outcome.status == 65)
        #expect(outcome.stdout.contains("error CONFIG_ARM64_64K_PAGES=y:"))
        #expect(outcome.stdout.contains("nothing in CI exercises a 64K-page guest"))
    }

    @Test("the config of the cached kernel passes", .enabled(if: GuestKernel.path != nil, "no guest kernel: run scripts/build-kernel.sh"))
    func cachedKernel() throws {
        let config = URL(fileURLWithPath: try #require(GuestKernel.path)).deletingLastPathComponent().appendingPathComponent("config").path
        try #require(FileManager.default.fileExists(atPath: config), "build-kernel.sh publishes config next to vmlinux")
        let outcome = try SwiftVMProcess.run(["check-config", config])
        #expect(outcome.status == 0, "\(outcome.stdout)")
    }

    @Test("not a config: exit 65; no such file: exit 66; --no-acpi on aarch64: exit 64")
    func badInputs() throws {
        let garbage = try Self.check("this is not\na kernel config\n")
        #expect(garbage.status == 65)
        #expect(garbage.stderr.contains("is not a kernel .config: line 1"))
        #expect(try SwiftVMProcess.run(["check-config", "/nonexistent/config"]).status == 66)
        #expect(try Self.check(try Self.fragment("microvm-aarch64-6.1.config"), ["--arch", "aarch64", "--no-acpi"]).status == 64)
    }

    @Test("a file over 16 MiB is refused with its size, not checked by its first 16 MiB (exit 65)")
    func tooLarge() throws {
        // A usable config followed by comments: its first 16 MiB alone would pass.
        var text = try Self.fragment("microvm-x86_64-6.1.config")
        let padding = String(repeating: "# padding\n", count: (16 << 20) / 10 + 1)
        text += padding
        let outcome = try Self.check(text)
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("the kernel config "), "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains(" is \(text.utf8.count) bytes; swiftvm reads at most 16 MiB of a kernel config"))
        #expect(!outcome.stdout.contains("usable"))
    }

    @Test("a pipe, which has no size, is read to its end; past the limit it is an error")
    func pipeInput() throws {
        func pipe(holding bytes: [UInt8]) throws -> Int32 {
            var ends: [Int32] = [0, 0]
            try #require(Glibc.pipe(&ends) == 0)
            // Small enough for the pipe's buffer, so the write completes with no reader.
            #expect(bytes.withUnsafeBytes { Glibc.write(ends[1], $0.baseAddress, $0.count) } == bytes.count)
            close(ends[1])
            return ends[0]
        }
        let text = Array("CONFIG_VIRTIO_BLK=y\n".utf8)
        let small = try pipe(holding: text)
        defer { close(small) }
        let image = try FileImage(path: "/dev/fd/\(small)", role: "kernel config")
        #expect(image.size == 0)
        #expect(try image.readAll(limit: 100) == text)

        let large = try pipe(holding: [UInt8](repeating: 0x23, count: 200))
        defer { close(large) }
        let error = #expect(throws: VMMError.self) {
            try FileImage(path: "/dev/fd/\(large)", role: "kernel config").readAll(limit: 100)
        }
        #expect(error?.message == "the kernel config /dev/fd/\(large) holds more than 100 bytes; swiftvm reads at most "
            + "100 bytes of a kernel config and does not cut one short (is this the right file?)")
        #expect(error?.exitCode == 65)
    }
}
