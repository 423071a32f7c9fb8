import Foundation
import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

/// Where `iasl` (package acpica-tools) is on PATH, if it is.
private let iaslPath: String? = {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":").map { "\($0)/iasl" }.first { FileManager.default.isExecutableFile(atPath: $0) }
}()

/// Runs iasl with `arguments` in `directory`; returns its exit status and output.
private func runIASL(_ arguments: [String], in directory: URL, iasl: String) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: iasl)
    process.arguments = arguments
    process.currentDirectoryURL = directory
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}

/// The RSDP in iasl's data-table source form. iasl cannot disassemble a bare
/// RSDP (its header is not the common one), but it compiles this, filling in
/// both checksums itself, so comparing the result checks layout and checksums.
private func rsdpSource(xsdt: GuestAddress) -> String {
    """
    [0008]                          Signature : "RSD PTR "
    [0001]                           Checksum : 00
    [0006]                             Oem ID : "SWIFTV"
    [0001]                           Revision : 02
    [0004]                       RSDT Address : 00000000
    [0004]                             Length : 00000024
    [0008]                       XSDT Address : \(String(format: "%016llX", xsdt.rawValue))
    [0001]                  Extended Checksum : 00
    [0003]                           Reserved : 000000

    """
}

private func occurrences(of needle: String, in text: String) -> Int {
    text.components(separatedBy: needle).count - 1
}

/// The tables disassembled by ACPICA's own tool, which checks their
/// structure, checksums and AML independently of this module.
@Suite(
    "ACPI tables disassembled by iasl",
    // Without acpica-tools this suite is skipped, and Swift Testing prints this reason.
    .enabled(if: iaslPath != nil, "iasl not found on PATH: install acpica-tools to check the ACPI tables with it")
)
struct ACPIIASLTests {
    static let shapes: [(vcpus: Int, devices: Int)] = [1, 2, 32].flatMap { vcpus in [0, 1, 8].map { (vcpus, $0) } }

    @Test("iasl -d accepts every table", arguments: shapes)
    func disassembly(shape: (vcpus: Int, devices: Int)) throws {
        let iasl = try #require(iaslPath)
        let tables = try ACPITables(vcpuCount: shape.vcpus, virtioDevices: virtioDevices(shape.devices))
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("swiftvm-acpi-\(shape.vcpus)-\(shape.devices)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        var dsl: [String: String] = [:]
        for file in tables.files where file.name != "RSDP.dat" {
            try Data(file.bytes).write(to: directory.appendingPathComponent(file.name))
            let result = try runIASL(["-d", file.name], in: directory, iasl: iasl)
            #expect(result.status == 0, "iasl -d \(file.name) exited \(result.status):\n\(result.output)")
            #expect(!result.output.contains("Error"), "iasl -d \(file.name):\n\(result.output)")
            let source = directory.appendingPathComponent(file.name.replacingOccurrences(of: ".dat", with: ".dsl"))
            let text = try String(contentsOf: source, encoding: .utf8)
            // iasl notes bad checksums and lengths inside the disassembly rather than failing.
            for complaint in ["Incorrect", "Invalid", "**** "] {
                #expect(!text.contains(complaint), "\(file.name): \(complaint)\n\(text)")
            }
            dsl[file.name] = text
        }

        try rsdpSource(xsdt: tables.xsdtAddress).write(
            to: directory.appendingPathComponent("RSDP.dsl"), atomically: true, encoding: .utf8)
        let rsdp = try runIASL(["RSDP.dsl"], in: directory, iasl: iasl)
        #expect(rsdp.status == 0, "iasl RSDP.dsl exited \(rsdp.status):\n\(rsdp.output)")
        let compiled = try Data(contentsOf: directory.appendingPathComponent("RSDP.aml"))
        #expect(Array(compiled) == tables.rsdp)

        let dsdt = dsl["DSDT.dat"] ?? ""
        #expect(dsdt.contains("EisaId (\"PNP0501\")"))
        #expect(dsdt.contains("EisaId (\"PNP0303\")"))
        #expect(occurrences(of: "\"LNRO0005\"", in: dsdt) == shape.devices)
        #expect(dsdt.contains("Name (\\_S5, Package (0x02)  // _S5_: S5 System State"))
        for index in 0..<shape.devices {
            let irq = X86Layout.firstVirtioIRQ + UInt32(index)
            #expect(dsdt.contains("Device (V00\(String(index, radix: 16, uppercase: true)))"))
            #expect(dsdt.contains(String(format: "0x%08X,", irq)))
        }

        let madt = dsl["APIC.dat"] ?? ""
        #expect(occurrences(of: "[Processor Local APIC]", in: madt) == shape.vcpus)
        #expect(occurrences(of: "[I/O APIC]", in: madt) == 1)
        #expect(!madt.contains("[Interrupt Source Override]"))

        let fadt = dsl["FACP.dat"] ?? ""
        #expect(fadt.contains("Hardware Reduced (V5) : 1"))
        #expect(fadt.contains("Hypervisor ID : 204D565446495753"))  // "SWIFTVM " as a little-endian u64
        #expect(fadt.contains("Address : 0000000000000600"))  // SLEEP_CONTROL_REG
        #expect(fadt.contains("Address : 0000000000000601"))  // SLEEP_STATUS_REG
        #expect(fadt.contains("Value to cause reset : FE"))

        let xsdt = dsl["XSDT.dat"] ?? ""
        for address in [tables.fadtAddress, tables.madtAddress] {
            #expect(xsdt.contains(String(format: "%016llX", address.rawValue)))
        }
    }
}
