import Glibc
internal import CSwiftVM

/// An eventfd: a counter the kernel can wait on. KVM uses them for irqfd
/// (write to inject an interrupt) and ioeventfd (KVM writes on a doorbell).
public final class EventFD: Sendable {
    public let fd: FileDescriptor
    public var rawValue: Int32 { fd.rawValue }

    public init(nonBlocking: Bool = false) throws(SystemError) {
        let flags = EFD_CLOEXEC | (nonBlocking ? EFD_NONBLOCK : 0)
        let raw = try sys("eventfd") { eventfd(0, Int32(flags)) }
        fd = FileDescriptor(owning: raw)
    }

    /// Adds `value` to the counter, waking any waiter.
    public func signal(_ value: UInt64 = 1) {
        var value = value
        // An eventfd write only fails when the counter would overflow, which
        // cannot happen for a counter that is drained by its reader.
        _ = Glibc.write(rawValue, &value, 8)
    }

    /// Waits until the counter is non-zero or `milliseconds` pass (-1: no
    /// limit); true when it is non-zero. Does not reset the counter.
    public func wait(timeoutMilliseconds milliseconds: Int32) -> Bool {
        var entry = pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0)
        while true {
            let result = poll(&entry, 1, milliseconds)
            if result == -1 && errno == EINTR { continue }
            return result > 0
        }
    }

    /// Reads and resets the counter; with a non-blocking eventfd returns 0 when nothing is pending.
    @discardableResult
    public func drain() -> UInt64 {
        var value: UInt64 = 0
        while true {
            let result = Glibc.read(rawValue, &value, 8)
            if result == 8 { return value }
            if result == -1 && errno == EINTR { continue }
            return 0
        }
    }
}
