import Glibc

/// Why the host's half of a selftest device check failed.
struct HostSideFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }

    static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> HostSideFailure {
        HostSideFailure("\(what): \(String(cString: strerror(code)))")
    }
}

/// The moment a selftest check must be over; every wait of its host side ends there.
struct Deadline {
    let end: ContinuousClock.Instant

    init(seconds: Int32) { end = .now + .seconds(Int(seconds)) }

    var passed: Bool { ContinuousClock.now >= end }

    /// What is left, in milliseconds for poll(2), at most `cap`.
    func milliseconds(cap: Int32 = .max) -> Int32 {
        let left = end - .now
        guard left > .zero else { return 0 }
        let (seconds, attoseconds) = left.components
        return Int32(clamping: min(Int64(cap), seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1))
    }
}

/// A temporary directory for a check's sockets and captured output, removed
/// with everything in it.
struct ScratchDirectory {
    let path: String

    init() throws(HostSideFailure) {
        var template = Array("/tmp/swiftvm-selftest-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw .errno("mkdtemp") }
        path = String(cString: made)
    }

    /// The text of a file in the directory ("" when it cannot be read).
    func text(_ name: String) -> String {
        guard let image = try? FileImage(path: path + "/" + name, role: "selftest output"),
            let bytes = try? image.readAll(limit: 16 << 20)
        else { return "" }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Removes the directory and the files and sockets in it.
    func remove() {
        if let handle = opendir(path) {
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { unlink(path + "/" + name) }
            }
            closedir(handle)
        }
        rmdir(path)
    }
}

/// Blocking socket calls for the selftest's host programs, each bounded by a
/// deadline; sends never raise SIGPIPE.
enum HostSocket {
    /// A Unix stream socket at `path`, connected or listening.
    static func unix(_ path: String, listening: Bool) throws(HostSideFailure) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .errno("socket") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw HostSideFailure("\(path) is too long for a Unix socket")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                let length = socklen_t(MemoryLayout<sockaddr_un>.size)
                return listening ? bind(fd, address, length) : connect(fd, address, length)
            }
        }
        guard result == 0, !listening || listen(fd, 4) == 0 else {
            let error = HostSideFailure.errno((listening ? "listen on " : "connect to ") + path)
            close(fd)
            throw error
        }
        return fd
    }

    /// Waits until `fd` is readable; throws when the deadline passes first.
    static func waitReadable(_ fd: Int32, _ deadline: Deadline, _ what: String) throws(HostSideFailure) {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&entry, 1, deadline.milliseconds())
            if ready > 0 { return }
            if ready < 0 && errno == EINTR { continue }
            throw HostSideFailure("timed out waiting for \(what)")
        }
    }

    static func accept(_ listener: Int32, _ deadline: Deadline, _ what: String) throws(HostSideFailure) -> Int32 {
        try waitReadable(listener, deadline, what)
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { throw .errno("accept") }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) throws(HostSideFailure) {
        var done = 0
        while done < bytes.count {
            let count = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .errno("send") }
            done += count
        }
    }

    static func send(_ fd: Int32, _ text: String) throws(HostSideFailure) { try send(fd, Array(text.utf8)) }

    /// The next bytes, or nil at the end of the stream.
    static func receive(_ fd: Int32, _ deadline: Deadline, _ what: String, max: Int = 65536) throws(HostSideFailure) -> [UInt8]? {
        try waitReadable(fd, deadline, what)
        var buffer = [UInt8](repeating: 0, count: max)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { throw .errno("recv") }
        return count == 0 ? nil : Array(buffer[0..<count])
    }

    /// One `\n`-terminated line, read a byte at a time so nothing after it is taken.
    static func readLine(_ fd: Int32, _ deadline: Deadline, _ what: String) throws(HostSideFailure) -> String? {
        var line: [UInt8] = []
        while line.last != UInt8(ascii: "\n") {
            guard let byte = try receive(fd, deadline, what, max: 1) else { break }
            line += byte
        }
        return line.isEmpty ? nil : String(decoding: line, as: UTF8.self)
    }

    static func readToEnd(_ fd: Int32, _ deadline: Deadline, _ what: String) throws(HostSideFailure) -> [UInt8] {
        var all: [UInt8] = []
        while let bytes = try receive(fd, deadline, what) { all += bytes }
        return all
    }
}
