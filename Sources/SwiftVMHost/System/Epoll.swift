import Glibc
internal import CSwiftVM

/// A small epoll wrapper: file descriptors registered with a caller-chosen token.
public final class Epoll: Sendable {
    public let fd: FileDescriptor

    public struct Event: Sendable {
        public var token: UInt64
        public var readable: Bool
        public var hangup: Bool
    }

    public init() throws(SystemError) {
        fd = FileDescriptor(owning: try sys("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) })
    }

    /// Watches `target` for input (or stops watching input when `readable` is false).
    public func add(_ target: Int32, token: UInt64, readable: Bool = true) throws(SystemError) {
        try control(EPOLL_CTL_ADD, target, token: token, readable: readable)
    }

    public func modify(_ target: Int32, token: UInt64, readable: Bool) throws(SystemError) {
        try control(EPOLL_CTL_MOD, target, token: token, readable: readable)
    }

    public func remove(_ target: Int32) throws(SystemError) {
        _ = try sys("epoll_ctl DEL") { epoll_ctl(fd.rawValue, EPOLL_CTL_DEL, target, nil) }
    }

    private func control(_ op: Int32, _ target: Int32, token: UInt64, readable: Bool) throws(SystemError) {
        var event = epoll_event()
        event.events = readable ? EPOLLIN.rawValue : 0
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
                hangup: $0.events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0)
        }
    }
}
