import Foundation
import Testing
import SwiftVMBoot

/// `swiftvm dump-tables` writes what the guest would be given, and the
/// external decoders a person would use accept it.
@Suite("swiftvm dump-tables")
struct DumpTablesTests {
    static func tool(_ name: String) -> String? {
        ["/usr/bin/\(name)", "/usr/local/bin/\(name)"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func scratch() throws -> String {
        let path = NSTemporaryDirectory() + "swiftvm-tables-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func run(_ tool: String, _ arguments: [String], in directory: String) throws -> (Int32, String) {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("x86_64: the five ACPI tables disassemble with iasl and name every device", .enabled(if: tool("iasl") != nil, "needs iasl (Debian's acpica-tools)"))
    func acpi() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let outcome = try SwiftVMProcess.run(["dump-tables", "--vcpus", "4", "--devices", "block,block,rng", "--out", directory])
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        for name in ["RSDP", "XSDT", "FACP", "APIC", "DSDT"] {
            #expect(FileManager.default.fileExists(atPath: "\(directory)/\(name).dat"), "no \(name).dat")
        }
        let (status, log) = try Self.run(try #require(Self.tool("iasl")), ["-d", "XSDT.dat", "FACP.dat", "APIC.dat", "DSDT.dat"], in: directory)
        #expect(status == 0, "iasl: \(log)")
        let dsdt = try String(contentsOfFile: "\(directory)/DSDT.dsl", encoding: .utf8)
        #expect(dsdt.components(separatedBy: "\"LNRO0005\"").count - 1 == 3)
        #expect(dsdt.contains("PNP0501"))
        #expect(dsdt.contains("PNP0303"))
        let madt = try String(contentsOfFile: "\(directory)/APIC.dsl", encoding: .utf8)
        #expect(madt.components(separatedBy: "Subtable Type : 00 [Processor Local APIC]").count - 1 == 4)
    }

    @Test("aarch64: guest.dtb decompiles with dtc and has the cpus and devices", .enabled(if: tool("dtc") != nil, "needs dtc (Debian's device-tree-compiler)"))
    func deviceTree() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let outcome = try SwiftVMProcess.run(["dump-tables", "--arch", "aarch64", "--vcpus", "2", "--devices", "block,rng", "--out", directory])
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        let (status, dts) = try Self.run(try #require(Self.tool("dtc")), ["-I", "dtb", "-O", "dts", "guest.dtb"], in: directory)
        #expect(status == 0, "dtc: \(dts)")
        #expect(dts.components(separatedBy: "virtio_mmio@").count - 1 == 2)
        #expect(dts.components(separatedBy: "cpu@").count - 1 == 2)
        #expect(dts.contains("arm,gic-v3"))
        #expect(dts.contains("bootargs"))
    }

    @Test("an unknown device kind is a usage error that lists the known ones")
    func unknownDevice() throws {
        let outcome = try SwiftVMProcess.run(["dump-tables", "--devices", "block,gpu", "--out", NSTemporaryDirectory()])
        #expect(outcome.status == 64)
        #expect(outcome.stderr.contains("\"gpu\" is not one of block, net, vsock, balloon, rng"))
    }
}
