import Foundation
import Testing

/// `swiftvm inspect kernel` on real and synthetic kernel files.
@Suite("swiftvm inspect kernel", .enabled(if: inspectKernelAvailable, "this build has no `inspect` command registered"))
struct InspectKernelTests {
    static func inspect(_ bytes: [UInt8], _ arguments: [String] = []) throws -> SwiftVMProcess.Outcome {
        let path = try SwiftVMProcess.temporaryFile(bytes, name: "kernel")
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try SwiftVMProcess.run(["inspect", "kernel", path] + arguments)
    }

    static func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let input = try SwiftVMProcess.temporaryFile(bytes, name: "plain")
        defer { try? FileManager.default.removeItem(atPath: input) }
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["gzip", "-c", "-n", input]
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "gzip failed")
        return Array(data)
    }

    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

    @Test("the cached vmlinux: an x86_64 ELF with its banner, usable on x86_64",
          .enabled(if: GuestKernel.path != nil, "no guest kernel: run scripts/build-kernel.sh"))
    func cachedVmlinux() throws {
        let outcome = try SwiftVMProcess.run(["inspect", "kernel", try #require(GuestKernel.path)])
        #expect(outcome.status == 0, "\(outcome.stdout)\(outcome.stderr)")
        #expect(outcome.stdout.contains("a 64-bit ELF for x86_64"))
        #expect(outcome.stdout.contains("entry point:  0x1000000"))
        #expect(outcome.stdout.contains("x86_64 entry: the PVH 32-bit entry"), "the kernel carries a PVH note: \(outcome.stdout)")
        #expect(outcome.stdout.contains(#/version: +Linux version 6\.1/#))
        #expect(outcome.stdout.contains("x86_64: usable"))
        #expect(outcome.stdout.contains("aarch64: not usable"))
        // Asking for aarch64 is a refusal.
        #expect(try SwiftVMProcess.run(["inspect", "kernel", try #require(GuestKernel.path), "--arch", "aarch64"]).status == 65)
    }

    @Test("the test guest with an embedded config: the config's findings are printed and decide the exit",
          .enabled(if: SwiftVMProcess.testGuest != nil, "the test guest did not build"))
    func embeddedConfig() throws {
        let guest = try Array(Data(contentsOf: URL(fileURLWithPath: try #require(SwiftVMProcess.testGuest))))
        let good = try String(contentsOf: SwiftVMProcess.packageRoot.appendingPathComponent("GuestConfigs/microvm-x86_64-6.1.config"), encoding: .utf8)
        let clean = try Self.inspect(guest + Array("IKCFG_ST".utf8) + (try Self.gzip(Array(good.utf8))) + Array("IKCFG_ED".utf8))
        #expect(clean.status == 0, "\(clean.stdout)")
        #expect(clean.stdout.contains("embedded config (CONFIG_IKCONFIG)"))
        #expect(clean.stdout.contains("0 errors, 0 warnings for x86_64 with ACPI"))

        let bad = good.replacingOccurrences(of: "CONFIG_VIRTIO_BLK=y", with: "CONFIG_VIRTIO_BLK=m")
            .replacingOccurrences(of: "CONFIG_SERIAL_8250=y", with: "# CONFIG_SERIAL_8250 is not set")
        let outcome = try Self.inspect(guest + Array("IKCFG_ST".utf8) + (try Self.gzip(Array(bad.utf8))) + Array("IKCFG_ED".utf8))
        #expect(outcome.status == 65)
        #expect(outcome.stdout.contains("x86_64: usable"))
        #expect(outcome.stdout.contains("error CONFIG_VIRTIO_BLK=m: built as a module"))
        #expect(outcome.stdout.contains("error CONFIG_SERIAL_8250 is not set:"))
    }

    @Test("a bzImage: boot protocol and setup-header facts, usable through its 64-bit entry; without XLF_KERNEL_64 refused")
    func bzImage() throws {
        var bytes = [UInt8](repeating: 0, count: 0x2000)
        bytes[0x1f1] = 1
        bytes[0x1fe] = 0x55
        bytes[0x1ff] = 0xaa
        bytes.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        bytes.replaceSubrange(0x206..<0x208, with: Self.le(UInt16(0x020f)))
        bytes.replaceSubrange(0x20e..<0x210, with: Self.le(UInt16(0x100)))
        bytes.replaceSubrange(0x300..<0x30a, with: Array("6.1.0-bz\u{0}\u{0}".utf8))
        bytes.replaceSubrange(0x236..<0x238, with: Self.le(UInt16(1)))
        let outcome = try Self.inspect(bytes)
        #expect(outcome.status == 0, "\(outcome.stdout)")
        #expect(outcome.stdout.contains("a bzImage (Linux boot protocol 2.15)"))
        #expect(outcome.stdout.contains("64-bit entry:  yes"))
        #expect(outcome.stdout.contains("version:       6.1.0-bz"))
        #expect(outcome.stdout.contains("x86_64 entry:  the Linux 64-bit entry at 0x100200"), "\(outcome.stdout)")
        #expect(outcome.stdout.contains("x86_64: usable"))

        bytes[0x236] = 0  // no XLF_KERNEL_64: a 32-bit-only kernel
        let old = try Self.inspect(bytes)
        #expect(old.status == 65, "\(old.stdout)")
        #expect(old.stdout.contains("x86_64: not usable"), "\(old.stdout)")
    }

    @Test("an arm64 Image: usable with --arch aarch64, refused on x86_64")
    func arm64Image() throws {
        var bytes = [UInt8](repeating: 0, count: 0x1000)
        bytes[0] = 0x4d
        bytes[1] = 0x5a
        bytes.replaceSubrange(0x10..<0x18, with: Self.le(UInt64(0x1000)))
        bytes.replaceSubrange(0x18..<0x20, with: Self.le(UInt64(0b10)))
        bytes.replaceSubrange(0x38..<0x3c, with: [0x41, 0x52, 0x4d, 0x64])
        let onARM = try Self.inspect(bytes, ["--arch", "aarch64"])
        #expect(onARM.status == 0, "\(onARM.stdout)")
        #expect(onARM.stdout.contains("an arm64 Linux Image"))
        #expect(onARM.stdout.contains("page size:   4 KiB"))
        #expect(onARM.stdout.contains("aarch64: usable (swiftvm run --arch aarch64"))
        #expect(try Self.inspect(bytes).status == 65)
    }

    @Test("a gzip file: named, looked into, and decompression advised")
    func gzipFile() throws {
        let outcome = try Self.inspect(try Self.gzip(Array(repeating: 0x41, count: 5000)))
        #expect(outcome.status == 65)
        #expect(outcome.stdout.contains("a gzip-compressed file"))
        #expect(outcome.stdout.contains("contains a file of unknown format"))
        #expect(outcome.stdout.contains("gunzip -c FILE > vmlinux"))
    }

    @Test("a missing file is exit 66")
    func missing() throws {
        #expect(try SwiftVMProcess.run(["inspect", "kernel", "/nonexistent/vmlinux"]).status == 66)
    }

    /// 204 bytes that gunzip to themselves (Matthew Barber's quine.gz, after Russ Cox).
    static let gzipQuine: [UInt8] = [
        0x1f, 0x8b, 0x08, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x71, 0x75, 0x69, 0x6e, 0x65, 0x2e,
        0x67, 0x7a, 0x00, 0x00, 0x18, 0x00, 0xe7, 0xff, 0x1f, 0x8b, 0x08, 0x08, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xff, 0x71, 0x75, 0x69, 0x6e, 0x65, 0x2e, 0x67, 0x7a, 0x00, 0x00, 0x18, 0x00, 0xe7, 0xff,
        0x42, 0x16, 0x47, 0x16, 0x07, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x42, 0x16, 0x47, 0x16, 0x07, 0x00,
        0x05, 0x00, 0xfa, 0xff, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x00, 0x14, 0x00, 0xeb, 0xff, 0x42, 0x16,
        0x47, 0x16, 0x07, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x00, 0x14, 0x00,
        0xeb, 0xff, 0x42, 0x88, 0x21, 0xc4, 0x00, 0x00, 0x14, 0x00, 0xeb, 0xff, 0x42, 0x88, 0x21, 0xc4,
        0x00, 0x00, 0x14, 0x00, 0xeb, 0xff, 0x42, 0x88, 0x21, 0xc4, 0x00, 0x00, 0x14, 0x00, 0xeb, 0xff,
        0x42, 0x88, 0x21, 0xc4, 0x00, 0x00, 0x14, 0x00, 0xeb, 0xff, 0x42, 0x88, 0x21, 0xc4, 0x00, 0x00,
        0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x0d, 0x00, 0xf2, 0xff, 0x42, 0x88,
        0x21, 0xc4, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x0d, 0x00,
        0xf2, 0xff, 0x83, 0x70, 0xa0, 0x1c, 0x00, 0xff, 0x79, 0xff, 0xa9, 0xcc, 0x00, 0x00, 0x00, 0x83,
        0x70, 0xa0, 0x1c, 0x00, 0xff, 0x79, 0xff, 0xa9, 0xcc, 0x00, 0x00, 0x00,
    ]

    @Test("a gzip file that decompresses to itself: looked into 4 layers deep, then the limit is named (exit 65, no crash)")
    func quine() throws {
        // Before the layer limit this recursed until the stack overflowed (SIGSEGV).
        let path = try SwiftVMProcess.temporaryFile(Self.gzipQuine, name: "quine.gz")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let outcome = try SwiftVMProcess.run(["inspect", "kernel", path], timeout: 30)
        #expect(!outcome.timedOut)
        #expect(outcome.status == 65, "stderr: \(outcome.stderr)")
        #expect(outcome.stdout.components(separatedBy: "contains a gzip-compressed file").count == 5, "\(outcome.stdout)")
        #expect(outcome.stdout.contains(
            "not decompressed: this is compressed layer 5, and swiftvm looks into at most 4 layers of compression"),
            "\(outcome.stdout)")
    }
}

/// `inspect kernel` is registered by the `inspect` parent command, which a build may not have yet.
/// (Without it, `--help` still succeeds, printing the top-level usage.)
let inspectKernelAvailable: Bool =
    (try? SwiftVMProcess.run(["inspect", "kernel", "--help"]))?.stdout.contains("swiftvm inspect kernel <file>") == true
