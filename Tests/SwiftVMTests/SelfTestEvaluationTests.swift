import Testing
@testable import SwiftVM
import SwiftVMHost

@Suite("Judging a selftest run")
struct SelfTestEvaluationTests {
    let scenario = SelfTest.scenarios[0]
    var commandLine: String { SelfTest.commandLine(for: scenario) }

    @Test("a clean run turns each guest line into a check and passes the reset")
    func cleanRun() {
        let console = ["CMDLINE \(commandLine)", "PASS smp: 1 cpu", "FAIL e820: entries overlap", "RESULT 1 passed, 1 failed"]
        let checks = SelfTest.evaluate(scenario, reason: .reset, console: console, commandLine: commandLine)
        #expect(checks.map(\.line) == [
            "PASS \(scenario.name): command line",
            "PASS \(scenario.name): smp: 1 cpu",
            "FAIL \(scenario.name): e820: entries overlap",
            "PASS \(scenario.name): i8042 reset: exit status 0",
        ])
    }

    @Test("a guest that never finishes, or ends another way, fails with the reason")
    func unfinished() {
        let checks = SelfTest.evaluate(scenario, reason: .stopped("no result within 120 s"), console: ["PASS smp: 1 cpu"], commandLine: commandLine)
        let failed = checks.filter { !$0.passed }.map(\.line)
        #expect(failed.count == 2)
        #expect(failed.contains { $0.contains("no RESULT line") && $0.contains("no result within 120 s") })
    }

    @Test("a command line the guest saw differently fails")
    func wrongCommandLine() {
        let checks = SelfTest.evaluate(scenario, reason: .reset, console: ["CMDLINE something else", "RESULT 0 passed, 0 failed"], commandLine: commandLine)
        #expect(checks.first?.passed == false)
        #expect(checks.first?.detail.contains("something else") == true)
    }

    @Test("exit statuses follow docs/exit-codes.md")
    func exitStatuses() {
        #expect(VMExitReason.reset.exitCode == 0)
        #expect(VMExitReason.powerOff.exitCode == 0)
        #expect(VMExitReason.tripleFault(vcpu: 0, state: nil).exitCode == 80)
        #expect(VMExitReason.kvmInternalError(vcpu: 0, suberror: 1, data: [], state: nil).exitCode == 81)
        #expect(VMExitReason.failEntry(vcpu: 0, reason: 0).exitCode == 82)
        #expect(VMExitReason.guestCrash(vcpu: 0).exitCode == 83)
        #expect(VMExitReason.userQuit.exitCode == 84)
        #expect(VMExitReason.stopped("x").exitCode == 85)
        #expect(VMExitReason.signal(15).exitCode == 143)
        #expect(VMExitReason.vmmError("x").exitCode == 1)
    }

    @Test("KVM problems explain themselves", arguments: [
        (KVMError.deviceMissing(path: "/dev/kvm"), "kvm_intel"),
        (KVMError.permissionDenied(path: "/dev/kvm"), "usermod -aG kvm"),
        (KVMError.unsupportedAPIVersion(11), "version 12"),
        (KVMError.missingCapability(name: "KVM_CAP_IRQFD", purpose: "delivering device interrupts"), "KVM_CAP_IRQFD"),
    ])
    func kvmMessages(error: KVMError, expected: String) {
        #expect(error.description.contains(expected))
        #expect(VMMError.kvm(error, while: "opening KVM").exitCode == 69)
    }
}
