import Foundation
import Glibc
import Testing
@testable import SwiftVM
import SwiftVMHost
import SwiftVMAPI

/// The seccomp allow-lists as data, and the filter file (docs/security.md).
@Suite("seccomp: the built-in lists and the filter file")
struct SeccompPolicyTests {
    @Test("the built-in lists compile; the API's holds the event loop's and the vCPUs' and what loading a filter takes")
    func builtInCompiles() throws {
        let filters = try SeccompFilters.builtIn()
        for kind in SeccompThreadKind.allCases {
            #expect(filters.instructionCount(kind) > 20, "\(kind)")
        }
        let policy = SeccompPolicy.builtIn
        let api = Set(policy.rules(for: .api))
        // Allowed calls carry over; a refused open does not (the API opens files).
        #expect(Set(policy.rules(for: .vcpu).filter { $0.errno == nil }).isSubset(of: api))
        #expect(Set(policy.rules(for: .events).filter { $0.errno == nil }).isSubset(of: api))
        #expect(api.contains(SeccompRule("openat")) && !api.contains(SeccompLists.noOpen))
        #expect(Set(SeccompLists.loader).isSubset(of: api))
        #expect(!policy.rules(for: .vcpu).contains { $0.syscall == "seccomp" }, "only the API's list loads filters for others")
    }

    @Test("`run`'s filters leave the API thread's list out, and installing it is an error, not an empty filter")
    func onlyRequestedKindsCompile() throws {
        let filters = try SeccompFilterFile.filters(disabled: false, file: nil, kinds: [.main, .events, .vcpu])
        let compiled = try #require(filters)
        #expect(compiled.instructionCount(.vcpu) > 20)
        #expect(compiled.instructionCount(.api) == 0)
        // Throws before anything is loaded on this thread.
        let error = #expect(throws: SeccompError.self) { try compiled.install(.api) }
        #expect(error?.description.contains("api seccomp filter was not compiled") == true)
    }

    @Test("no list runs programs, makes processes, signals others or maps executable memory")
    func noDangerousCalls() {
        let policy = SeccompPolicy.builtIn
        let never: Set<String> = [
            "execve", "execveat", "fork", "vfork", "ptrace", "kill", "tkill", "process_vm_readv", "process_vm_writev",
            "mount", "umount2", "setns", "unshare", "chroot", "pivot_root", "init_module", "finit_module", "bpf",
            "perf_event_open", "open_by_handle_at", "keyctl", "add_key", "personality", "userfaultfd",
        ]
        for kind in SeccompThreadKind.allCases {
            let rules = policy.rules(for: kind)
            #expect(rules.allSatisfy { !never.contains($0.syscall) }, "\(kind)")
            for rule in rules where ["mmap", "mprotect"].contains(rule.syscall) {
                #expect(rule.conditions.contains { $0.index == 2 && $0.mask & UInt64(PROT_EXEC) != 0 && $0.value & UInt64(PROT_EXEC) == 0 },
                        "\(kind): \(rule.syscall) without the PROT_EXEC check")
            }
            for rule in rules where rule.syscall == "ioctl" {
                #expect(rule.conditions.contains { $0.index == 1 && $0.mask == 0xffff_ffff }, "\(kind): ioctl without a request")
            }
            for rule in rules where rule.syscall == "clone" {
                #expect(rule.conditions == [SeccompCondition(index: 0, mask: 0x10100, value: 0x10100)], "\(kind): clone of a process")
            }
            for rule in rules where rule.syscall == "clone3" { #expect(rule.errno == ENOSYS) }
            for rule in rules where rule.syscall == "tgkill" {
                #expect(rule.conditions.contains { $0.index == 0 && $0.value == UInt64(getpid()) }, "\(kind): tgkill to any process")
            }
        }
    }

    @Test("the ioctl requests each thread kind may make")
    func ioctlRequests() {
        func requests(_ kind: SeccompThreadKind) -> Set<String> {
            Set(SeccompPolicy.builtIn.lists[kind, default: []].filter { $0.syscall == "ioctl" && $0.conditions.count == 1 }
                .compactMap { rule in SeccompIoctl.known.first { $0.request == rule.conditions[0].value }?.name })
        }
        #expect(requests(.vcpu) == ["KVM_RUN", "KVM_GET_REGS", "KVM_GET_SREGS", "KVM_GET_MP_STATE", "KVM_TRANSLATE", "TUNSETOFFLOAD"])
        #expect(requests(.events).isEmpty)
        #expect(requests(.main) == ["KVM_GET_REGS", "KVM_GET_SREGS", "KVM_GET_MP_STATE", "KVM_TRANSLATE", "TCGETS", "TCSETS", "TCSETSW", "TCSETSF"])
        #expect(requests(.api).isSuperset(of: ["KVM_CREATE_VM", "KVM_CREATE_VCPU", "TUNSETIFF"]))
        #expect(!requests(.api).contains("KVM_RUN"), "the API's own list; the vCPUs' comes with rules(for:)")
    }

    @Test("the printed built-in lists read back as the same lists")
    func printedListsReadBack() throws {
        let policy = SeccompPolicy.builtIn(processID: nil)
        let text = SeccompFilterFile.render(policy)
        let parsed = try SeccompFilterFile.parse(Array(text.utf8), source: "default.json")
        for kind in SeccompThreadKind.allCases {
            #expect(Set(parsed.lists[kind] ?? []) == Set(policy.lists[kind] ?? []), "\(kind)")
        }
        _ = try SeccompFilters(parsed)
    }

    /// A file with every kind allowing write and exit_group, and `vcpu` replaced by `vcpu`.
    static func file(vcpu: String, extra: String = "") -> String {
        let minimal = #"{ "syscalls": ["write", "exit_group"] }"#
        return #"{ "main": \#(minimal), "events": \#(minimal), "api": \#(minimal),\#n  "vcpu": \#(vcpu)\#(extra) }"#
    }

    @Test("a filter file that cannot be used is refused with the JSON path of the bad value", arguments: [
        (#"[]"#, "", "expected an object with one member per thread kind"),
        (#"{ "main": { "syscalls": ["write", "exit_group"] } }"#, "", "the thread kind \"events\" is missing"),
        (file(vcpu: #"{ "syscalls": ["write", "exit_group"] }"#, extra: #", "vcpus": {}"#), "vcpus", "unknown thread kind \"vcpus\""),
        (file(vcpu: #"{ "syscalls": ["write", "exit_group", "opne"] }"#), "vcpu.syscalls[2]", "\"opne\" is not a system call"),
        (file(vcpu: #"{ "syscalls": ["write", "exit_group", 7] }"#), "vcpu.syscalls[2]", "found a number"),
        (file(vcpu: #"{ "syscalls": ["write"] }"#), "vcpu.syscalls", "exit_group must be allowed"),
        (file(vcpu: #"{ "syscalls": ["write", "exit_group"], "ioctl": [] }"#), "vcpu.ioctl", "unknown field"),
        (file(vcpu: #"{ "syscalls": ["write", "exit_group"], "ioctls": ["KVM_RUNN"] }"#), "vcpu.ioctls[0]", "expected an ioctl request"),
        (file(vcpu: #"{ "syscalls": ["write", "exit_group"], "ioctls": ["0x1ffffffff"] }"#), "vcpu.ioctls[0]", "32 bits"),
        (file(vcpu: #"{ "syscalls": ["write", "exit_group", "ioctl"], "ioctls": ["KVM_RUN"] }"#), "vcpu.ioctls", "not both"),
        (file(vcpu: #"{ "syscalls": ["write", "exit_group", { "name": "mmap", "args": [{ "index": 6, "value": 0 }] }] }"#),
         "vcpu.syscalls[2].args[0].index", "from 0 to 5"),
        (file(vcpu: #"{ "syscalls": ["write", "exit_group", { "name": "mmap", "args": [{ "index": 2, "value": 5, "mask": 4 }] }] }"#),
         "vcpu.syscalls[2].args[0].value", "outside the mask"),
        (file(vcpu: #"{ "syscalls": ["write", "exit_group", { "name": "clone3", "errno": "ENOTHING" }] }"#),
         "vcpu.syscalls[2].errno", "expected an errno"),
    ])
    func badFiles(json: String, path: String, problem: String) {
        do {
            _ = try SeccompFilterFile.parse(Array(json.utf8), source: "filters.json")
            Issue.record("accepted: \(json)")
        } catch {
            #expect(error.path == path, "\(error)")
            #expect(error.problem.contains(problem), "\(error)")
            #expect(error.description.hasPrefix("filters.json:"), "\(error)")
        }
    }

    @Test("a filter file: names, objects with argument checks and errno, ioctl names and numbers")
    func goodFile() throws {
        let json = SeccompPolicyTests.file(vcpu: """
            { "syscalls": ["write", "exit_group", { "name": "socket", "args": [{ "index": 0, "value": 1, "mask": "0xffffffff" }] },
                          { "name": "clone3", "errno": "ENOSYS" }],
              "ioctls": ["KVM_RUN", "0xae81", 44675] }
            """)
        let policy = try SeccompFilterFile.parse(Array(json.utf8), source: "filters.json")
        let vcpu = try #require(policy.lists[.vcpu])
        #expect(vcpu.contains(SeccompRule("socket", [SeccompCondition(index: 0, mask: 0xffff_ffff, value: 1)])))
        #expect(vcpu.contains(SeccompRule("clone3", errno: ENOSYS)))
        let requests = vcpu.filter { $0.syscall == "ioctl" }.map { $0.conditions[0].value }
        #expect(requests == [0xae80, 0xae81, 0xae83])
        _ = try SeccompFilters(policy)
    }
}

/// Filters in real swiftvm processes: a forbidden call ends the process with
/// 148 and names the call; the test guest boots with every device under the
/// filters; every thread of a running swiftvm is filtered.
@Suite("seccomp: swiftvm under its filters", .serialized)
struct SeccompProcessTests {
    static let violation = "made a system call its filter does not allow"

    @Test("a call outside a thread kind's list ends the process with 148 and a line naming the call and the thread",
          arguments: [
            (["vcpu", "unlink"], "unlink (87)"),
            (["vcpu", "ioctl", "0", "0xae01"], "ioctl (16) with request 0xae01"),  // KVM_CREATE_VM
            (["events", "socket", "2", "1", "0"], "socket (41)"),  // AF_INET
            (["events", "execve"], "execve (59)"),
            (["main", "mmap", "0", "4096", "7", "0x22"], "mmap (9) with arguments 0x0, 0x1000, 0x7"),  // PROT_EXEC
            (["api", "clone", "0x11", "0"], "clone (56)"),  // a process (SIGCHLD), not a thread
            (["main", "kill", "1", "0"], "kill (62)"),
          ])
    func forbiddenCall(arguments: [String], named: String) throws {
        let outcome = try SwiftVMProcess.run(["seccomp-probe"] + arguments, timeout: 20)
        #expect(outcome.status == 148, "stderr: \(outcome.stderr)")
        #expect(outcome.status == ExitStatus.badSyscall)
        let line = "swiftvm: error: seccomp: thread swiftvm-probe (\(arguments[0]) filter) \(Self.violation): \(named)"
        #expect(outcome.stderr.contains(line), "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("exiting with status 148"))
        #expect(outcome.stdout.isEmpty)
    }

    @Test("the event loop and the vCPUs open nothing, and an open fails rather than ending the process (glibc's malloc opens a /proc file the first time it trims a thread's heap)",
          arguments: ["vcpu", "events"])
    func openFails(kind: String) throws {
        let outcome = try SwiftVMProcess.run(["seccomp-probe", kind, "openat"], timeout: 20)
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(outcome.stdout.hasPrefix("allowed: openat returned -1 (Permission denied)"), "\(outcome.stdout)")
    }

    @Test("calls inside a list are allowed", arguments: [
        ["vcpu", "ioctl", "0", "0xae80"],  // KVM_RUN (fails on descriptor 0, but is allowed)
        ["vcpu", "futex"],
        ["events", "socket", "1", "1", "0"],  // AF_UNIX
        ["api", "clone3"],  // fails with ENOSYS: glibc falls back to clone
        ["main", "mmap", "0", "4096", "3", "0x22"],
    ])
    func allowedCall(arguments: [String]) throws {
        let outcome = try SwiftVMProcess.run(["seccomp-probe"] + arguments, timeout: 20)
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(outcome.stdout.hasPrefix("allowed: \(arguments[1]) "), "\(outcome.stdout)")
    }

    @Test("--seccomp-filter replaces the lists; a bad file is refused with its path; --no-seccomp with it is a usage error")
    func filterFileFlags() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-seccomp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // The built-in lists, with openat added to the vCPUs' and poll taken out.
        var policy = SeccompPolicy.builtIn(processID: nil)
        policy.lists[.vcpu]?.removeAll { $0.syscall == "openat" }
        policy.lists[.vcpu]?.append(SeccompRule("openat"))
        policy.lists[.vcpu]?.removeAll { $0.syscall == "poll" }
        let good = directory.appendingPathComponent("good.json").path
        try SeccompFilterFile.render(policy).write(toFile: good, atomically: true, encoding: .utf8)
        let allowed = try SwiftVMProcess.run(["seccomp-probe", "--seccomp-filter", good, "vcpu", "openat"], timeout: 20)
        #expect(allowed.status == 0 && allowed.stdout.hasPrefix("allowed: openat"), "\(allowed.stderr)")
        let forbidden = try SwiftVMProcess.run(["seccomp-probe", "--seccomp-filter", good, "vcpu", "poll"], timeout: 20)
        #expect(forbidden.status == 148 && forbidden.stderr.contains(": poll (7)"), "\(forbidden.stderr)")

        let bad = directory.appendingPathComponent("bad.json").path
        try SeccompPolicyTests.file(vcpu: #"{ "syscalls": ["write", "exit_group", "opne"] }"#)
            .write(toFile: bad, atomically: true, encoding: .utf8)
        let kernel = try #require(SwiftVMProcess.testGuest)
        let run = try SwiftVMProcess.run(["run", "--kernel", kernel, "--no-console-input", "--seccomp-filter", bad], timeout: 20)
        #expect(run.status == ExitStatus.badInput, "\(run.stderr)")
        #expect(run.stderr.contains("the seccomp filter file \(bad):2:"), "\(run.stderr)")
        #expect(run.stderr.contains("vcpu.syscalls[2]: \"opne\" is not a system call"), "\(run.stderr)")
        let missing = try SwiftVMProcess.run(
            ["run", "--kernel", kernel, "--no-console-input", "--seccomp-filter", directory.path + "/none.json"], timeout: 20)
        #expect(missing.status == ExitStatus.missingInput, "\(missing.stderr)")
        let firecracker = try SwiftVMProcess.run(
            ["--api-sock", directory.path + "/api.sock", "--seccomp-filter", bad], timeout: 20)
        #expect(firecracker.status == FirecrackerProcess.ExitCode.argumentParsing, "\(firecracker.stderr)")
        #expect(firecracker.stderr.contains("vcpu.syscalls[2]"), "\(firecracker.stderr)")
        let both = try SwiftVMProcess.run(["run", "--kernel", kernel, "--no-seccomp", "--seccomp-filter", good], timeout: 20)
        #expect(both.status == ExitStatus.usage, "\(both.stderr)")
        #expect(both.stderr.contains("--no-seccomp and --seccomp-filter"), "\(both.stderr)")
    }

    /// `Seccomp:` and `NoNewPrivs:` of every thread of process `pid`, by thread name.
    static func threadModes(_ pid: Int32) -> [(name: String, seccomp: String, noNewPrivs: String)] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.sorted().compactMap { task in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8) else { return nil }
            func field(_ name: String) -> String {
                status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                    .map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) } ?? "?"
            }
            return (field("Name"), field("Seccomp"), field("NoNewPrivs"))
        }
    }

    /// A disk image with the pattern the test guest checks (Tests/TestGuest/README.md).
    static func testImage(_ path: String) throws {
        var bytes = [UInt8](repeating: 0, count: 1 << 20)
        for sector in 0..<16 {
            for byte in 0..<512 { bytes[sector * 512 + byte] = UInt8((sector * 7 + byte) & 0xff) }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// The host's half of the test guest's vsock check (see VsockTests).
    static func vsockHost(uds: String, listener: Int32) throws {
        typealias Client = HybridVsockClient
        let refused = try Client.connect(uds)
        defer { close(refused) }
        try Client.write(refused, "CONNECT 5001\n")
        #expect(try Client.read(refused, seconds: 20) == nil)
        let echo = try Client.connect(uds)
        defer { close(echo) }
        try Client.write(echo, "CONNECT 5000\n")
        let line = try #require(try Client.readLine(echo, seconds: 20))
        #expect(line.hasPrefix("OK "), "\(line)")
        let payload = (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 31 + 7) }
        try Client.write(echo, payload)
        shutdown(echo, Int32(SHUT_WR))
        #expect(try Client.readToEnd(echo, seconds: 20) == payload)
        let incoming = try Client.accept(listener, seconds: 20)
        defer { close(incoming) }
        var received: [UInt8] = []
        while received.count < 17, let bytes = try Client.read(incoming, seconds: 20) { received += bytes }
        try Client.write(incoming, "SWIFTVM-VSOCK-BACK")
    }

    static func waitFor(_ text: String, in output: () -> String, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if output().contains(text) { return true }
            usleep(20_000)
        }
        return false
    }

    @Test("the test guest passes every device check under the default filters (drives sync and async, net, vsock, balloon, entropy); every thread shows Seccomp: 2; SIGUSR1 and SIGTERM work",
          .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
    func everyDeviceUnderFilters() throws {
        let guest = try #require(SwiftVMProcess.testGuest)
        let binary = try #require(SwiftVMProcess.binary)
        let directory = "/tmp/swiftvm-seccomp-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for name in ["rw", "ro", "wb"] { try Self.testImage("\(directory)/\(name).img") }
        let uds = directory + "/v.sock"
        let listener = try HybridVsockClient.listen(uds + "_6000")
        defer { close(listener) }

        // Net only where the test may make a namespace with a TAP.
        let withNet = TestNamespace.available && NetTestSupport.python != nil
        let namespace = withNet ? try TestNamespace.create() : nil
        defer { namespace?.remove() }
        var helper: NetHost.Background?
        if let namespace, let python = NetTestSupport.python {
            let started = try NetHost.Background(namespace.exec([python, NetTestSupport.helper, "exchange", "--iface", "tap0", "--timeout", "60"]))
            try #require(started.waitFor("READY", timeout: 15), "\(started.output)")
            helper = started
        }
        let devices = ["rw", "ro", "wb"] + (withNet ? ["net"] : []) + ["vsock", "balloon", "rng"]
        let cmdline = "console=ttyS0 reboot=k testguest.finish=hold testguest.mem_mib=128 testguest.cpus=2 testguest.acpi=1 "
            + "testguest.virtio=\(devices.joined(separator: ",")) testguest.vsock_cid=42 "
            + "testguest.balloon=oom,stats,reporting testguest.balloon_deflate=0"
        var arguments = [
            binary, "run", "--kernel", guest, "--vcpus", "2", "--memory", "128", "--no-console-input",
            "--drive", "id=rw,path=\(directory)/rw.img,engine=sync", "--drive", "id=ro,path=\(directory)/ro.img,ro,engine=async",
            "--drive", "id=wb,path=\(directory)/wb.img,cache=writeback,engine=async",
            "--vsock", "cid=42,uds=\(uds)", "--balloon", "16,deflate-on-oom,stats=1,reporting", "--cmdline", cmdline,
        ]
        if withNet { arguments += ["--net", "id=eth0,tap=tap0,mac=\(NetTestSupport.guestMAC)"] }
        let vm = try NetHost.Background(namespace?.exec(arguments) ?? arguments)
        defer { vm.stop() }

        // The vsock check comes after the devices before it.
        let before = "virtio-\(withNet ? "net" : "blk")\(devices.firstIndex(of: "vsock")! - 1)"
        try #require(Self.waitFor(before, in: { vm.output }, seconds: 60), "\(vm.output)")
        try Self.vsockHost(uds: uds, listener: listener)
        try #require(Self.waitFor("HOLDING", in: { vm.output }, seconds: 60), "\(vm.output)")
        // The console drains on the event loop and the VMM logs from the vCPU
        // thread, so a log line can land inside a guest line: take them out.
        let guestOutput = vm.output.replacing(/swiftvm: [^\n]*\n/, with: "")
        let result = guestOutput.split(separator: "\n").first { $0.hasPrefix("RESULT ") }
        #expect(result?.hasSuffix(" passed, 0 failed") == true, "\(vm.output)")
        #expect(!vm.output.contains("FAIL "), "\(vm.output)")

        let threads = Self.threadModes(vm.process.processIdentifier)
        #expect(threads.count >= 4, "\(threads)")
        for name in ["swiftvm-events", "swiftvm-vcpu0", "swiftvm-vcpu1"] {
            #expect(threads.contains { $0.name == name }, "no \(name) in \(threads)")
        }
        for thread in threads {
            #expect(thread.seccomp == "2" && thread.noNewPrivs == "1", "\(thread)")
        }

        kill(vm.process.processIdentifier, SIGUSR1)
        #expect(Self.waitFor("vCPU registers (SIGUSR1)", in: { vm.output }, seconds: 20), "\(vm.output)")
        #expect(Self.waitFor("vCPU 1: rip", in: { vm.output }, seconds: 20), "\(vm.output)")
        #expect(vm.output.contains(" <main+0x") || vm.output.contains(" <ap_main+0x"), "kernel symbols in the report: \(vm.output)")
        kill(vm.process.processIdentifier, SIGTERM)
        #expect(vm.wait(timeout: 30) == 128 + SIGTERM, "\(vm.output)")
        #expect(!vm.output.contains(Self.violation), "\(vm.output)")
        if let helper { #expect(helper.output.contains("SENT"), "\(helper.output)") }
    }

    @Test("Firecracker mode: a VM configured over the API runs with every thread filtered (API, event loop, vCPUs, main); pause, resume, balloon and SIGUSR1 work",
          .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
    func firecrackerModeUnderFilters() throws {
        let guest = try #require(SwiftVMProcess.testGuest)
        let vmm = try FirecrackerProcessUnderTest(["--id", "seccomp"])
        for name in ["rw", "wb"] { try Self.testImage(vmm.path("\(name).img")) }
        let uds = vmm.path("v.sock")
        let listener = try HybridVsockClient.listen(uds + "_6000")
        defer { close(listener) }
        let api = try vmm.client()
        let cmdline = "console=ttyS0 reboot=k testguest.finish=hold testguest.mem_mib=128 testguest.cpus=2 testguest.acpi=1 "
            + "testguest.virtio=rw,wb,vsock,balloon,rng testguest.vsock_cid=42 testguest.balloon=oom,stats testguest.balloon_deflate=0"
        let requests: [(String, String)] = [
            ("/boot-source", #"{"kernel_image_path": "\#(guest)", "boot_args": "\#(cmdline)"}"#),
            ("/machine-config", #"{"vcpu_count": 2, "mem_size_mib": 128}"#),
            ("/drives/rw", #"{"drive_id": "rw", "path_on_host": "\#(vmm.path("rw.img"))", "is_root_device": false, "is_read_only": false, "io_engine": "Sync"}"#),
            ("/drives/wb", #"{"drive_id": "wb", "path_on_host": "\#(vmm.path("wb.img"))", "is_root_device": false, "is_read_only": false, "cache_type": "Writeback", "io_engine": "Async"}"#),
            ("/vsock", #"{"guest_cid": 42, "uds_path": "\#(uds)"}"#),
            ("/balloon", #"{"amount_mib": 16, "deflate_on_oom": true, "stats_polling_interval_s": 1}"#),
            ("/entropy", "{}"),
            ("/actions", #"{"action_type": "InstanceStart"}"#),
        ]
        for (path, body) in requests {
            let reply = try api.request("PUT", path, body: body)
            try #require(reply.status == 204, "PUT \(path): \(reply.text); \(vmm.stderr)")
        }
        try #require(Self.waitFor("virtio-blk1", in: { vmm.stdout }, seconds: 60), "\(vmm.stdout)\(vmm.stderr)")
        try Self.vsockHost(uds: uds, listener: listener)
        try #require(Self.waitFor("HOLDING", in: { vmm.stdout }, seconds: 60), "\(vmm.stdout)\(vmm.stderr)")
        #expect(vmm.stdout.contains("RESULT ") && !vmm.stdout.contains("FAIL "), "\(vmm.stdout)")

        #expect(try api.request("PATCH", "/vm", body: #"{"state": "Paused"}"#).status == 204)
        #expect(try api.request("GET", "/").json["state"] as? String == "Paused")
        #expect(try api.request("PATCH", "/vm", body: #"{"state": "Resumed"}"#).status == 204)
        #expect(try api.request("PATCH", "/balloon", body: #"{"amount_mib": 8}"#).status == 204)
        #expect(try api.request("GET", "/balloon/statistics").status == 200)
        #expect(try api.request("GET", "/vm/config").status == 200)

        let threads = Self.threadModes(vmm.process.processIdentifier)
        for name in ["swiftvm-events", "swiftvm-vcpu0", "swiftvm-vcpu1"] {
            #expect(threads.contains { $0.name == name }, "no \(name) in \(threads)")
        }
        #expect(threads.contains { $0.name.hasPrefix("NIO-ELT-") }, "no API thread in \(threads)")
        for thread in threads {
            #expect(thread.seccomp == "2" && thread.noNewPrivs == "1", "\(thread)")
        }
        kill(vmm.process.processIdentifier, SIGUSR1)
        #expect(Self.waitFor("vCPU registers (SIGUSR1)", in: { vmm.stderr }, seconds: 20), "\(vmm.stderr)")
        kill(vmm.process.processIdentifier, SIGTERM)
        #expect(vmm.exitStatus(within: 30) == 128 + SIGTERM, "\(vmm.stderr)")
        #expect(!vmm.stderr.contains(Self.violation), "\(vmm.stderr)")
    }

    @Test("--no-seccomp leaves every thread unfiltered; a filter file without KVM_RUN stops the vCPU with 148",
          .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
    func noSeccompAndNarrowFile() throws {
        let guest = try #require(SwiftVMProcess.testGuest)
        let binary = try #require(SwiftVMProcess.binary)
        let spin = ["run", "--kernel", guest, "--vcpus", "2", "--no-console-input", "--no-rng", "--cmdline",
                    "console=ttyS0 testguest.mode=spin"]
        let vm = try NetHost.Background([binary] + spin + ["--no-seccomp"])
        defer { vm.stop() }
        try #require(Self.waitFor("SPINNING", in: { vm.output }, seconds: 30), "\(vm.output)")
        let threads = Self.threadModes(vm.process.processIdentifier)
        #expect(threads.count >= 4 && threads.allSatisfy { $0.seccomp == "0" }, "\(threads)")
        kill(vm.process.processIdentifier, SIGTERM)
        #expect(vm.wait(timeout: 30) == 128 + SIGTERM)

        var policy = SeccompPolicy.builtIn(processID: nil)
        policy.lists[.vcpu]?.removeAll { $0.syscall == "ioctl" && $0.conditions.first?.value == SeccompIoctl.kvmRun.request }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-seccomp-\(UUID().uuidString).json").path
        try SeccompFilterFile.render(policy).write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let outcome = try SwiftVMProcess.run(spin + ["--seccomp-filter", file], timeout: 30)
        #expect(outcome.status == 148, "\(outcome.stderr)")
        #expect(outcome.stderr.contains("thread swiftvm-vcpu") && outcome.stderr.contains("(vcpu filter) \(Self.violation): ioctl (16) with request 0xae80"),
                "\(outcome.stderr)")
    }
}
