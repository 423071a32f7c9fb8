/// What a subscriber wants to hear about a file descriptor.
public struct EventInterest: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let readable = EventInterest(rawValue: 1 << 0)
    public static let writable = EventInterest(rawValue: 1 << 1)
    /// Report each readiness change once (epoll's EPOLLET), rather than for
    /// as long as the condition lasts; the handler must then drain the
    /// descriptor until it would block.
    public static let edgeTriggered = EventInterest(rawValue: 1 << 2)
}

/// What happened to a subscribed file descriptor.
public struct EventReadiness: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let readable = EventReadiness(rawValue: 1 << 0)
    public static let writable = EventReadiness(rawValue: 1 << 1)
    /// The other end hung up or the descriptor is in error.
    public static let hangup = EventReadiness(rawValue: 1 << 2)
}

/// Names one subscription or timer, to change or remove it.
public struct EventToken: Hashable, Sendable, CustomStringConvertible {
    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public var description: String { "event \(value)" }
}

/// The VMM's event loop as a device's back end sees it (a tap, a Unix
/// socket, a timer, I/O completions): handlers run on the loop's thread, one
/// at a time, together with the device's queue notifications, so they never
/// race the device's own queue processing. They must not block.
public protocol EventRegistry: AnyObject, Sendable {
    /// Watches `fd` for `interest`; the descriptor stays the caller's, who
    /// removes the subscription before closing it.
    func subscribe(_ fd: Int32, interest: EventInterest, handler: @escaping @Sendable (EventReadiness) -> Void) throws
        -> EventToken
    /// Changes what a subscription waits for.
    func modify(_ token: EventToken, interest: EventInterest) throws
    /// Removes a subscription or cancels a timer.
    func remove(_ token: EventToken)
    /// Calls `handler` after `milliseconds`, then every `periodMilliseconds` if given.
    func addTimer(afterMilliseconds milliseconds: Int, periodMilliseconds: Int?, handler: @escaping @Sendable () -> Void)
        -> EventToken
    /// Runs `work` on the loop thread soon.
    func post(_ work: @escaping @Sendable () -> Void)
}
