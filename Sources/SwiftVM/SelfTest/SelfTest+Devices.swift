import Glibc
import SwiftVMHost

/// The selftest's device checks: the test guest drives a vsock, balloon or
/// net device while this process plays the host's part (Firecracker's
/// hybrid vsock protocol, the balloon API, a frame on a TAP). Each is one
/// line, bounded by `timeoutSeconds`, and leaves no files, sockets or
/// namespaces behind.
extension SelfTest {
    /// The guest's CID in the vsock check.
    static let vsockCID: UInt32 = 42
    /// The MAC the net check gives the guest.
    static let netMAC = "06:00:ac:10:00:02"

    /// vsock: the host connects to the VM's Unix socket (`CONNECT 5001`,
    /// which nothing in the guest listens on, is refused; `CONNECT 5000` is
    /// echoed) and accepts the guest's connection to host port 6000 on
    /// `<uds>_6000`.
    public func vsock() -> Check {
        let name = "vsock"
        let scratch: ScratchDirectory
        do { scratch = try ScratchDirectory() } catch { return Check(name: name, passed: false, detail: error.description) }
        defer { scratch.remove() }
        let uds = scratch.path + "/v.sock"
        let listener: Int32
        do { listener = try HostSocket.unix(uds + "_6000", listening: true) } catch {
            return Check(name: name, passed: false, detail: error.description)
        }
        defer { close(listener) }
        let cid = SelfTest.vsockCID
        let outcome = runInProcess(
            memoryMiB: 128, words: "testguest.virtio=vsock testguest.vsock_cid=\(cid)",
            configure: { $0.vsock = VsockConfig(guestCID: cid, udsPath: uds) }
        ) { (_, _, deadline) throws(HostSideFailure) -> String in
            try Self.vsockHost(uds: uds, listener: listener, deadline: deadline)
        }
        return SelfTest.evaluateDevice(name, device: "virtio-vsock0", ended: outcome.ended, console: outcome.console, host: outcome.host)
    }

    /// The host's half of the vsock check; says what it saw.
    static func vsockHost(uds: String, listener: Int32, deadline: Deadline) throws(HostSideFailure) -> String {
        let refused = try HostSocket.unix(uds, listening: false)
        defer { close(refused) }
        try HostSocket.send(refused, "CONNECT 5001\n")
        if let answer = try HostSocket.receive(refused, deadline, "the end of CONNECT 5001") {
            throw HostSideFailure("CONNECT 5001 (nothing listens there in the guest) was answered "
                + "\(String(decoding: answer, as: UTF8.self).debugDescription) instead of closed")
        }

        let echo = try HostSocket.unix(uds, listening: false)
        defer { close(echo) }
        try HostSocket.send(echo, "CONNECT 5000\n")
        let line = try HostSocket.readLine(echo, deadline, "OK after CONNECT 5000") ?? "nothing"
        guard line.hasPrefix("OK "), line.hasSuffix("\n"), UInt32(line.dropFirst(3).dropLast()) != nil else {
            throw HostSideFailure("CONNECT 5000 was answered \(line.debugDescription), expected \"OK <port>\\n\"")
        }
        let payload = (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 31 + 7) }
        try HostSocket.send(echo, payload)
        shutdown(echo, Int32(SHUT_WR))
        let echoed = try HostSocket.readToEnd(echo, deadline, "the echo from guest port 5000")
        guard echoed == payload else {
            throw HostSideFailure("guest port 5000 sent back \(echoed.count) bytes"
                + (echoed.count == payload.count ? " that differ from" : " for") + " the host's \(payload.count)")
        }

        let incoming = try HostSocket.accept(listener, deadline, "the guest's connection to host port 6000")
        defer { close(incoming) }
        var received: [UInt8] = []
        while received.count < 17, let bytes = try HostSocket.receive(incoming, deadline, "the guest's bytes on port 6000") {
            received += bytes
        }
        guard received == Array("SWIFTVM-VSOCK-OUT".utf8) else {
            throw HostSideFailure("the guest's connection to host port 6000 sent "
                + "\(String(decoding: received, as: UTF8.self).debugDescription), expected \"SWIFTVM-VSOCK-OUT\"")
        }
        try HostSocket.send(incoming, "SWIFTVM-VSOCK-BACK")
        return "the host got its \(payload.count) bytes back through the Unix socket and accepted the guest's "
            + "connection on <uds>_6000"
    }

    /// The balloon: the guest writes 64 MiB it may give up, the host sets a
    /// 64 MiB target, the guest inflates and the host's backing memory for
    /// guest RAM must drop by as much; then the host lowers the target to 16
    /// MiB and the guest deflates 48 MiB.
    public func balloon() -> Check {
        // The guest's balloon pages come from the upper half of its RAM, minus 2 MiB.
        let memoryMiB = 240
        let waitMilliseconds = min(Int(timeoutSeconds) * 1000, 30_000)
        let outcome = runInProcess(
            memoryMiB: memoryMiB,
            words: "testguest.virtio=balloon testguest.balloon=oom,reporting testguest.balloon_touch_mib=64 "
                + "testguest.balloon_wait_ms=\(waitMilliseconds)",
            configure: { $0.balloon = BalloonConfig(targetMiB: 0, deflateOnOOM: true, freePageReporting: true) }
        ) { (vm, console, deadline) throws(HostSideFailure) -> String in
            try Self.balloonHost(vm, console, deadline)
        }
        return SelfTest.evaluateDevice("balloon", device: "virtio-balloon0", ended: outcome.ended, console: outcome.console, host: outcome.host)
    }

    /// The host's half of the balloon check; reports the figures.
    static func balloonHost(_ vm: MicroVM, _ console: ConsoleCapture, _ deadline: Deadline) throws(HostSideFailure) -> String {
        func call<T>(_ what: String, _ body: () throws(VMMError) -> T) throws(HostSideFailure) -> T {
            do { return try body() } catch { throw HostSideFailure("\(what): \(error.message)") }
        }
        try awaitLine("BALLOON TOUCHED 16384", console, vm, deadline)
        let touched = vm.residentGuestMemoryBytes
        let askedAt = ContinuousClock.now
        try call("setBalloonTarget(mib: 64)") { () throws(VMMError) in try vm.setBalloonTarget(mib: 64) }
        try awaitLine("BALLOON INFLATED 16384", console, vm, deadline)
        let inflateTime = ContinuousClock.now - askedAt
        let inflated = vm.residentGuestMemoryBytes
        let afterInflate = try call("balloonCounters()") { () throws(VMMError) in try vm.balloonCounters() }
        let figure = "guest RAM backed by the host \(mib(touched, unit: false)) -> \(mib(inflated))"
        guard afterInflate.inflatedPages == 16384 else {
            throw HostSideFailure("the device counted \(afterInflate.inflatedPages) inflated pages, expected 16384")
        }
        guard touched >= inflated, touched - inflated >= 63 << 20 else {
            throw HostSideFailure("\(figure) after the guest gave 64 MiB: the host did not release them "
                + "(\(afterInflate.discardFailures) discard failures)")
        }
        try call("setBalloonTarget(mib: 16)") { () throws(VMMError) in try vm.setBalloonTarget(mib: 16) }
        try awaitLine("BALLOON DEFLATED 12288", console, vm, deadline)
        let afterDeflate = try call("balloonCounters()") { () throws(VMMError) in try vm.balloonCounters() }
        guard afterDeflate.deflatedPages == 12288 else {
            throw HostSideFailure("the device counted \(afterDeflate.deflatedPages) deflated pages, expected 12288")
        }
        let milliseconds = inflateTime.components.seconds * 1000 + inflateTime.components.attoseconds / 1_000_000_000_000_000
        return "\(figure) when it took 64 MiB (\(milliseconds) ms after setBalloonTarget), "
            + "\(mib(vm.residentGuestMemoryBytes)) after it gave 48 MiB back"
    }

    /// Waits until the guest prints `text`.
    static func awaitLine(_ text: String, _ console: ConsoleCapture, _ vm: MicroVM, _ deadline: Deadline) throws(HostSideFailure) {
        while !console.text.contains(text) {
            if vm.state == .stopped || console.text.contains("RESULT ") {
                if console.text.contains(text) { return }
                throw HostSideFailure("the guest finished without printing \"\(text)\"")
            }
            if deadline.passed { throw HostSideFailure("timed out waiting for the guest's \"\(text)\"") }
            usleep(10_000)
        }
    }

    /// `bytes` in MiB with one decimal ("66.4 MiB").
    static func mib(_ bytes: UInt64, unit: Bool = true) -> String {
        let tenths = (bytes * 10 + (1 << 19)) >> 20
        return "\(tenths / 10).\(tenths % 10)" + (unit ? " MiB" : "")
    }

    /// net: the guest sends a frame the host captures on a TAP in a network
    /// namespace of its own and receives the host's frame. The VMM must open
    /// the TAP inside the namespace, so `executable` (swiftvm) runs the guest
    /// under `ip netns exec`. Skipped, with the reason, when this process
    /// cannot make a TAP.
    public func net(executable: String) -> Check {
        let name = "net"
        let ip = NetNamespace.locate("ip")
        if let reason = NetNamespace.whyUnavailable(ip: ip) { return .skip(name, because: reason) }
        let deadline = Deadline(seconds: timeoutSeconds)
        let scratch: ScratchDirectory
        do { scratch = try ScratchDirectory() } catch { return Check(name: name, passed: false, detail: error.description) }
        defer { scratch.remove() }
        let namespace: NetNamespace
        do { namespace = try NetNamespace.create(ip: ip ?? "ip", scratch: scratch, deadline: deadline) } catch {
            return .skip(name, because: "cannot make a network namespace with a TAP: \(error)")
        }
        var check = netExchange(in: namespace, executable: executable, deadline: deadline)
        do { try namespace.remove() } catch {
            check = Check(name: name, passed: false, detail: "removing the namespace: \(error); " + check.line)
        }
        return check
    }

    private func netExchange(in namespace: NetNamespace, executable: String, deadline: Deadline) -> Check {
        let name = "net"
        // Closed before the namespace is deleted: an open socket would keep it alive.
        let packet: Int32
        do { packet = try namespace.packetSocket() } catch {
            return Check(name: name, passed: false, detail: "setting up the host side: \(error)")
        }
        defer { close(packet) }
        do { try namespace.bringUp(deadline: deadline) } catch {
            return Check(name: name, passed: false, detail: "setting up the host side: \(error)")
        }
        let scratch = namespace.scratch
        let commandLine = "console=ttyS0 reboot=k panic=1 testguest.mem_mib=128 testguest.cpus=1 testguest.acpi=1 "
            + "testguest.virtio=net testguest.net_offload=1"
        var arguments = [
            executable, "run", "--kernel", guestPath, "--memory", "128", "--vcpus", "1",
            "--net", "id=eth0,tap=tap0,mac=\(SelfTest.netMAC)", "--no-rng", "--no-console-input",
            "--log-level", "warning", "--cmdline", commandLine,
        ]
        if kvmPath != KVM.defaultPath { arguments += ["--kvm-device", kvmPath] }
        let (ip, ipArguments) = namespace.exec(arguments)
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(ip, ipArguments, stdout: scratch.path + "/console", stderr: scratch.path + "/stderr")
        } catch {
            return Check(name: name, passed: false, detail: "cannot start \(executable): \(error)")
        }
        var status: Int32?
        let host = Result { () throws(HostSideFailure) -> String in
            let (mac, payload) = try NetNamespace.exchange(packet, deadline: deadline) {
                if status == nil { status = child.wait(milliseconds: 0) }
                return status != nil
            }
            let expected = "SWIFTVM-NET-TX 0 offload=1"
            guard NetConfig.format(mac) == SelfTest.netMAC, payload == expected else {
                throw HostSideFailure("the guest's frame came from \(NetConfig.format(mac)) with \(payload.debugDescription), "
                    + "expected \(SelfTest.netMAC) and \(expected.debugDescription)")
            }
            return "the host captured the guest's frame on the TAP (in a network namespace of its own) and sent 1229 bytes back"
        }
        if status == nil { status = child.wait(milliseconds: Int(deadline.milliseconds())) }
        if status == nil {
            child.kill(SIGKILL)
            _ = child.wait(milliseconds: 5000)
        }
        let console = scratch.text("console").split(separator: "\n", omittingEmptySubsequences: false)
            .map { String($0.filter { $0 != "\r" }) }
        var ended: String?
        if let status, status != 0 {
            let stderr = scratch.text("stderr").split(separator: "\n").suffix(2).joined(separator: " | ")
            ended = "swiftvm run exited with status \(status): \(stderr)"
        } else if status == nil {
            ended = "swiftvm run gave no result within \(timeoutSeconds) s"
        }
        return SelfTest.evaluateDevice(name, device: "virtio-net0", ended: ended, console: console, host: host)
    }

    /// Boots the test guest in this process with `words` added to its command
    /// line and `configure` applied, runs `host` on this thread while it
    /// runs, then waits for the guest to finish. The VM is stopped when the
    /// host's part fails or `timeoutSeconds` pass.
    private func runInProcess(
        memoryMiB: Int, words: String, configure: (inout VMConfig) -> Void,
        host: (MicroVM, ConsoleCapture, Deadline) throws(HostSideFailure) -> String
    ) -> (ended: String?, console: [String], host: Result<String, HostSideFailure>) {
        let console = ConsoleCapture()
        var config = VMConfig(
            kernelPath: guestPath,
            commandLine: "console=ttyS0 reboot=k panic=1 testguest.mem_mib=\(memoryMiB) testguest.cpus=1 testguest.acpi=1 "
                + words,
            memoryMiB: memoryMiB, serialOutput: .sink(console))
        config.kvmPath = kvmPath
        config.preflight = false
        config.entropyDevice = false
        config.consoleSilenceWarningSeconds = nil
        configure(&config)
        let vm: MicroVM
        do { vm = try MicroVM(config: config) } catch {
            return ("cannot build the VM: \(error.message)", [], .failure(HostSideFailure("the VM was not built")))
        }
        let limit = timeoutSeconds
        let deadline = Deadline(seconds: limit)
        let watchdog = Watchdog(seconds: limit) { vm.stop("no result within \(limit) s") }
        defer { watchdog.cancel() }
        do { try vm.start() } catch {
            return ("cannot start the VM: \(error.message)", console.lines, .failure(HostSideFailure("the VM did not start")))
        }
        let result = Result { () throws(HostSideFailure) -> String in try host(vm, console, deadline) }
        if case .failure(let failure) = result { vm.stop("the host's side failed: \(failure)") }
        let reason = vm.wait()
        if case .reset = reason { return (nil, console.lines, result) }
        return ("\(reason)", console.lines, result)
    }

    /// Judges a device check: the guest's `device` check passed, nothing
    /// else in the guest failed, the guest reset the machine (`ended` is nil;
    /// otherwise it says how the run ended) and the host's part succeeded.
    static func evaluateDevice(
        _ name: String, device: String, ended: String?, console: [String], host: Result<String, HostSideFailure>
    ) -> Check {
        let tail = console.filter { !$0.isEmpty }.suffix(3).joined(separator: " | ")
        let guestFailures = console.filter { $0.hasPrefix("FAIL ") }.map { String($0.dropFirst(5)) }
        if case .failure(let failure) = host {
            let guest = guestFailures.first.map { "; the guest: \($0)" } ?? "; console: \(tail)"
            return Check(name: name, passed: false, detail: "host side: \(failure)" + guest)
        }
        guard let line = console.first(where: { $0.hasPrefix("PASS \(device):") }) else {
            let why = guestFailures.first(where: { $0.hasPrefix("\(device):") }).map { "the guest: \($0)" }
                ?? "no result from the guest's \(device) check (\(ended ?? "it reset")); console: \(tail)"
            return Check(name: name, passed: false, detail: why)
        }
        if !guestFailures.isEmpty {
            return Check(name: name, passed: false, detail: "other checks failed in the guest: " + guestFailures.joined(separator: "; "))
        }
        if let ended { return Check(name: name, passed: false, detail: "the guest's check passed, but the VM ended with: \(ended)") }
        guard case .success(let seen) = host else { return Check(name: name, passed: false, detail: "no result from the host side") }
        return Check(name: name, passed: true, detail: String(line.dropFirst("PASS \(device): ".count)) + "; " + seen)
    }
}
