import Glibc
import Synchronization
import SwiftVMHost

/// A network namespace of the selftest's own with a TAP, `tap0`, in it, made
/// with ip(8). Nothing outside the namespace is touched, and deleting it
/// deletes the TAP.
struct NetNamespace {
    let name: String
    let ip: String
    /// Where the ip commands' output goes.
    let scratch: ScratchDirectory

    /// The absolute path of `command` on PATH (or in /usr/sbin, /sbin), or nil.
    static func locate(_ command: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? ""
        for directory in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            let candidate = directory + "/" + command
            if directory.hasPrefix("/"), access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Why this process cannot make a namespace with a TAP (root with
    /// CAP_NET_ADMIN and CAP_SYS_ADMIN, the ip command, /dev/net/tun), or nil.
    static func whyUnavailable(ip: String?) -> String? {
        var missing: [String] = []
        if geteuid() != 0 {
            missing.append("not root (uid \(geteuid()))")
        } else if let effective = effectiveCapabilities(), effective & (1 << 12) == 0 || effective & (1 << 21) == 0 {
            missing.append("root without CAP_NET_ADMIN or CAP_SYS_ADMIN")
        }
        if ip == nil { missing.append("no ip command on PATH") }
        if access("/dev/net/tun", F_OK) != 0 { missing.append("no /dev/net/tun (modprobe tun)") }
        guard !missing.isEmpty else { return nil }
        return "creating a TAP needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), ip (iproute2) and /dev/net/tun; here: "
            + missing.joined(separator: ", ")
    }

    /// CapEff from /proc/self/status.
    private static func effectiveCapabilities() -> UInt64? {
        guard let image = try? FileImage(path: "/proc/self/status", role: "process status"),
            let bytes = try? image.readAll(limit: 1 << 20),
            let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") })
        else { return nil }
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        return fields.count == 2 ? UInt64(fields[1], radix: 16) : nil
    }

    /// Makes the namespace and its TAP, down for now (`bringUp` after the
    /// host's socket is bound). On failure nothing is left behind.
    static func create(ip: String, scratch: ScratchDirectory, deadline: Deadline) throws(HostSideFailure) -> NetNamespace {
        let namespace = NetNamespace(
            name: "swiftvm-selftest-\(getpid())-\(UInt16.random(in: 0...UInt16.max))", ip: ip, scratch: scratch)
        try namespace.run(["netns", "add", namespace.name], deadline: deadline)
        do {
            try namespace.run(["-n", namespace.name, "tuntap", "add", "dev", "tap0", "mode", "tap"], deadline: deadline)
        } catch {
            _ = try? namespace.remove()
            throw error
        }
        return namespace
    }

    func bringUp(deadline: Deadline) throws(HostSideFailure) {
        try run(["-n", name, "link", "set", "tap0", "up"], deadline: deadline)
    }

    /// Deletes the namespace, and the TAP with it (given 10 s even when the
    /// check's time is up).
    func remove() throws(HostSideFailure) {
        try run(["netns", "delete", name], deadline: nil)
    }

    /// `arguments` run inside the namespace.
    func exec(_ arguments: [String]) -> (path: String, arguments: [String]) {
        (ip, ["netns", "exec", name] + arguments)
    }

    /// Runs ip with `arguments` to completion: 10 s at most, and not past `deadline`.
    private func run(_ arguments: [String], deadline: Deadline?) throws(HostSideFailure) {
        let command = "ip " + arguments.joined(separator: " ")
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(ip, arguments, stdout: scratch.path + "/ip.out", stderr: scratch.path + "/ip.err")
        } catch {
            throw HostSideFailure("\(command): \(error)")
        }
        let limit = Int(deadline?.milliseconds(cap: 10_000) ?? 10_000)
        guard let status = child.wait(milliseconds: limit) else {
            child.kill(SIGKILL)
            _ = child.wait(milliseconds: 5000)
            throw HostSideFailure("\(command) did not finish within \(limit) ms")
        }
        guard status == 0 else {
            let output = scratch.text("ip.err").split(separator: "\n").joined(separator: " ")
            throw HostSideFailure("\(command) exited with status \(status): \(output)")
        }
    }

    /// An AF_PACKET socket bound to the namespace's `tap0`: it sees the frames
    /// the guest sends and sends frames to the guest. A thread of its own
    /// enters the namespace to make it, so this process stays where it is;
    /// it also turns IPv6 off on the TAP, so the kernel sends the guest none
    /// of its own frames.
    func packetSocket() throws(HostSideFailure) -> Int32 {
        final class Outcome: Sendable {
            let value = Mutex<Result<Int32, HostSideFailure>>(.failure(HostSideFailure("the namespace thread did not run")))
        }
        let outcome = Outcome()
        let paths = ["/run/netns/" + name, "/var/run/netns/" + name]
        let thread: HostThread
        do {
            thread = try HostThread.spawn(name: "swiftvm-netns") {
                let result = Result { () throws(HostSideFailure) -> Int32 in try Self.enterAndBind(paths) }
                outcome.value.withLock { $0 = result }
            }
        } catch {
            throw HostSideFailure("cannot start a thread: \(error)")
        }
        thread.join()
        return try outcome.value.withLock { $0 }.get()
    }

    /// Runs on a thread that ends afterwards: it stays in the namespace.
    private static func enterAndBind(_ paths: [String]) throws(HostSideFailure) -> Int32 {
        guard let path = paths.first(where: { access($0, F_OK) == 0 }) else {
            throw HostSideFailure("the namespace is not at \(paths.joined(separator: " or "))")
        }
        let namespace = open(path, O_RDONLY | O_CLOEXEC)
        guard namespace >= 0 else { throw .errno("open \(path)") }
        defer { close(namespace) }
        // Swift's Glibc module leaves out setns(2) (a _GNU_SOURCE function),
        // and a static executable cannot look it up with dlsym: the system
        // call itself.
        guard let setns = SeccompFilters.syscallNumber("setns") else {
            throw HostSideFailure("this machine has no setns system call")
        }
        let cloneNewNet: UInt64 = 0x4000_0000
        let result = SeccompFilters.call(setns, [UInt64(UInt32(bitPattern: namespace)), cloneNewNet])
        guard result == 0 else { throw .errno("setns \(path)", Int32(-result)) }

        let sysctl = open("/proc/sys/net/ipv6/conf/tap0/disable_ipv6", O_WRONLY | O_CLOEXEC)
        if sysctl >= 0 {
            _ = write(sysctl, "1", 1)
            close(sysctl)
        }
        let ethPAll = UInt16(0x0003).bigEndian
        let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(ethPAll))
        guard fd >= 0 else { throw .errno("socket(AF_PACKET)") }
        let index = if_nametoindex("tap0")
        guard index != 0 else {
            close(fd)
            throw .errno("tap0 in the namespace")
        }
        // struct sockaddr_ll: family, protocol (network order), ifindex, then zeros.
        var address = [UInt8](repeating: 0, count: 20)
        withUnsafeBytes(of: UInt16(AF_PACKET)) { address.replaceSubrange(0..<2, with: $0) }
        withUnsafeBytes(of: ethPAll) { address.replaceSubrange(2..<4, with: $0) }
        withUnsafeBytes(of: Int32(index)) { address.replaceSubrange(4..<8, with: $0) }
        let bound = address.withUnsafeBytes { raw in
            bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard bound == 0 else {
            let failure = HostSideFailure.errno("bind to tap0")
            close(fd)
            throw failure
        }
        return fd
    }

    /// The ethertype the test guest's frames carry (IEEE local experimental).
    static let ethertype: [UInt8] = [0x88, 0xb5]

    /// The host's half of the test guest's net check: waits for the guest's
    /// frame (`SWIFTVM-NET-TX ...`) and sends the guest the frame it waits
    /// for, `SWIFTVM-NET-RX ` and 1200 bytes of (j * 7) & 0xff, 1229 bytes in
    /// all. Returns the guest's MAC and payload. `ended` says whether the
    /// VMM has exited, which ends the wait early.
    static func exchange(
        _ fd: Int32, deadline: Deadline, ended: () -> Bool
    ) throws(HostSideFailure) -> (mac: [UInt8], payload: String) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var frame: [UInt8] = []
        while true {
            if ended() { throw HostSideFailure("swiftvm exited before the guest's frame came out of the TAP") }
            if deadline.passed { throw HostSideFailure("timed out waiting for the guest's frame on the TAP") }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, deadline.milliseconds(cap: 100)) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count >= 14 else { continue }
            frame = Array(buffer[0..<count])
            if Array(frame[12..<14]) == ethertype, frame[14...].starts(with: Array("SWIFTVM-NET-TX".utf8)) { break }
        }
        let mac = Array(frame[6..<12])
        let payload = String(decoding: frame[14...].prefix { $0 != 0 }, as: UTF8.self)
        let reply = mac + [0x02, 0, 0, 0, 0, 0x01] + ethertype + Array("SWIFTVM-NET-RX ".utf8)
            + (0..<1200).map { UInt8(($0 * 7) & 0xff) }
        let sent = reply.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == reply.count else { throw .errno("sending the guest its frame") }
        return (mac, payload)
    }
}
