import SwiftVMDevices
import Glibc
import SwiftVMBoot
import SwiftVMHost

/// Boots the project's test guest in several machine shapes and checks what
/// it reports, so a person can see in seconds whether this host runs microVMs.
///
/// Each scenario becomes `PASS`/`FAIL` lines; the guest's own checks (boot
/// protocol, e820, memory size, MP table, SMP start-up, UART interrupt) are
/// reported one per line under the scenario's name.
public struct SelfTest: Sendable {
    public struct Scenario: Sendable {
        public var name: String
        public var vcpus: Int
        public var memoryMiB: Int
        public var mode: String
        public var expectedExit: ExpectedExit
        public var acpi: Bool = true
        public var drives: [TestDrive] = []
        public var extraCommandLine: String = ""
        /// The kernel entry: the Linux 64-bit one unless a scenario is about PVH.
        public var bootProtocol: X86BootProtocol = .linux64

        public enum ExpectedExit: Sendable { case reset, tripleFault }

        public init(
            name: String, vcpus: Int, memoryMiB: Int, mode: String, expectedExit: ExpectedExit, acpi: Bool = true,
            drives: [TestDrive] = [], extraCommandLine: String = "", bootProtocol: X86BootProtocol = .linux64
        ) {
            self.name = name
            self.vcpus = vcpus
            self.memoryMiB = memoryMiB
            self.mode = mode
            self.expectedExit = expectedExit
            self.acpi = acpi
            self.drives = drives
            self.extraCommandLine = extraCommandLine
            self.bootProtocol = bootProtocol
        }
    }

    /// A drive the guest reads and writes, made from the pattern the test
    /// guest expects (see Tests/TestGuest/README.md).
    public struct TestDrive: Sendable {
        public enum Kind: String, Sendable { case rw, ro, wb }
        public var kind: Kind
        public var engine: DriveConfig.IOEngine = .sync

        public init(kind: Kind, engine: DriveConfig.IOEngine = .sync) {
            self.kind = kind
            self.engine = engine
        }
    }

    /// One line of the report.
    public struct Check: Sendable {
        public var name: String
        public var passed: Bool
        public var detail: String

        public init(name: String, passed: Bool, detail: String) {
            self.name = name
            self.passed = passed
            self.detail = detail
        }

        /// The check could not run on this host (a tool or privilege it
        /// needs is missing): neither passed nor failed; `detail` says why.
        public var skipped = false

        /// A check that could not run here, and why.
        public static func skip(_ name: String, because reason: String) -> Check {
            var check = Check(name: name, passed: false, detail: reason)
            check.skipped = true
            return check
        }

        public var line: String {
            if skipped { return "SKIP \(name): \(detail)" }
            return passed ? "PASS \(name)" + (detail.isEmpty ? "" : ": \(detail)") : "FAIL \(name): \(detail)"
        }
    }

    public static let scenarios: [Scenario] = [
        Scenario(name: "1 vCPU, 128 MiB", vcpus: 1, memoryMiB: 128, mode: "selftest", expectedExit: .reset),
        Scenario(
            name: "4 vCPUs, 1 GiB, drives", vcpus: 4, memoryMiB: 1024, mode: "selftest", expectedExit: .reset,
            drives: [TestDrive(kind: .rw), TestDrive(kind: .ro), TestDrive(kind: .wb)]),
        Scenario(
            name: "2 vCPUs, 4 GiB, io_uring drives", vcpus: 2, memoryMiB: 4096, mode: "selftest", expectedExit: .reset,
            drives: [TestDrive(kind: .rw, engine: .async), TestDrive(kind: .ro, engine: .async), TestDrive(kind: .wb, engine: .async)]),
        Scenario(
            name: "no ACPI, 2 vCPUs, drive", vcpus: 2, memoryMiB: 256, mode: "selftest", expectedExit: .reset,
            acpi: false, drives: [TestDrive(kind: .rw)]),
        Scenario(
            name: "PVH entry, 2 vCPUs, 256 MiB", vcpus: 2, memoryMiB: 256, mode: "selftest", expectedExit: .reset,
            bootProtocol: .pvh),
        Scenario(name: "triple fault", vcpus: 1, memoryMiB: 128, mode: "triplefault", expectedExit: .tripleFault),
    ]

    public let guestPath: String
    public let kvmPath: String
    /// How long one scenario may run before it is stopped and failed.
    public var timeoutSeconds: Int32 = 120

    public init(guestPath: String, kvmPath: String = KVM.defaultPath) {
        self.guestPath = guestPath
        self.kvmPath = kvmPath
    }

    /// The command line the guest gets for `scenario` (swiftvm may append `root=` and stanzas).
    public static func commandLine(for scenario: Scenario) -> String {
        let virtio = scenario.drives.map(\.kind.rawValue) + ["rng"]
        var line = "console=ttyS0 reboot=k panic=1 testguest.mode=\(scenario.mode) "
            + "testguest.mem_mib=\(scenario.memoryMiB) testguest.cpus=\(scenario.vcpus) "
            + "testguest.acpi=\(scenario.acpi ? 1 : 0) testguest.virtio=\(virtio.joined(separator: ","))"
        if !scenario.extraCommandLine.isEmpty { line += " " + scenario.extraCommandLine }
        return line
    }

    /// Runs `scenario` and returns its checks; `report` sees each as it is made.
    public func run(_ scenario: Scenario) -> [Check] {
        let console = ConsoleCapture()
        let commandLine = SelfTest.commandLine(for: scenario)
        var config = VMConfig(
            kernelPath: guestPath, commandLine: commandLine, vcpuCount: scenario.vcpus,
            memoryMiB: scenario.memoryMiB, serialOutput: .sink(console))
        config.kvmPath = kvmPath
        config.acpi = scenario.acpi
        config.bootProtocol = scenario.bootProtocol
        config.preflight = false
        let images: TestImages
        do { images = try TestImages(scenario.drives) } catch {
            return [Check(name: scenario.name, passed: false, detail: "cannot create drive images: \(error)")]
        }
        defer { images.remove() }
        config.drives = images.drives
        let vm: MicroVM
        do { vm = try MicroVM(config: config) } catch {
            return [Check(name: scenario.name, passed: false, detail: "cannot build the VM: \(error)")]
        }
        let limit = timeoutSeconds
        let watchdog = Watchdog(seconds: limit) {
            vm.stop("no result within \(limit) s")
        }
        let reason = vm.run()
        watchdog.cancel()
        var checks = SelfTest.evaluate(scenario, reason: reason, console: console.lines, commandLine: config.guestCommandLine)
        if !scenario.drives.isEmpty { checks.append(images.verify(scenario.name)) }
        return checks
    }

    /// Instructions an emulating KVM (kvm_pvm) cannot run and a Linux guest
    /// does; the test guest's insn mode runs each one alone.
    public static let instructionProbes = ["int3", "popcnt", "clac", "fwait", "cmpxchg16b", "xsave"]

    /// Runs `instruction` in the test guest. The check passes when the outcome
    /// is understood: the instruction ran, the CPU refused it (#UD), or KVM
    /// could not emulate it and swiftvm's crash report names it; `note` then
    /// says what a Linux guest needs on this host.
    public func probe(_ instruction: String) -> (check: Check, note: String?) {
        let console = ConsoleCapture()
        var config = VMConfig(
            kernelPath: guestPath,
            commandLine: "console=ttyS0 reboot=k panic=1 testguest.mode=insn testguest.insn=\(instruction)",
            memoryMiB: 32, serialOutput: .sink(console))
        config.kvmPath = kvmPath
        config.bootProtocol = .linux64
        config.preflight = false
        config.entropyDevice = false
        let name = "instruction \(instruction)"
        let vm: MicroVM
        do { vm = try MicroVM(config: config) } catch {
            return (Check(name: name, passed: false, detail: "cannot build the VM: \(error)"), nil)
        }
        let watchdog = Watchdog(seconds: timeoutSeconds) { vm.stop("no result within the time limit") }
        let reason = vm.run()
        watchdog.cancel()
        return SelfTest.evaluateProbe(instruction, reason: reason, console: console.lines)
    }

    /// Judges an instruction probe from its exit reason and console output.
    public static func evaluateProbe(_ instruction: String, reason: VMExitReason, console: [String]) -> (check: Check, note: String?) {
        let name = "instruction \(instruction)"
        if console.contains("INSN-DONE \(instruction)") {
            return (Check(name: name, passed: true, detail: "runs"), nil)
        }
        if console.contains(where: { $0.hasPrefix("FAIL cpu-exception") }) {
            return (Check(name: name, passed: true, detail: "the CPU raises an exception (it lacks the instruction)"), nil)
        }
        if case .kvmInternalError(_, 1, _, let state) = reason {
            guard let bytes = state?.instruction, let hint = EmulationHint.decode(bytes), hint.mnemonic == instruction
            else {
                return (Check(name: name, passed: false, detail: "KVM could not emulate it, but the crash report "
                    + "does not name it: \(reason)"), nil)
            }
            return (Check(name: name, passed: true, detail: "this KVM cannot emulate it (the crash report names it)"),
                    "\(instruction): \(hint.fix)")
        }
        return (Check(name: name, passed: false, detail: "unexpected outcome: \(reason); console: "
            + console.suffix(3).joined(separator: " | ")), nil)
    }

    /// Judges a finished run from its exit reason and console output.
    public static func evaluate(_ scenario: Scenario, reason: VMExitReason, console: [String], commandLine: String) -> [Check] {
        var checks: [Check] = []
        let name = scenario.name
        switch scenario.expectedExit {
        case .tripleFault:
            if case .tripleFault = reason {
                checks.append(Check(name: "\(name): crash report", passed: true, detail: "reported as a triple fault, exit status \(reason.exitCode)"))
            } else {
                checks.append(Check(name: "\(name): crash report", passed: false, detail: "expected a triple fault, got: \(reason)"))
            }
            return checks
        case .reset:
            break
        }
        if let echoed = console.first(where: { $0.hasPrefix("CMDLINE ") }) {
            // The guest must see the command line byte for byte.
            let seen = String(echoed.dropFirst("CMDLINE ".count))
            checks.append(Check(
                name: "\(name): command line", passed: seen == commandLine,
                detail: seen == commandLine ? "" : "guest saw \"\(seen)\", expected \"\(commandLine)\""))
        }
        for line in console {
            if line.hasPrefix("PASS ") {
                checks.append(Check(name: "\(name): \(line.dropFirst(5))", passed: true, detail: ""))
            } else if line.hasPrefix("FAIL ") {
                let body = line.dropFirst(5)
                let parts = body.split(separator: ":", maxSplits: 1)
                checks.append(Check(
                    name: "\(name): \(parts.first ?? body)", passed: false,
                    detail: parts.count > 1 ? parts[1].trimmingPrefixSpaces : "failed"))
            }
        }
        let finished = console.contains { $0.hasPrefix("RESULT ") }
        if !finished {
            let tail = console.suffix(5).joined(separator: " | ")
            checks.append(Check(name: "\(name): guest finished", passed: false, detail: "no RESULT line; \(reason); last output: \(tail)"))
        }
        if case .reset = reason {
            checks.append(Check(name: "\(name): i8042 reset", passed: true, detail: "exit status 0"))
        } else {
            checks.append(Check(name: "\(name): i8042 reset", passed: false, detail: "the VM ended with: \(reason)"))
        }
        return checks
    }
}

extension Substring {
    fileprivate var trimmingPrefixSpaces: String { String(drop { $0 == " " }) }
}

/// Calls `action` after `seconds` unless cancelled first.
final class Watchdog: Sendable {
    private let cancelled: EventFD?
    private let thread: HostThread?

    init(seconds: Int32, action: @escaping @Sendable () -> Void) {
        guard let cancelled = try? EventFD(), let epoll = try? Epoll() else {
            self.cancelled = nil
            thread = nil
            return
        }
        self.cancelled = cancelled
        try? epoll.add(cancelled.rawValue, token: 0)
        thread = try? HostThread.spawn(name: "swiftvm-watchdog") {
            let events = (try? epoll.wait(maxEvents: 1, timeoutMilliseconds: seconds * 1000)) ?? []
            if events.isEmpty { action() }
        }
    }

    func cancel() {
        cancelled?.signal()
        thread?.join()
    }
}
