import Glibc
import Synchronization
import SwiftVMDevices
import SwiftVMHost
import SwiftVMMemory

// The registry's vocabulary lives with the devices, which subscribe their
// back ends; programs that embed swiftvm use it under these names.
public typealias EventInterest = SwiftVMDevices.EventInterest
public typealias EventReadiness = SwiftVMDevices.EventReadiness
public typealias EventToken = SwiftVMDevices.EventToken

extension EventInterest {
    var epoll: Epoll.Interest {
        var interest: Epoll.Interest = []
        if contains(.readable) { interest.insert(.readable) }
        if contains(.writable) { interest.insert(.writable) }
        if contains(.edgeTriggered) { interest.insert(.edgeTriggered) }
        return interest
    }
}

/// The VMM's device event loop: one thread that waits on every file
/// descriptor the machine's parts care about (virtio queue doorbells, the
/// console, backend sockets and taps, control requests) and on timers, and
/// calls each part's handler when something happens.
///
/// In the spirit of Firecracker's event manager, the loop knows nothing of
/// devices: a part subscribes a descriptor with the events it wants and a
/// handler, and can change or remove that subscription, or arm a timer, from
/// any thread while the VM runs. Handlers run one at a time on the loop's
/// thread, so a device's handlers never race each other; they must not block.
/// A handler removed from another thread may still run once if its event
/// was already being dispatched.
public final class EventLoop: EventRegistry, Sendable {
    public typealias Handler = @Sendable (EventReadiness) -> Void

    private struct Subscription {
        var fd: Int32
        var interest: EventInterest
        var handler: Handler
    }

    private struct Timer {
        var deadline: Int64  // milliseconds on the monotonic clock
        var period: Int64?
        var handler: @Sendable () -> Void
    }

    private struct State {
        var nextToken: UInt64 = 1
        var subscriptions: [UInt64: Subscription] = [:]
        var timers: [UInt64: Timer] = [:]
        var posted: [@Sendable () -> Void] = []
        var stopping = false
    }

    private let epoll: Epoll
    /// Wakes the loop for posted work, timer changes and stop.
    private let wake: EventFD
    private let state = Mutex(State())
    private static let wakeToken: UInt64 = 0

    public init() throws(SystemError) {
        epoll = try Epoll()
        wake = try EventFD(nonBlocking: true)
        try epoll.add(wake.rawValue, token: Self.wakeToken)
    }

    /// Watches `fd` for `interest` and calls `handler` on the loop thread when
    /// it is ready. The descriptor stays owned by the caller, who unsubscribes
    /// before closing it. The corresponding call is `epoll_ctl(EPOLL_CTL_ADD)`.
    @discardableResult
    public func subscribe(
        _ fd: Int32, interest: EventInterest = .readable, handler: @escaping Handler
    ) throws(VMMError) -> EventToken {
        let token = state.withLock { state -> UInt64 in
            defer { state.nextToken += 1 }
            state.subscriptions[state.nextToken] = Subscription(fd: fd, interest: interest, handler: handler)
            return state.nextToken
        }
        do { try epoll.add(fd, token: token, interest: interest.epoll) } catch {
            _ = state.withLock { $0.subscriptions.removeValue(forKey: token) }
            throw Self.failure(error, subscribing: fd)
        }
        return EventToken(token)
    }

    /// Changes what a subscription waits for, e.g. to start or stop waiting
    /// for a descriptor to become writable.
    public func modify(_ token: EventToken, interest: EventInterest) throws(VMMError) {
        let fd = state.withLock { state -> Int32? in
            state.subscriptions[token.value]?.interest = interest
            return state.subscriptions[token.value]?.fd
        }
        guard let fd else { return }
        do { try epoll.modify(fd, token: token.value, interest: interest.epoll) } catch {
            throw Self.failure(error, subscribing: fd)
        }
    }

    /// Why epoll refused a descriptor, in words: EPERM means the descriptor is
    /// a regular file or a directory, which are always ready and cannot be watched.
    private static func failure(_ error: SystemError, subscribing fd: Int32) -> VMMError {
        if error.errno == EPERM {
            return VMMError(.usage, "descriptor \(fd) cannot be watched by the event loop: it is a regular file "
                + "or a directory, which is always ready (epoll_ctl: EPERM)")
        }
        return VMMError(error.errno == EBADF ? .usage : .hostResource, "watching descriptor \(fd): \(error)")
    }

    /// True when `error` says the descriptor cannot be watched at all (a regular file).
    static func isUnwatchable(_ error: VMMError) -> Bool {
        error.kind == .usage && error.message.contains("EPERM")
    }

    /// Removes a subscription or cancels a timer; unknown tokens are ignored.
    public func remove(_ token: EventToken) {
        let fd = state.withLock { state -> Int32? in
            state.timers.removeValue(forKey: token.value)
            return state.subscriptions.removeValue(forKey: token.value)?.fd
        }
        if let fd { try? epoll.remove(fd) }
    }

    /// Calls `handler` on the loop thread after `milliseconds`, and then every
    /// `period` milliseconds when one is given, until removed.
    @discardableResult
    public func addTimer(
        afterMilliseconds milliseconds: Int, periodMilliseconds period: Int? = nil,
        handler: @escaping @Sendable () -> Void
    ) -> EventToken {
        let deadline = Self.now() + Int64(max(0, milliseconds))
        let token = state.withLock { state -> UInt64 in
            defer { state.nextToken += 1 }
            state.timers[state.nextToken] = Timer(
                deadline: deadline, period: period.map { Int64(max(1, $0)) }, handler: handler)
            return state.nextToken
        }
        wake.signal()
        return EventToken(token)
    }

    /// Runs `work` on the loop thread soon, in the order posted.
    public func post(_ work: @escaping @Sendable () -> Void) {
        state.withLock { $0.posted.append(work) }
        wake.signal()
    }

    /// The number of subscriptions and timers, for tests and diagnostics.
    public var subscriptionCount: Int { state.withLock { $0.subscriptions.count + $0.timers.count } }

    /// Makes `run` return after the handler now running, if any.
    func requestStop() {
        state.withLock { $0.stopping = true }
        wake.signal()
    }

    /// Dispatches events and timers until `requestStop`; an epoll failure,
    /// which only a bug can cause, ends the loop through `onFailure`.
    func run(onFailure: (String) -> Void) {
        while true {
            let timeout = state.withLock { state -> Int32 in
                guard let next = state.timers.values.map(\.deadline).min() else { return -1 }
                return Int32(clamping: max(0, next - Self.now()))
            }
            let events: [Epoll.Event]
            do { events = try epoll.wait(maxEvents: 32, timeoutMilliseconds: timeout) } catch {
                onFailure("event loop: \(error)")
                return
            }
            for event in events {
                if event.token == Self.wakeToken {
                    wake.drain()
                    continue
                }
                guard let handler = state.withLock({ $0.subscriptions[event.token]?.handler }) else { continue }
                var readiness: EventReadiness = []
                if event.readable { readiness.insert(.readable) }
                if event.writable { readiness.insert(.writable) }
                if event.hangup { readiness.insert(.hangup) }
                handler(readiness)
            }
            runDueTimers()
            let (posted, stopping) = state.withLock { state in
                defer { state.posted.removeAll() }
                return (state.posted, state.stopping)
            }
            for work in posted { work() }
            if stopping { return }
        }
    }

    private func runDueTimers() {
        let now = Self.now()
        let due = state.withLock { state -> [@Sendable () -> Void] in
            var handlers: [@Sendable () -> Void] = []
            for (token, timer) in state.timers where timer.deadline <= now {
                handlers.append(timer.handler)
                if let period = timer.period {
                    state.timers[token]?.deadline = now + period
                } else {
                    state.timers.removeValue(forKey: token)
                }
            }
            return handlers
        }
        for handler in due { handler() }
    }

    /// Milliseconds on the monotonic clock.
    static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }
}
