import Glibc
import SwiftVMDevices
import SwiftVMHost
import SwiftVMMemory
internal import CSwiftVM

/// A host TAP device as a virtio-net backend: Ethernet frames with a 12-byte
/// virtio-net header in front, read and written without blocking.
///
/// swiftvm attaches to a TAP that exists; it never creates one, which would
/// need CAP_NET_ADMIN and leave an interface behind. The descriptor is
/// `/dev/net/tun` opened with O_NONBLOCK and attached with IFF_TAP (Ethernet
/// frames), IFF_NO_PI (no packet-information prefix) and IFF_VNET_HDR (the
/// virtio-net header, so offloaded frames pass through untouched).
final class TapBackend: NetBackend {
    static let deviceNode = "/dev/net/tun"

    let name: String
    let fd: FileDescriptor
    var readinessDescriptor: Int32? { fd.rawValue }

    private init(name: String, fd: FileDescriptor) {
        self.name = name
        self.fd = fd
    }

    /// Attaches to the TAP `tapName` for the interface `id`, with every
    /// problem reported as a ``VMMError`` that names the TAP and the fix.
    static func open(tapName: String, id: String) throws(VMMError) -> TapBackend {
        let what = "network interface \(id): TAP device \(tapName)"
        // TUNSETIFF creates an interface that does not exist (given
        // CAP_NET_ADMIN) instead of failing, so look first.
        let index = if_nametoindex(tapName)
        guard index != 0 else {
            throw VMMError(.missingFile(path: "/sys/class/net/\(tapName)"),
                "\(what) does not exist; swiftvm does not create TAP devices. Create it with: "
                + "ip tuntap add dev \(tapName) mode tap user \(currentUserName()) && ip link set \(tapName) up")
        }
        if let flags = persistentFlags(tapName) {
            if flags & Int(SVM_IFF_TAP) == 0 {
                throw VMMError(.usage, "\(what) is a TUN (IP-level) device, not a TAP; virtio-net carries Ethernet "
                    + "frames. Replace it with a TAP: ip tuntap del dev \(tapName) mode tun && ip tuntap add dev \(tapName) mode tap")
            }
            if flags & Int(SVM_IFF_MULTI_QUEUE) != 0 {
                throw VMMError(.usage, "\(what) was created with multi_queue; swiftvm uses one queue and must be the "
                    + "TAP's only user. Recreate it with: ip tuntap del dev \(tapName) mode tap multi_queue && "
                    + "ip tuntap add dev \(tapName) mode tap")
            }
        }

        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(deviceNode, flags: O_RDWR | O_NONBLOCK) } catch {
            switch error.errno {
            case ENOENT, ENODEV, ENXIO:
                throw VMMError(.missingFile(path: deviceNode), "\(what): \(deviceNode) is missing (\(error)); "
                    + "load the tun module with: modprobe tun")
            case EACCES, EPERM:
                throw VMMError(.hostResource, "\(what): cannot open \(deviceNode) (\(error)); "
                    + "make it readable and writable for this user (it is usually mode 0666)")
            default:
                throw VMMError(.hostResource, "\(what): cannot open \(deviceNode): \(error)")
            }
        }

        let wanted = SVM_IFF_TAP | SVM_IFF_NO_PI | SVM_IFF_VNET_HDR
        if svm_tun_set_iff(fd.rawValue, tapName, wanted) != 0 {
            throw attachFailure(SystemError("TUNSETIFF \(tapName)", errno: errno), what: what, tapName: tapName)
        }
        // The TAP swiftvm got must be the one it looked up, not a new one
        // made because the old one went away in between.
        guard if_nametoindex(tapName) == index else {
            throw VMMError(.hostResource, "\(what) disappeared while swiftvm attached to it; create it again with: "
                + "ip tuntap add dev \(tapName) mode tap")
        }
        var flags: Int32 = 0
        var attached = [CChar](repeating: 0, count: Int(SVM_IFNAMSIZ))
        guard svm_tun_get_iff(fd.rawValue, &attached, UInt(attached.count), &flags) == 0 else {
            throw VMMError(.hostResource, "\(what): \(SystemError("TUNGETIFF", errno: errno))")
        }
        guard flags & SVM_IFF_VNET_HDR != 0 else {
            throw VMMError(.hostResource, "\(what) does not keep IFF_VNET_HDR: this host's tun driver cannot pass "
                + "the virtio-net header, which swiftvm needs (Linux 2.6.27 or later has it)")
        }
        var headerSize = Int32(VirtioNetHeader.size)
        if svm_ioctl_ptr(fd.rawValue, SVM_TUNSETVNETHDRSZ, &headerSize) != 0 {
            throw VMMError(.hostResource, "\(what): the tun driver refuses a \(VirtioNetHeader.size)-byte virtio-net "
                + "header (\(SystemError("TUNSETVNETHDRSZ", errno: errno))); swiftvm needs Linux 2.6.35 or later")
        }
        var interfaceFlags: Int32 = 0
        if svm_interface_flags(tapName, &interfaceFlags) == 0, interfaceFlags & SVM_IFF_UP == 0 {
            // A TAP that is down refuses every frame the guest sends (EIO).
            Log.warning("\(what) is down: no frames pass until it is brought up with: ip link set \(tapName) up")
        }
        let backend = TapBackend(name: tapName, fd: fd)
        // Start from plain frames whatever the TAP's last user left set; the
        // device widens this to what the guest accepts when it starts.
        do { try backend.setOffload([]) } catch {
            throw VMMError(.hostResource, "\(what): \(error)")
        }
        return backend
    }

    /// The error for a TUNSETIFF that failed on an existing interface.
    private static func attachFailure(_ error: SystemError, what: String, tapName: String) -> VMMError {
        switch error.errno {
        case EPERM, EACCES:
            return VMMError(.hostResource, "\(what): permission denied (\(error)). Either run swiftvm with "
                + "CAP_NET_ADMIN, or give the TAP to this user: ip tuntap del dev \(tapName) mode tap && "
                + "ip tuntap add dev \(tapName) mode tap user \(currentUserName())")
        case EBUSY:
            return VMMError(.hostResource, "\(what) is busy: another process (another VM?) has it open (\(error)). "
                + "A TAP serves one VM; stop the other user or give this VM its own TAP")
        case EINVAL:
            return VMMError(.usage, "\(what) exists but is not a single-queue TAP device (\(error)); it may be a "
                + "TUN, a multi_queue TAP or another kind of interface. Use one made with: "
                + "ip tuntap add dev \(tapName) mode tap")
        default:
            return VMMError(.hostResource, "\(what): cannot attach: \(error)")
        }
    }

    /// The flags the TAP was created with (`tun_flags` in sysfs), or nil when
    /// sysfs does not say (not a tun device, or sysfs of another namespace).
    private static func persistentFlags(_ tapName: String) -> Int? {
        let path = "/sys/class/net/\(tapName)/tun_flags"
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 32)
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .filter { !$0.isWhitespace }
        return Int(text.hasPrefix("0x") ? String(text.dropFirst(2)) : text, radix: 16)
    }

    private static func currentUserName() -> String {
        if let entry = getpwuid(getuid()), let name = entry.pointee.pw_name { return String(cString: name) }
        return "$USER"
    }

    // MARK: - NetBackend

    func read(into buffers: [UnsafeMutableRawBufferPointer]) throws -> NetTransfer {
        var vectors = buffers.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
        return try transfer("read from \(name)") { readv(fd.rawValue, &vectors, Int32(vectors.count)) }
    }

    func write(from buffers: [UnsafeRawBufferPointer]) throws -> NetTransfer {
        var vectors = buffers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        return try transfer("write to \(name)") { writev(fd.rawValue, &vectors, Int32(vectors.count)) }
    }

    func setOffload(_ offload: NetOffload) throws {
        var flags: UInt32 = 0
        if offload.contains(.checksum) { flags |= SVM_TUN_F_CSUM }
        if offload.contains(.tcp4Segmentation) { flags |= SVM_TUN_F_TSO4 }
        if offload.contains(.tcp6Segmentation) { flags |= SVM_TUN_F_TSO6 }
        if offload.contains(.udpFragmentation) { flags |= SVM_TUN_F_UFO }
        if svm_ioctl_int(fd.rawValue, SVM_TUNSETOFFLOAD, UInt(flags)) != 0 {
            throw SystemError("TUNSETOFFLOAD \(offload) on \(name)", errno: errno)
        }
    }

    /// One readv or writev: a frame, would-block, or the error; retried on EINTR.
    private func transfer(_ operation: String, _ call: () -> Int) throws(SystemError) -> NetTransfer {
        while true {
            let result = call()
            if result >= 0 { return .frame(length: result) }
            let error = errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK { return .wouldBlock }
            // The tun driver answers EIO while the interface is down.
            let hint = error == EIO ? " (is \(name) down? ip link set \(name) up)" : ""
            throw SystemError(operation + hint, errno: error)
        }
    }
}
