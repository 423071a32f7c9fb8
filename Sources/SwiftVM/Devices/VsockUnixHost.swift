import Glibc
import Synchronization
import SwiftVMDevices
internal import CSwiftVM

/// The host side of hybrid vsock, as Firecracker has it: Unix stream sockets.
///
/// - swiftvm listens on `path` (created when the machine is built, so a bad
///   path fails before the guest boots); host programs connect there and
///   write `CONNECT <port>\n`.
/// - A guest connection to host port P goes to the Unix socket `<path>_P`,
///   where a host program must be listening.
///
/// The socket file belongs to this swiftvm: it is removed when the host side
/// goes away and, since a front end may exit without tearing its VM down, at
/// process exit; in both cases only if the file is still the one swiftvm
/// created (same device and inode). A file already at `path` is never
/// removed: it is reported, because it may be another swiftvm's socket.
final class VsockUnixHost: VsockHostSide {
    let path: String
    private let listener: Int32

    /// Creates, binds and listens on the socket at `path`.
    init(path: String) throws(VMMError) {
        try Self.refuseExisting(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw VMMError(.hostResource, "vsock: cannot create a Unix socket: \(Self.describe(errno))")
        }
        let bound = Self.withAddress(path) { address, length in bind(fd, address, length) }
        guard let bound else {
            Glibc.close(fd)
            throw VMMError(.badInput, "vsock uds path \(path) is too long for a Unix socket or holds a NUL byte")
        }
        if bound != 0 {
            let error = errno
            Glibc.close(fd)
            throw Self.bindFailure(path, error)
        }
        guard listen(fd, 128) == 0 else {
            let error = errno
            Glibc.close(fd)
            unlink(path)
            throw VMMError(.hostResource, "vsock: cannot listen on \(path): \(Self.describe(error))")
        }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            let error = errno
            Glibc.close(fd)
            throw VMMError(.hostResource, "vsock: the socket \(path) vanished right after it was created: \(Self.describe(error))")
        }
        self.path = path
        self.listener = fd
        VsockSocketFiles.register(path, SocketFileIdentity(info))
    }

    deinit {
        Glibc.close(listener)
        VsockSocketFiles.release(path)
    }

    /// A file at `path` stops the VM from being built: removing it could
    /// cut off another swiftvm, so the person who knows decides.
    private static func refuseExisting(_ path: String) throws(VMMError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw VMMError(.badInput, "vsock uds path \(path) exists and is not a socket; choose another uds= path")
        }
        if isListening(path) {
            throw VMMError(.badInput, "vsock socket \(path) exists and a program accepts connections on it "
                + "(another swiftvm?); stop that program or choose another uds= path")
        }
        throw VMMError(.badInput, "vsock socket \(path) exists; remove it if no other swiftvm uses it "
            + "(a swiftvm that was killed leaves its socket behind), or choose another uds= path")
    }

    /// Whether something accepts connections on the Unix socket at `path`.
    private static func isListening(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        let result = withAddress(path) { address, length in Glibc.connect(fd, address, length) }
        // A full backlog (EAGAIN) still means a listener.
        return result == 0 || (result == -1 && errno == EAGAIN)
    }

    private static func bindFailure(_ path: String, _ error: Int32) -> VMMError {
        let directory = path.contains("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) : "."
        switch error {
        case EADDRINUSE:
            return VMMError(.badInput, "vsock socket \(path) exists; remove it if no other swiftvm uses it, or choose another uds= path")
        case ENOENT, ENOTDIR:
            return VMMError(.missingFile(path: directory.isEmpty ? "/" : directory),
                "vsock uds path \(path): the directory \(directory.isEmpty ? "/" : directory) does not exist; create it or choose another uds= path")
        case EACCES, EPERM, EROFS:
            return VMMError(.badInput, "vsock uds path \(path): cannot create a socket there (\(describe(error))); "
                + "choose a directory swiftvm may write to")
        default:
            return VMMError(.badInput, "vsock uds path \(path): cannot create a socket there: \(describe(error))")
        }
    }

    private static func describe(_ error: Int32) -> String {
        String(cString: strerror(error)) + " (errno \(error))"
    }

    /// Runs `body` with a `sockaddr_un` for `path`; nil if the path does not fit.
    private static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    // MARK: - VsockHostSide

    var listeningDescriptor: Int32? { listener }

    func accept() -> VsockAcceptResult {
        while true {
            let fd = svm_vsock_accept(listener)
            if fd >= 0 { return .accepted(fd) }
            let error = errno
            switch error {
            // A client that gave up before it was accepted: take the next one.
            case EINTR, ECONNABORTED: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: return .failed(error)
            }
        }
    }

    func connect(toPort port: UInt32) -> VsockConnectResult {
        let target = "\(path)_\(port)"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .refused("socket: \(Self.describe(errno))") }
        // A Unix stream connect completes at once or fails; a full backlog
        // (EAGAIN) counts as refused, as a guest would see with TCP.
        guard let result = Self.withAddress(target, { address, length in Glibc.connect(fd, address, length) }) else {
            Glibc.close(fd)
            return .refused("\(target) is too long for a Unix socket")
        }
        if result == 0 { return .connected(fd) }
        let error = errno
        Glibc.close(fd)
        return .refused("\(target): \(Self.describe(error))")
    }

    func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> VsockHostIO {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .transferred(0) }
        while true {
            let count = Glibc.read(fd, base, buffer.count)
            if count > 0 { return .transferred(count) }
            if count == 0 { return .endOfStream }
            let error = errno
            switch error {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: return .failed(error)
            }
        }
    }

    func write(_ fd: Int32, from buffer: UnsafeRawBufferPointer) -> VsockHostIO {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .transferred(0) }
        while true {
            // MSG_NOSIGNAL: a peer that went away is EPIPE, not SIGPIPE.
            let count = send(fd, base, buffer.count, Int32(MSG_NOSIGNAL))
            if count >= 0 { return count == 0 ? .wouldBlock : .transferred(count) }
            let error = errno
            switch error {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: return .failed(error)
            }
        }
    }

    func shutdown(_ fd: Int32, reading: Bool, writing: Bool) {
        let how: Int32
        switch (reading, writing) {
        case (true, true): how = Int32(SHUT_RDWR)
        case (true, false): how = Int32(SHUT_RD)
        case (false, true): how = Int32(SHUT_WR)
        case (false, false): return
        }
        _ = Glibc.shutdown(fd, how)
    }

    func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }
}

/// Which file a path named when swiftvm created it.
struct SocketFileIdentity: Sendable, Equatable {
    var device: UInt64
    var inode: UInt64

    init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }
}

/// The socket files this process created, removed when their host side goes
/// away or, for those still there, when the process exits (the `swiftvm`
/// front end exits without tearing its VM down). A file is removed only if
/// the path still names the one swiftvm created.
enum VsockSocketFiles {
    private static let files = Mutex<[String: SocketFileIdentity]>([:])
    private static let exitHook: Void = {
        atexit { VsockSocketFiles.removeAll() }
    }()

    static func register(_ path: String, _ identity: SocketFileIdentity) {
        _ = exitHook
        files.withLock { $0[path] = identity }
    }

    static func release(_ path: String) {
        guard let identity = files.withLock({ $0.removeValue(forKey: path) }) else { return }
        removeIfOurs(path, identity)
    }

    private static func removeAll() {
        let all = files.withLock { files in
            defer { files = [:] }
            return files
        }
        for (path, identity) in all { removeIfOurs(path, identity) }
    }

    private static func removeIfOurs(_ path: String, _ identity: SocketFileIdentity) {
        var info = stat()
        guard lstat(path, &info) == 0, SocketFileIdentity(info) == identity else { return }
        unlink(path)
    }
}
