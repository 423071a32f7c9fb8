import ArgumentParser
import Glibc
import SwiftVM
import SwiftVMAPI
import SwiftVMHost
import SwiftVMMemory

struct SelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check that this host can run microVMs, by booting swiftvm's own test guest.",
        discussion: """
            Prints what the host offers (KVM API version, backend module, hardware \
            virtualization), then one PASS or FAIL line per check and a summary. Exits 0 only \
            if no check fails. The net check needs root and ip (iproute2) to make a TAP in a \
            network namespace of its own; without them it prints SKIP and why.
            """)

    @Option(help: "The test guest to boot (default: swiftvm-testguest next to the swiftvm executable, or $SWIFTVM_TESTGUEST).")
    var guest: String?

    @OptionGroup var log: LogOptions

    func run() throws {
        log.apply()
        // The selftest's own VMs run their event loops and vCPUs under the
        // filters `swiftvm run` uses (docs/security.md); its main thread goes
        // on building VMs, so it loads none.
        do {
            VMConfig.defaultSeccomp = try SeccompFilterFile.filters(disabled: false, file: nil, kinds: [.events, .vcpu])
        } catch {
            Log.warning("no seccomp filters: \(error.message)")
        }
        // Boot-time lines, and the warnings the guest provokes on purpose
        // (refused writes, reads past the end), would interleave with the report.
        if log.logLevel.level == .info { Log.level = .error }
        let host = HostReport.probe()
        print("Host:")
        for line in host.lines { print("  \(line)") }

        var passed = 0
        var failed = 0
        var skipped = 0
        func report(_ check: SelfTest.Check) {
            print(check.line)
            if check.skipped { skipped += 1 } else if check.passed { passed += 1 } else { failed += 1 }
        }
        if case .failure(let error) = host.kvm {
            report(SelfTest.Check(name: "kvm", passed: false, detail: error.description))
        } else if let guestPath = locateGuest() {
            report(SelfTest.Check(name: "kvm", passed: true, detail: "/dev/kvm opened"))
            let test = SelfTest(guestPath: guestPath)
            for scenario in SelfTest.scenarios {
                for check in test.run(scenario) { report(check) }
            }
            // Devices with a host side: vsock over Unix sockets, the balloon
            // through the library's API, and (where a TAP can be made) net.
            report(test.vsock())
            report(test.balloon())
            if let executable = executablePath() {
                report(test.net(executable: executable))
            } else {
                report(.skip("net", because: "cannot find swiftvm's own executable (/proc/self/exe) to run the guest in a network namespace"))
            }
            // The same guest booted by another swiftvm process through
            // Firecracker's API socket, then through its config file.
            if let executable = executablePath() {
                for check in FirecrackerSelfTest.run(test, executable: executable) { report(check) }
            }
            // What a Linux guest runs that this host's KVM may not.
            var notes: [String] = []
            for instruction in SelfTest.instructionProbes {
                let (check, note) = test.probe(instruction)
                report(check)
                if let note { notes.append(note) }
            }
            if !notes.isEmpty {
                print("This host's KVM cannot run some instructions a Linux guest uses; a guest needs:")
                for note in notes { print("  \(note)") }
            }
        } else {
            report(SelfTest.Check(
                name: "test guest", passed: false,
                detail: "swiftvm-testguest not found next to \(executableDirectory() ?? "the swiftvm executable"); "
                    + "build it with scripts/setup.sh (or make -C Tests/TestGuest) or pass --guest PATH"))
        }
        print("\(passed) passed, \(failed) failed" + (skipped > 0 ? ", \(skipped) skipped" : ""))
        if failed > 0 { throw ExitCode.failure }
    }

    private func locateGuest() -> String? {
        if let guest { return guest }
        if let env = getenv("SWIFTVM_TESTGUEST") { return String(cString: env) }
        guard let directory = executableDirectory() else { return nil }
        let candidate = directory + "/swiftvm-testguest"
        return access(candidate, R_OK) == 0 ? candidate : nil
    }

    private func executablePath() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func executableDirectory() -> String? {
        guard let path = executablePath(), let slash = path.lastIndex(of: "/") else { return nil }
        return String(path[..<slash])
    }
}
