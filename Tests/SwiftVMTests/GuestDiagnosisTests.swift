import Foundation
import SwiftVM
import Testing
import SwiftVMInspect

/// What swiftvm tells a person about a guest that spins, hangs or stops on an
/// instruction this host's KVM cannot run.
@Suite("Diagnosing a running or stopped guest", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct GuestDiagnosisTests {
    static func guest() throws -> String {
        try #require(SwiftVMProcess.testGuest, "the test guest could not be built (make -C Tests/TestGuest)")
    }

    /// `nm`'s address of a global symbol in the test guest.
    static func nmAddress(of symbol: String) throws -> UInt64? {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["nm", try guest()]
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 3, fields[2] == symbol { return UInt64(fields[0], radix: 16) }
        }
        return nil
    }

    @Test("SIGUSR1 prints every vCPU's registers with the symbol at RIP, and the guest goes on running")
    func registersOnSIGUSR1() throws {
        let outcome = try SwiftVMProcess.run(
            ["run", "--kernel", try Self.guest(), "--cmdline", "console=ttyS0 reboot=k testguest.mode=spin",
             "--vcpus", "2", "--no-console-input", "--no-rng"],
            timeout: 30, signals: [("SPINNING", SIGUSR1), ("vCPU 1: rip", SIGUSR1), ("vCPU registers (SIGUSR1)", SIGTERM)])
        #expect(!outcome.timedOut)
        #expect(outcome.status == 128 + SIGTERM, "stderr: \(outcome.stderr)")
        let lines = outcome.stderr.split(separator: "\n").map(String.init)
        // vCPU 0 spins in main (run_spin is inlined there): its RIP is named
        // main+offset, and main's address from nm plus the offset is that RIP.
        let vcpu0 = try #require(lines.first { $0.hasPrefix("vCPU 0: rip 0x") }, "stderr: \(outcome.stderr)")
        let fields = vcpu0.split(separator: " ")
        let rip = try #require(UInt64(fields[3].dropFirst(2), radix: 16))
        let symbol = try #require(fields[4].hasPrefix("<main+0x") ? fields[4] : nil, "\(vcpu0)")
        let offset = try #require(UInt64(symbol.dropFirst("<main+0x".count).prefix { $0 != "/" }, radix: 16))
        #expect(try Self.nmAddress(of: "main").map { $0 + offset } == rip)
        #expect(vcpu0.contains("(kernel mode)"))
        // vCPU 1 was never started by the guest.
        #expect(lines.contains { $0.hasPrefix("vCPU 1: rip") && $0.contains("not started: waiting for INIT/SIPI") })
        #expect(lines.contains { $0.hasPrefix("  instruction bytes at rip: ") })
        // Each SIGUSR1 produced one report, and the stop a last one.
        #expect(lines.filter { $0 == "swiftvm: vCPU registers (SIGUSR1):" }.count == 2)
        #expect(lines.contains("swiftvm: vCPU registers at the stop:"))
        #expect(lines.contains("swiftvm: error: stopped by signal 15"))
    }

    @Test("an instruction this host's KVM cannot emulate is named in the crash report, with the guest-side fix",
          arguments: [("int3", "--test-kernel"), ("popcnt", "clearcpuid=popcnt"), ("clac", "clearcpuid=smap"),
                      ("fwait", "fpu__drop"), ("cmpxchg16b", "no-cx16-no-xsave.json"), ("xsave", "noxsave")])
    func emulationFailure(instruction: String, fix: String) throws {
        let outcome = try SwiftVMProcess.run(
            ["run", "--kernel", try Self.guest(), "--cmdline", "console=ttyS0 reboot=k testguest.mode=insn testguest.insn=\(instruction)",
             "--no-console-input", "--no-rng"],
            timeout: 30)
        #expect(outcome.stdout.contains("INSN \(instruction)"))
        if outcome.stdout.contains("INSN-DONE \(instruction)") || outcome.stdout.contains("FAIL cpu-exception") {
            print("emulation failure for \(instruction): not checked, this host's KVM runs it (hardware virtualization)")
            return
        }
        #expect(outcome.status == 81, "stderr: \(outcome.stderr)")
        let bytesLine = try #require(outcome.stderr.split(separator: "\n").first { $0.contains("instruction bytes at rip:") })
        #expect(bytesLine.hasSuffix("(\(instruction))"))
        // RIP is named from the guest's symbol table.
        #expect(outcome.stderr.contains("<run_insn+0x"))
        #expect(outcome.stderr.contains("this KVM cannot emulate \(instruction): "))
        #expect(outcome.stderr.contains(fix))
    }
}

@Suite("Kernel symbols against nm", .enabled(if: SwiftVMProcess.testGuest != nil, "needs the test guest"))
struct KernelSymbolsNMTests {
    @Test("every function nm lists in the test guest is named at its own address")
    func matchesNM() throws {
        let guest = try GuestDiagnosisTests.guest()
        let symbols = try #require(KernelSymbols(image: try FileImage(path: guest, role: "kernel")))
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["nm", "-S", "--defined-only", guest]
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        var checked = 0
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            // "address size type name" for sized text symbols.
            guard fields.count == 4, fields[2] == "T" || fields[2] == "t",
                let address = UInt64(fields[0], radix: 16), let size = UInt64(fields[1], radix: 16), size > 1
            else { continue }
            let name = String(fields[3])
            let described = symbols.describe(address + size - 1)
            #expect(described == "\(name)+0x\(String(size - 1, radix: 16))/0x\(String(size, radix: 16))")
            checked += 1
        }
        #expect(checked > 20)
    }
}
