import Glibc
internal import CSwiftVM

/// A failed system call or ioctl, with the errno captured right after it.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What was called, e.g. `open /dev/kvm` or `KVM_CREATE_VM`.
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        "\(operation): \(String(cString: strerror(errno))) (\(SystemError.name(of: errno)))"
    }

    /// The symbolic name of common errno values, for messages a person can search for.
    public static func name(of errno: Int32) -> String {
        switch errno {
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case EINTR: "EINTR"
        case EIO: "EIO"
        case E2BIG: "E2BIG"
        case EBADF: "EBADF"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case EACCES: "EACCES"
        case EFAULT: "EFAULT"
        case EBUSY: "EBUSY"
        case EEXIST: "EEXIST"
        case ENODEV: "ENODEV"
        case ENOTDIR: "ENOTDIR"
        case EISDIR: "EISDIR"
        case EINVAL: "EINVAL"
        case ENOSPC: "ENOSPC"
        case ENOSYS: "ENOSYS"
        case ENXIO: "ENXIO"
        case ENOTTY: "ENOTTY"
        case EOPNOTSUPP: "EOPNOTSUPP"
        default: "errno \(errno)"
        }
    }
}

/// The funnel every system call goes through: runs `call`, retries it while it
/// fails with EINTR (unless `retryOnInterrupt` is false), and turns -1 into a
/// `SystemError` carrying errno. Works for calls returning `int` and `ssize_t`.
@inline(__always)
func sys<Result: FixedWidthInteger & SignedInteger>(
    _ operation: @autoclosure () -> String, retryOnInterrupt: Bool = true, _ call: () -> Result
) throws(SystemError) -> Result {
    while true {
        let result = call()
        if result != -1 { return result }
        let error = errno
        if error == EINTR && retryOnInterrupt { continue }
        throw SystemError(operation(), errno: error)
    }
}
