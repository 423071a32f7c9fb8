import Glibc
internal import CSwiftVM

/// A small epoll wrapper: file descriptors registered with a caller-chosen token.
public final class Epoll: Sendable {
    public let fd: FileDescriptor

    public struct Event: Sendable {
        public var token: UInt64
        public var readable: Bool
        public var writable: Bool
        public var hangup: Bool
    }

    /// What a registration waits for.
    public struct Interest: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        public static let readable = Interest(rawValue: EPOLLIN.rawValue)
        public static let writable = Interest(rawValue: EPOLLOUT.rawValue)
        /// Report a readiness change once (EPOLLET) instead of for as long as it lasts.
        public static let edgeTriggered = Interest(rawValue: EPOLLET.rawValue)
    }

    public init() throws(SystemError) {
        fd = FileDescriptor(owning: try sys("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) })
    }

    /// Watches `target` for `interest`; events carry `token`. The
    /// corresponding call is `epoll_ctl(EPOLL_CTL_ADD)`.
    public func add(_ target: Int32, token: UInt64, interest: Interest = .readable) throws(SystemError) {
        try control(EPOLL_CTL_ADD, target, token: token, interest: interest)
    }

    /// Changes what `target` is watched for (`EPOLL_CTL_MOD`).
    public func modify(_ target: Int32, token: UInt64, interest: Interest) throws(SystemError) {
        try control(EPOLL_CTL_MOD, target, token: token, interest: interest)
    }

    public func remove(_ target: Int32) throws(SystemError) {
        _ = try sys("epoll_ctl DEL") { epoll_ctl(fd.rawValue, EPOLL_CTL_DEL, target, nil) }
    }

    private func control(_ op: Int32, _ target: Int32, token: UInt64, interest: Interest) throws(SystemError) {
        var event = epoll_event()
        event.events = interest.rawValue
        event.data.u64 = token
        _ = try sys("epoll_ctl") { epoll_ctl(fd.rawValue, op, target, &event) }
    }

    /// Waits for events; `timeoutMilliseconds` -1 waits forever.
    public func wait(maxEvents: Int = 16, timeoutMilliseconds: Int32 = -1) throws(SystemError) -> [Event] {
        var raw = [epoll_event](repeating: epoll_event(), count: maxEvents)
        let count = try sys("epoll_wait") {
            raw.withUnsafeMutableBufferPointer { epoll_wait(fd.rawValue, $0.baseAddress, Int32(maxEvents), timeoutMilliseconds) }
        }
        return raw.prefix(Int(count)).map {
            Event(
                token: $0.data.u64,
                readable: $0.events & EPOLLIN.rawValue != 0,
                writable: $0.events & EPOLLOUT.rawValue != 0,
                hangup: $0.events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0)
        }
    }
}
