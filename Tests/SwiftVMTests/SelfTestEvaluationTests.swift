import Foundation
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

    @Test("a device check passes with the guest's line and what the host saw")
    func devicePasses() {
        let console = ["PASS boot-protocol: ok", "PASS virtio-vsock0: cid 42, port 5000 echoed 5000 bytes", "RESULT 2 passed, 0 failed", ""]
        let check = SelfTest.evaluateDevice("vsock", device: "virtio-vsock0", ended: nil, console: console, host: .success("host saw it"))
        #expect(check.line == "PASS vsock: cid 42, port 5000 echoed 5000 bytes; host saw it")
    }

    @Test("a device check fails when the guest, the host side or the VM's end says so")
    func deviceFails() {
        let passing = ["PASS virtio-balloon0: inflated 16384 pages", "RESULT 1 passed, 0 failed"]
        let guestFailed = SelfTest.evaluateDevice(
            "balloon", device: "virtio-balloon0", ended: nil,
            console: ["FAIL virtio-balloon0: pages not zero", "RESULT 0 passed, 1 failed"], host: .success(""))
        #expect(guestFailed.line == "FAIL balloon: the guest: virtio-balloon0: pages not zero")

        let hostFailed = SelfTest.evaluateDevice(
            "balloon", device: "virtio-balloon0", ended: "stopped", console: ["BALLOON READY"],
            host: .failure(HostSideFailure("timed out waiting for the guest's \"BALLOON TOUCHED 16384\"")))
        #expect(hostFailed.line == "FAIL balloon: host side: timed out waiting for the guest's \"BALLOON TOUCHED 16384\"; console: BALLOON READY")

        let otherFailed = SelfTest.evaluateDevice(
            "balloon", device: "virtio-balloon0", ended: nil, console: passing + ["FAIL smp: 1 of 2 cpus"], host: .success(""))
        #expect(!otherFailed.passed)
        #expect(otherFailed.detail.contains("smp: 1 of 2 cpus"))

        let crashed = SelfTest.evaluateDevice("net", device: "virtio-balloon0", ended: "swiftvm run exited with status 80", console: passing, host: .success(""))
        #expect(crashed.line == "FAIL net: the guest's check passed, but the VM ended with: swiftvm run exited with status 80")

        let silent = SelfTest.evaluateDevice("net", device: "virtio-net0", ended: nil, console: [], host: .success(""))
        #expect(!silent.passed)
        #expect(silent.detail.contains("no result from the guest's virtio-net0 check"))
    }

    @Test("a skipped check says why and is neither passed nor failed")
    func skipped() {
        let check = SelfTest.Check.skip("net", because: "creating a TAP needs root")
        #expect(check.line == "SKIP net: creating a TAP needs root")
        #expect(check.skipped)
        #expect(!SelfTest.Check(name: "x", passed: false, detail: "y").skipped)
    }

    @Test("balloon figures are MiB with one decimal")
    func mebibytes() {
        #expect(SelfTest.mib(69_625_446) == "66.4 MiB")
        #expect(SelfTest.mib(2_516_582, unit: false) == "2.4")
        #expect(SelfTest.mib(0) == "0.0 MiB")
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
        (KVMError.notKVMDevice(path: "/tmp/kvm", kind: "a regular file"), "/tmp/kvm is a regular file, not the KVM device"),
        (KVMError.missingCapability(name: "KVM_CAP_IRQFD", purpose: "delivering device interrupts"), "KVM_CAP_IRQFD"),
    ])
    func kvmMessages(error: KVMError, expected: String) {
        #expect(error.description.contains(expected))
        #expect(VMMError.kvm(error, while: "opening KVM").exitCode == 69)
    }
}

/// The device checks run in this process, as `swiftvm selftest` runs them.
@Suite(
    "Selftest device checks", .serialized,
    .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct SelfTestDeviceTests {
    static func test() throws -> SelfTest {
        var test = SelfTest(guestPath: try #require(SwiftVMProcess.testGuest, "the test guest did not build"))
        test.timeoutSeconds = 60
        return test
    }

    /// Files the checks make in /tmp; none may stay.
    static func scratchFiles() -> Set<String> {
        Set(((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []).filter { $0.hasPrefix("swiftvm-selftest-") })
    }

    @Test("vsock: the host side speaks Firecracker's protocol, and the guest's check passes")
    func vsock() throws {
        let before = Self.scratchFiles()
        let check = try Self.test().vsock()
        #expect(check.passed, "\(check.line)")
        #expect(check.line.hasPrefix("PASS vsock: cid 42, port 5000 echoed 5000 bytes, 1 request(s) for other ports refused, "
            + "host port 6000 replied 18 bytes"), "\(check.line)")
        #expect(Self.scratchFiles().subtracting(before).isEmpty, "the scratch directory and sockets are removed")
    }

    @Test("balloon: the host's backing memory drops by the 64 MiB the guest gives, and the guest deflates")
    func balloon() throws {
        let check = try Self.test().balloon()
        #expect(check.passed, "\(check.line)")
        #expect(check.line.contains("guest RAM backed by the host "), "\(check.line)")
        #expect(check.line.contains("after it gave 48 MiB back"), "\(check.line)")
    }

    static let netAvailable = NetNamespace.whyUnavailable(ip: NetNamespace.locate("ip")) == nil

    /// The selftest's namespaces of this process.
    static func namespaces() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? [])
            .filter { $0.hasPrefix("swiftvm-selftest-\(getpid())-") }
    }

    @Test("net: swiftvm in a namespace of the check's own exchanges frames with the host over a TAP, and the namespace is removed",
          .enabled(if: netAvailable, "needs root, ip and /dev/net/tun to make a TAP"))
    func net() throws {
        let binary = try #require(SwiftVMProcess.binary, "the swiftvm executable was not built next to the tests")
        let check = try Self.test().net(executable: binary)
        #expect(check.line.hasPrefix("PASS net: mac 06:00:ac:10:00:02 (from the device), offloads on, tx 1 frame, "
            + "rx 1229 bytes in 3 buffers"), "\(check.line)")
        #expect(Self.namespaces().isEmpty)
    }

    @Test("net: a VMM that exits at once fails the check with the reason, and the namespace is removed",
          .enabled(if: netAvailable, "needs root, ip and /dev/net/tun to make a TAP"))
    func netFailureCleansUp() throws {
        let check = try Self.test().net(executable: "/bin/false")
        #expect(!check.passed && !check.skipped)
        #expect(check.detail.contains("swiftvm exited before the guest's frame came out of the TAP"), "\(check.line)")
        #expect(Self.namespaces().isEmpty)
    }

    @Test("net: without root or ip the check is skipped with the reason",
          .enabled(if: !netAvailable, "this host can make a TAP"))
    func netSkipped() throws {
        let check = try Self.test().net(executable: "/bin/false")
        #expect(check.skipped)
        #expect(check.line.hasPrefix("SKIP net: creating a TAP needs root"), "\(check.line)")
    }
}
