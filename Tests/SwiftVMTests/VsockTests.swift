import Foundation
import Synchronization
import Testing

/// A host program written only against Firecracker's documented hybrid
/// vsock protocol (docs/vsock.md): Unix stream sockets, `CONNECT <port>\n`,
/// `OK <port>\n`, and listeners at `<uds>_<port>` for the guest's connections.
enum HybridVsockClient {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func address(_ path: String) throws -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw Failure(description: "\(path) is too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    static func socketCall(_ path: String, _ call: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var address = try address(path)
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            let error = errno
            close(fd)
            throw Failure(description: "\(path): errno \(error)")
        }
        return fd
    }

    static func connect(_ path: String) throws -> Int32 {
        try socketCall(path) { fd, address, length in Glibc.connect(fd, address, length) }
    }

    static func listen(_ path: String) throws -> Int32 {
        let fd = try socketCall(path) { fd, address, length in bind(fd, address, length) }
        guard Glibc.listen(fd, 4) == 0 else { throw Failure(description: "listen \(path): errno \(errno)") }
        return fd
    }

    /// Waits up to `seconds` for `fd` to be readable.
    static func waitReadable(_ fd: Int32, seconds: Double) throws {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&entry, 1, Int32(seconds * 1000))
        guard ready == 1 else { throw Failure(description: "nothing to read within \(seconds) s") }
    }

    static func accept(_ listener: Int32, seconds: Double) throws -> Int32 {
        try waitReadable(listener, seconds: seconds)
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { throw Failure(description: "accept: errno \(errno)") }
        return fd
    }

    static func write(_ fd: Int32, _ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let count = bytes[done...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw Failure(description: "send: errno \(errno)") }
            done += count
        }
    }

    static func write(_ fd: Int32, _ text: String) throws { try write(fd, Array(text.utf8)) }

    /// The next bytes, or nil at end of stream.
    static func read(_ fd: Int32, seconds: Double) throws -> [UInt8]? {
        try waitReadable(fd, seconds: seconds)
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { throw Failure(description: "recv: errno \(errno)") }
        return count == 0 ? nil : Array(buffer[0..<count])
    }

    /// Reads one `\n`-terminated line, a byte at a time so nothing after it is taken.
    static func readLine(_ fd: Int32, seconds: Double) throws -> String? {
        var line: [UInt8] = []
        while line.last != UInt8(ascii: "\n") {
            try waitReadable(fd, seconds: seconds)
            var byte: UInt8 = 0
            let count = recv(fd, &byte, 1, 0)
            guard count > 0 else { return line.isEmpty ? nil : String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        return String(decoding: line, as: UTF8.self)
    }

    static func readToEnd(_ fd: Int32, seconds: Double) throws -> [UInt8] {
        var all: [UInt8] = []
        while let bytes = try read(fd, seconds: seconds) { all += bytes }
        return all
    }
}

/// Runs work on a thread of its own and hands its result back.
final class BackgroundRun<Value: Sendable>: Sendable {
    private let result = Mutex<Result<Value, any Error>?>(nil)
    private let done = DispatchSemaphore(value: 0)

    init(_ work: @escaping @Sendable () throws -> Value) {
        Thread { self.finish(Result { try work() }) }.start()
    }

    private func finish(_ outcome: Result<Value, any Error>) {
        result.withLock { $0 = outcome }
        done.signal()
    }

    func wait(seconds: Double) throws -> Value {
        guard done.wait(timeout: .now() + seconds) == .success else {
            throw HybridVsockClient.Failure(description: "still running after \(seconds) s")
        }
        guard let value = result.withLock({ $0 }) else { throw HybridVsockClient.Failure(description: "no result") }
        return try value.get()
    }
}

@Suite("vsock over Unix sockets", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct VsockTests {
    typealias Client = HybridVsockClient

    static func scratchDirectory() throws -> String {
        let path = "/tmp/swiftvm-vsock-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func arguments(guest: String, uds: String, cid: Int = 42, mode: String = "selftest") -> [String] {
        [
            "run", "--kernel", guest, "--no-console-input", "--no-rng", "--vsock", "cid=\(cid),uds=\(uds)",
            "--cmdline", "console=ttyS0 testguest.mode=\(mode) testguest.virtio=vsock testguest.vsock_cid=\(cid)",
        ]
    }

    static func waitForFile(_ path: String, seconds: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if FileManager.default.fileExists(atPath: path) { return true }
            usleep(10_000)
        }
        return false
    }

    @Test("a host program using Firecracker's protocol: CONNECT 5000 gets OK <port> and an echo; a port nobody listens on closes the socket; the guest reaches <uds>_6000; the socket file is removed at exit")
    func hostAndGuestConnections() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let directory = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let uds = directory + "/v.sock"
        // The guest connects to host port 6000 once it has echoed: listen first.
        let listener = try Client.listen(uds + "_6000")
        defer { close(listener) }

        let arguments = Self.arguments(guest: guest, uds: uds)
        let vm = BackgroundRun { try SwiftVMProcess.run(arguments, timeout: 60) }
        try #require(Self.waitForFile(uds), "swiftvm did not create \(uds)")

        // Not a CONNECT line: closed without an answer.
        let bogus = try Client.connect(uds)
        defer { close(bogus) }
        try Client.write(bogus, "HELLO 5000\n")
        #expect(try Client.read(bogus, seconds: 20) == nil, "a malformed line closes the socket")

        // Nothing listens on guest port 5001: the guest answers RST and the socket closes, without OK.
        let refused = try Client.connect(uds)
        defer { close(refused) }
        try Client.write(refused, "CONNECT 5001\n")
        #expect(try Client.read(refused, seconds: 20) == nil, "no OK line for a port nobody listens on")

        // The guest echoes on port 5000 until we shut down our sending side.
        let echo = try Client.connect(uds)
        defer { close(echo) }
        try Client.write(echo, "CONNECT 5000\n")
        let line = try #require(try Client.readLine(echo, seconds: 20))
        let port = line.hasPrefix("OK ") && line.hasSuffix("\n") ? UInt32(line.dropFirst(3).dropLast()) : nil
        #expect(port != nil, "expected \"OK <port>\\n\", got \(line.debugDescription)")
        let payload = (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 31 + 7) }
        try Client.write(echo, payload)
        shutdown(echo, Int32(SHUT_WR))
        let echoed = try Client.readToEnd(echo, seconds: 20)
        #expect(echoed == payload, "echoed \(echoed.count) of \(payload.count) bytes")

        // The guest's own connection to host port 6000.
        let incoming = try Client.accept(listener, seconds: 20)
        defer { close(incoming) }
        var received: [UInt8] = []
        while received.count < 17, let bytes = try Client.read(incoming, seconds: 20) { received += bytes }
        #expect(String(decoding: received, as: UTF8.self) == "SWIFTVM-VSOCK-OUT")
        try Client.write(incoming, "SWIFTVM-VSOCK-BACK")
        close(incoming)

        let outcome = try vm.wait(seconds: 90)
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)\nstdout: \(outcome.stdout)")
        #expect(outcome.stdoutLines.filter { $0.hasPrefix("FAIL") }.isEmpty, "\(outcome.stdout)")
        #expect(outcome.stdoutLines.contains(
            "PASS virtio-vsock0: cid 42, port 5000 echoed 5000 bytes, 1 request(s) for other ports refused, "
                + "host port 6000 replied 18 bytes, unknown connection reset"), "\(outcome.stdout)")
        #expect(!FileManager.default.fileExists(atPath: uds), "the socket file is removed when swiftvm exits")
        #expect(FileManager.default.fileExists(atPath: uds + "_6000"), "the host's own listener is left alone")
    }

    @Test("a stale socket file is refused with the fix and left in place")
    func staleSocket() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let directory = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let uds = directory + "/v.sock"
        // A socket file nobody listens on, as a killed swiftvm leaves it.
        close(try Client.socketCall(uds) { fd, address, length in bind(fd, address, length) })
        let outcome = try SwiftVMProcess.run(Self.arguments(guest: guest, uds: uds), timeout: 30)
        #expect(outcome.status == 65, "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("vsock socket \(uds) exists; remove it if no other swiftvm uses it"), "\(outcome.stderr)")
        #expect(FileManager.default.fileExists(atPath: uds), "swiftvm never removes a socket it did not create")
    }

    @Test("a socket another program listens on is refused, and that program keeps it")
    func socketInUse() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let directory = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let uds = directory + "/v.sock"
        let other = try Client.listen(uds)
        defer { close(other) }
        let outcome = try SwiftVMProcess.run(Self.arguments(guest: guest, uds: uds), timeout: 30)
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("exists and a program accepts connections on it"), "\(outcome.stderr)")
        #expect(FileManager.default.fileExists(atPath: uds))
    }

    @Test("a uds path in a directory that does not exist is reported before boot")
    func missingDirectory() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let uds = "/tmp/swiftvm-no-such-directory-\(UUID().uuidString.prefix(8))/v.sock"
        let outcome = try SwiftVMProcess.run(Self.arguments(guest: guest, uds: uds), timeout: 30)
        #expect(outcome.status == 66)
        #expect(outcome.stderr.contains("does not exist; create it or choose another uds= path"), "\(outcome.stderr)")
        #expect(!outcome.stdout.contains("swiftvm-testguest"), "the guest never ran")
    }

    @Test("the socket file is removed when swiftvm is stopped by SIGTERM")
    func removedOnSignal() throws {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        let directory = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let uds = directory + "/v.sock"
        let arguments = Self.arguments(guest: guest, uds: uds, mode: "spin")
        let vm = BackgroundRun {
            try SwiftVMProcess.run(arguments, timeout: 30, signals: [(after: "SPINNING", signal: SIGTERM)])
        }
        #expect(Self.waitForFile(uds), "the socket exists while the VM runs")
        let outcome = try vm.wait(seconds: 60)
        #expect(outcome.status == 128 + SIGTERM, "stderr: \(outcome.stderr)")
        #expect(!FileManager.default.fileExists(atPath: uds))
    }
}
