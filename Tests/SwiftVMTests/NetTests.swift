import Foundation
import Testing

/// Host commands for the network tests: short ones run to completion, helpers
/// run in the background with their output collected in a file.
enum NetHost {
    /// The absolute path of `command` on PATH, or nil.
    static func which(_ command: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        for directory in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"] {
            let candidate = "\(directory)/\(command)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `arguments` (the first is looked up on PATH) to completion.
    @discardableResult
    static func run(_ arguments: [String], timeout: TimeInterval = 30) throws -> (status: Int32, output: String) {
        let process = try Background(arguments)
        let status = process.wait(timeout: timeout)
        return (status ?? -1, process.output)
    }

    /// Runs `arguments` and fails the test with its output unless it succeeds.
    static func check(_ arguments: [String]) throws {
        let (status, output) = try run(arguments)
        guard status == 0 else {
            throw NetTestFailure("\(arguments.joined(separator: " ")) exited with \(status): \(output)")
        }
    }

    /// A process started in the background; stdout and stderr go to one file.
    final class Background {
        let process = Process()
        private let log: URL
        private let input = Pipe()

        init(_ arguments: [String]) throws {
            let executable = try #require(arguments.first.flatMap { $0.hasPrefix("/") ? $0 : NetHost.which($0) },
                                          "\(arguments.first ?? "") is not on PATH")
            log = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-net-\(UUID().uuidString).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = Array(arguments.dropFirst())
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = input
            try process.run()
        }

        deinit {
            stop()
            try? FileManager.default.removeItem(at: log)
        }

        var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        /// Waits until `text` appears in the output; false if the process
        /// ended or the time ran out first.
        func waitFor(_ text: String, timeout: TimeInterval) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if output.contains(text) { return true }
                if !process.isRunning { return output.contains(text) }
                usleep(20_000)
            }
            return false
        }

        /// The exit status, or nil if it still runs after `timeout`.
        func wait(timeout: TimeInterval) -> Int32? {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { return nil }
            return process.terminationStatus
        }

        /// Closes its standard input, then terminates it if it does not end.
        func stop() {
            try? input.fileHandleForWriting.close()
            guard process.isRunning else { return }
            if wait(timeout: 2) != nil { return }
            process.terminate()
            if wait(timeout: 3) == nil { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }
}

struct NetTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A network namespace of the test's own with a TAP `tap0` in it (and a TUN
/// `tun0` on request). Nothing outside the namespace is touched; removing
/// the namespace removes the interfaces.
struct TestNamespace {
    let name: String

    /// - Parameters:
    ///   - withTUN: also make a TUN, `tun0`.
    ///   - withForeignTAP: also make `tap1`, owned by uid 65534 (nobody).
    static func create(withTUN: Bool = false, withForeignTAP: Bool = false) throws -> TestNamespace {
        let namespace = TestNamespace(name: "swiftvm-test-\(UInt32.random(in: 0...UInt32.max))")
        try NetHost.check(["ip", "netns", "add", namespace.name])
        do {
            try NetHost.check(["ip", "-n", namespace.name, "tuntap", "add", "dev", "tap0", "mode", "tap"])
            // Without IPv6 the kernel sends no solicitations of its own on the TAP.
            try NetHost.run(namespace.exec(["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/tap0/disable_ipv6"]))
            try NetHost.check(["ip", "-n", namespace.name, "link", "set", "tap0", "up"])
            if withTUN { try NetHost.check(["ip", "-n", namespace.name, "tuntap", "add", "dev", "tun0", "mode", "tun"]) }
            if withForeignTAP {
                try NetHost.check(["ip", "-n", namespace.name, "tuntap", "add", "dev", "tap1", "mode", "tap", "user", "65534"])
            }
        } catch {
            namespace.remove()
            throw error
        }
        return namespace
    }

    /// `arguments` run inside the namespace.
    func exec(_ arguments: [String]) -> [String] { ["ip", "netns", "exec", name] + arguments }

    func remove() {
        _ = try? NetHost.run(["ip", "netns", "delete", name])
    }

    /// Whether this host lets the test make namespaces and TAPs (root with
    /// CAP_NET_ADMIN and CAP_SYS_ADMIN, the ip command): tried once.
    static let available: Bool = {
        guard getuid() == 0, NetHost.which("ip") != nil, FileManager.default.fileExists(atPath: "/dev/net/tun") else {
            return false
        }
        guard let probe = try? create() else { return false }
        probe.remove()
        return true
    }()
}

enum NetTestSupport {
    static let helper = SwiftVMProcess.packageRoot.appendingPathComponent("Tests/SwiftVMTests/Support/net-helper.py").path
    static let python = NetHost.which("python3")
    static let guestMAC = "06:00:ac:10:00:02"
    static let setpriv = NetHost.which("setpriv")
    /// Runs a command without CAP_NET_ADMIN, as a user without it would.
    static func withoutNetAdmin(_ arguments: [String]) -> [String] {
        [setpriv ?? "setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"] + arguments
    }
}

/// The test guest exchanges frames with a host program over a real TAP in a
/// network namespace of the test's own.
@Suite(
    "virtio-net on a TAP", .serialized,
    .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"),
    .enabled(if: TestNamespace.available,
             "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), the ip command and /dev/net/tun to make a network namespace with a TAP"),
    .enabled(if: NetTestSupport.python != nil, "needs python3 for the AF_PACKET helper (Support/net-helper.py)")
)
struct NetTests {
    struct Outcome {
        var swiftvm: SwiftVMProcess.Outcome
        var helper: String
    }

    /// Starts the host helper in the namespace, then swiftvm on the test guest there.
    static func exchange(in namespace: TestNamespace, offload: Bool, mac: String?, withoutNetAdmin: Bool = false) throws -> Outcome {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let binary = try #require(SwiftVMProcess.binary, "the swiftvm executable was not built next to the tests")
        let python = try #require(NetTestSupport.python)
        let helper = try NetHost.Background(namespace.exec([python, NetTestSupport.helper, "exchange", "--iface", "tap0", "--timeout", "60"]))
        try #require(helper.waitFor("READY", timeout: 15), "the helper did not start: \(helper.output)")
        var net = "id=eth0,tap=tap0"
        if let mac { net += ",mac=\(mac)" }
        let cmdline = "console=ttyS0 testguest.acpi=1 testguest.virtio=net" + (offload ? " testguest.net_offload=1" : "")
        // Warnings only: the output merges both streams, and an info line
        // (the boot time) could land inside a guest's line.
        let command = [
            binary, "run", "--kernel", guest, "--net", net, "--no-rng", "--cmdline", cmdline, "--no-console-input",
            "--log-level", "warning",
        ]
        let run = try NetHost.Background(namespace.exec(withoutNetAdmin ? NetTestSupport.withoutNetAdmin(command) : command))
        let status = run.wait(timeout: 90)
        let output = run.output
        if status == nil { run.stop() }
        _ = helper.wait(timeout: 10)
        helper.stop()
        // Background merges both streams; the guest's lines are what the checks read.
        return Outcome(
            swiftvm: SwiftVMProcess.Outcome(status: status ?? -1, stdout: output, stderr: output, timedOut: status == nil),
            helper: helper.output)
    }

    @Test("the guest sends a frame the host captures on the TAP and receives the host's frame", arguments: [
        (true, NetTestSupport.guestMAC), (false, nil),
    ] as [(Bool, String?)])
    func exchange(offload: Bool, mac: String?) throws {
        let namespace = try TestNamespace.create()
        defer { namespace.remove() }
        let outcome = try Self.exchange(in: namespace, offload: offload, mac: mac)
        let lines = outcome.swiftvm.stdoutLines
        let context = "swiftvm:\n\(outcome.swiftvm.stdout)\nhelper:\n\(outcome.helper)"
        #expect(outcome.swiftvm.status == 0, "\(context)")
        #expect(!outcome.swiftvm.timedOut)
        #expect(lines.filter { $0.hasPrefix("FAIL") }.isEmpty, "\(context)")
        let guestMAC = mac ?? "06:00:5e:57:4d:00"
        let origin = mac == nil ? "guest's own" : "from the device"
        let expected = offload
            ? "PASS virtio-net0: mac \(guestMAC) (\(origin)), offloads on, tx 1 frame, rx 1229 bytes in 3 buffers (num_buffers 3)"
            : "PASS virtio-net0: mac \(guestMAC) (\(origin)), offloads off, tx 1 frame, rx 1229 bytes in 1 buffer (num_buffers 1)"
        #expect(lines.contains { $0.hasPrefix(expected) }, "\(context)")
        // What the host saw: the guest's frame, the TAP offloads swiftvm set
        // from the guest's features, and the reply it sent.
        #expect(outcome.helper.contains("CAPTURED src=\(guestMAC) dst=ff:ff:ff:ff:ff:ff payload=SWIFTVM-NET-TX 0 offload=\(offload ? 1 : 0)"),
                "\(context)")
        #expect(outcome.helper.contains(offload ? "OFFLOAD tx-csum=1 tso=1" : "OFFLOAD tx-csum=0 tso=0"), "\(context)")
        #expect(outcome.helper.contains("SENT 1229 bytes to \(guestMAC)"), "\(context)")
    }

    @Test("a TAP another process holds is refused as busy, with the fix")
    func busyTAP() throws {
        let namespace = try TestNamespace.create()
        defer { namespace.remove() }
        let guest = try #require(SwiftVMProcess.testGuest)
        let binary = try #require(SwiftVMProcess.binary)
        let holder = try NetHost.Background(namespace.exec([try #require(NetTestSupport.python), NetTestSupport.helper, "hold", "tap0"]))
        defer { holder.stop() }
        try #require(holder.waitFor("HOLDING tap0", timeout: 15), "the helper could not attach: \(holder.output)")
        let run = try NetHost.Background(namespace.exec([
            binary, "run", "--kernel", guest, "--net", "id=eth0,tap=tap0", "--no-rng", "--no-console-input",
        ]))
        let status = run.wait(timeout: 60)
        #expect(status == 71, "\(run.output)")
        #expect(run.output.contains("network interface eth0: TAP device tap0 is busy: another process"), "\(run.output)")
        #expect(run.output.contains("give this VM its own TAP"))
    }

    @Test("without CAP_NET_ADMIN a TAP open to this user works and another user's TAP is refused, with the fix",
          .enabled(if: NetTestSupport.setpriv != nil, "needs setpriv (util-linux) to drop CAP_NET_ADMIN"))
    func withoutNetAdmin() throws {
        let namespace = try TestNamespace.create(withForeignTAP: true)
        defer { namespace.remove() }
        let outcome = try Self.exchange(in: namespace, offload: true, mac: NetTestSupport.guestMAC, withoutNetAdmin: true)
        #expect(outcome.swiftvm.status == 0, "\(outcome.swiftvm.stdout)\n\(outcome.helper)")
        let expected = "PASS virtio-net0: mac \(NetTestSupport.guestMAC) (from the device), offloads on"
        #expect(outcome.swiftvm.stdoutLines.contains { $0.hasPrefix(expected) },
                "\(outcome.swiftvm.stdout)")

        let guest = try #require(SwiftVMProcess.testGuest)
        let binary = try #require(SwiftVMProcess.binary)
        let run = try NetHost.Background(namespace.exec(NetTestSupport.withoutNetAdmin([
            binary, "run", "--kernel", guest, "--net", "id=eth0,tap=tap1", "--no-rng", "--no-console-input",
        ])))
        let status = run.wait(timeout: 60)
        #expect(status == 71, "\(run.output)")
        #expect(run.output.contains("TAP device tap1: permission denied"), "\(run.output)")
        #expect(run.output.contains("run swiftvm with CAP_NET_ADMIN"))
        #expect(run.output.contains("ip tuntap add dev tap1 mode tap user "))
    }

    @Test("a TUN device is refused: virtio-net needs a TAP")
    func tunRefused() throws {
        let namespace = try TestNamespace.create(withTUN: true)
        defer { namespace.remove() }
        let guest = try #require(SwiftVMProcess.testGuest)
        let binary = try #require(SwiftVMProcess.binary)
        let run = try NetHost.Background(namespace.exec([
            binary, "run", "--kernel", guest, "--net", "id=eth0,tap=tun0", "--no-rng", "--no-console-input",
        ]))
        let status = run.wait(timeout: 60)
        #expect(status == 64, "\(run.output)")
        #expect(run.output.contains("TAP device tun0 is a TUN (IP-level) device, not a TAP"), "\(run.output)")
        #expect(run.output.contains("ip tuntap add dev tun0 mode tap"))
    }
}

/// Errors that need no namespace: swiftvm never creates a TAP.
@Suite("virtio-net errors", .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct NetErrorTests {
    @Test("a TAP that does not exist is reported with the command that creates it, and not created")
    func missingTAP() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let tap = "swvm-no\(UInt16.random(in: 0...UInt16.max))"
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", guest, "--net", "id=eth0,tap=\(tap)", "--no-rng", "--no-console-input",
        ])
        #expect(outcome.status == 66, "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("network interface eth0: TAP device \(tap) does not exist"), "\(outcome.stderr)")
        #expect(outcome.stderr.contains("ip tuntap add dev \(tap) mode tap"), "\(outcome.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "/sys/class/net/\(tap)"), "swiftvm must not create it")
    }
}
