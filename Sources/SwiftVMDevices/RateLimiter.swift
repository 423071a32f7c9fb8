/// Firecracker's token bucket (`TokenBucket` in its `rate_limiter` module),
/// on an injected clock: `size` tokens at most, refilled at a constant rate
/// from empty to full in `refillTimeMilliseconds`, plus a one-time burst of
/// extra tokens that are spent first and never come back.
///
/// The rules, as Firecracker's:
/// - The bucket starts full, with its burst on top.
/// - A request takes from the burst first; one the burst covers wholly
///   leaves the budget alone. The rest comes from the budget.
/// - The budget refills lazily, only when a request finds it short: by the
///   tokens the time since the last refill produced (whole tokens; the
///   fraction carries over), at most to `size`. Idle time before the first
///   refill counts too, so a bucket that was full and idle for a refill time
///   gives a second bucketful once it runs dry.
/// - A request for more than `size` tokens is never refused (it could never
///   fit): it empties the budget and the excess is owed, which
///   ``RateLimiter`` turns into a block of `excess / size × refill time`.
/// - Otherwise a request the budget cannot cover after the refill fails and
///   takes nothing.
///
/// Times are nanoseconds on any monotonic clock the caller chooses.
public struct TokenBucket: Sendable, Equatable {
    /// What a bucket is made of: Firecracker's `TokenBucket` API object
    /// (`size`, `one_time_burst`, `refill_time`).
    public struct Configuration: Sendable, Hashable {
        public var size: UInt64
        public var oneTimeBurst: UInt64
        public var refillTimeMilliseconds: UInt64

        public init(size: UInt64, oneTimeBurst: UInt64 = 0, refillTimeMilliseconds: UInt64) {
            self.size = size
            self.oneTimeBurst = oneTimeBurst
            self.refillTimeMilliseconds = refillTimeMilliseconds
        }

        /// A bucket with no size or no refill time limits nothing (Firecracker
        /// then has no bucket), and neither does a refill time too long to
        /// count in nanoseconds.
        public var limits: Bool {
            size > 0 && refillTimeMilliseconds > 0 && refillTimeMilliseconds <= TokenBucket.maxRefillTimeMilliseconds
        }
    }

    /// What ``reduce(_:now:)`` did.
    public enum Reduction: Sendable, Equatable {
        /// The tokens were taken.
        case success
        /// Not enough tokens; nothing was taken.
        case failure
        /// A request for more than `size` tokens: the budget went to zero
        /// and `excess` tokens beyond it are owed.
        case overConsumption(excess: UInt64)
    }

    /// The longest refill time whose nanoseconds fit 64 bits.
    public static let maxRefillTimeMilliseconds = UInt64.max / nanosecondsPerMillisecond
    static let nanosecondsPerMillisecond: UInt64 = 1_000_000

    public let size: UInt64
    public let initialOneTimeBurst: UInt64
    public let refillTimeMilliseconds: UInt64
    /// What is left of the one-time burst.
    public private(set) var oneTimeBurst: UInt64
    /// The tokens in the bucket, not counting the burst, as of the last refill.
    public private(set) var budget: UInt64
    /// When the bucket last refilled (or last spent burst), in nanoseconds.
    public private(set) var lastUpdate: UInt64
    /// size / refill nanoseconds, reduced by their greatest common divisor.
    private let processedCapacity: UInt64
    private let processedRefillTime: UInt64

    /// A full bucket as of `now`; nil when `configuration` limits nothing.
    public init?(_ configuration: Configuration, now: UInt64) {
        guard configuration.limits else { return nil }
        size = configuration.size
        initialOneTimeBurst = configuration.oneTimeBurst
        oneTimeBurst = configuration.oneTimeBurst
        refillTimeMilliseconds = configuration.refillTimeMilliseconds
        budget = configuration.size
        lastUpdate = now
        let refill = refillTimeMilliseconds * Self.nanosecondsPerMillisecond
        let divisor = Self.gcd(size, refill)
        processedCapacity = size / divisor
        processedRefillTime = refill / divisor
    }

    public var configuration: Configuration {
        Configuration(size: size, oneTimeBurst: initialOneTimeBurst, refillTimeMilliseconds: refillTimeMilliseconds)
    }

    private var refillNanoseconds: UInt64 { refillTimeMilliseconds * Self.nanosecondsPerMillisecond }

    /// Takes `tokens` from the burst, then the budget (see the type's rules).
    public mutating func reduce(_ tokens: UInt64, now: UInt64) -> Reduction {
        var tokens = tokens
        if oneTimeBurst > 0 {
            if oneTimeBurst >= tokens {
                oneTimeBurst -= tokens
                lastUpdate = max(lastUpdate, now)
                return .success
            }
            tokens -= oneTimeBurst
            oneTimeBurst = 0
        }
        if tokens > budget {
            refill(now: now)
            if tokens > size {
                let excess = tokens - budget
                budget = 0
                return .overConsumption(excess: excess)
            }
            if tokens > budget { return .failure }
        }
        budget -= tokens
        return .success
    }

    /// Puts `tokens` back: into the burst while one is left (up to its
    /// initial size), else into the budget (up to `size`). Firecracker's
    /// `force_replenish`, which undoes a charge.
    public mutating func replenish(_ tokens: UInt64) {
        if oneTimeBurst > 0 {
            oneTimeBurst = min(Self.saturatingSum(oneTimeBurst, tokens), initialOneTimeBurst)
            return
        }
        budget = min(Self.saturatingSum(budget, tokens), size)
    }

    /// Adds what the time since the last refill produced.
    mutating func refill(now: UInt64) {
        guard now > lastUpdate else { return }
        let elapsed = now - lastUpdate
        if elapsed >= refillNanoseconds {
            budget = size
            lastUpdate = now
            return
        }
        let capacity = UInt128(processedCapacity)
        let refillTime = UInt128(processedRefillTime)
        let tokens = UInt128(elapsed) * capacity / refillTime
        // Advance by the time those whole tokens took, rounded up, so the
        // fraction of a token carries over to the next refill.
        let (quotient, remainder) = (tokens * refillTime).quotientAndRemainder(dividingBy: capacity)
        lastUpdate += UInt64(quotient + (remainder == 0 ? 0 : 1))
        budget = min(budget + UInt64(tokens), size)
    }

    /// Nanoseconds from `now` until a request for `tokens` would succeed:
    /// 0 when it would now (or it is larger than the bucket, which never
    /// waits), else the time the refill needs to make up the shortfall.
    public func nanosecondsUntilAvailable(_ tokens: UInt64, now: UInt64) -> UInt64 {
        guard tokens > oneTimeBurst else { return 0 }
        let fromBudget = tokens - oneTimeBurst
        guard fromBudget <= size else { return 0 }
        var bucket = self
        bucket.refill(now: now)
        guard fromBudget > bucket.budget else { return 0 }
        let needed = UInt128(fromBudget - bucket.budget)
        let (quotient, remainder) = (needed * UInt128(processedRefillTime))
            .quotientAndRemainder(dividingBy: UInt128(processedCapacity))
        let ready = UInt128(bucket.lastUpdate) + quotient + (remainder == 0 ? 0 : 1)
        return ready > UInt128(now) ? UInt64(clamping: ready - UInt128(now)) : 0
    }

    /// Nanoseconds the bucket takes to produce `tokens`: how long an
    /// over-consumption of that excess blocks (Firecracker's
    /// `excess / size × refill_time`).
    public func nanosecondsToProduce(_ tokens: UInt64) -> UInt64 {
        UInt64(clamping: UInt128(tokens) * UInt128(refillNanoseconds) / UInt128(size))
    }

    static func saturatingSum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }

    static func gcd(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var (x, y) = (a, b)
        while y != 0 { (x, y) = (y, x % y) }
        return x
    }
}

/// Firecracker's `RateLimiter`: a bandwidth bucket (bytes) and an operations
/// bucket, either or both, and a block that holds every request back after
/// a refusal or an over-consumption, on an injected clock.
///
/// Firecracker arms a timer when it blocks and unblocks when it fires: 100 ms
/// after a refusal, `excess / size × refill time` after an over-consumption.
/// Here the block is a deadline: after an over-consumption the same time;
/// after a refusal, the time the refill needs to cover the request that was
/// refused, so a device resumes exactly when it can go on rather than
/// re-checking every 100 ms. The average rate is the bucket's either way.
public struct RateLimiter: Sendable, Equatable {
    public enum TokenType: Sendable, Hashable {
        case bytes, operations
    }

    /// Both buckets' configurations; a nil or non-limiting bucket is no limit.
    public struct Configuration: Sendable, Hashable {
        public var bandwidth: TokenBucket.Configuration?
        public var ops: TokenBucket.Configuration?

        public init(bandwidth: TokenBucket.Configuration? = nil, ops: TokenBucket.Configuration? = nil) {
            self.bandwidth = bandwidth
            self.ops = ops
        }
    }

    /// A change to one bucket (Firecracker's `BucketUpdate`).
    public enum BucketUpdate: Sendable, Hashable {
        /// The bucket stays as it is, tokens and all.
        case unchanged
        /// No more limit of this kind.
        case disabled
        /// A new, full bucket; one that limits nothing disables the limit.
        case set(TokenBucket.Configuration)
    }

    public private(set) var bandwidth: TokenBucket?
    public private(set) var ops: TokenBucket?
    /// Until this time (nanoseconds) nothing may be consumed.
    public private(set) var blockedUntil: UInt64?

    public init(_ configuration: Configuration = Configuration(), now: UInt64) {
        bandwidth = configuration.bandwidth.flatMap { TokenBucket($0, now: now) }
        ops = configuration.ops.flatMap { TokenBucket($0, now: now) }
    }

    /// Whether neither bucket limits anything.
    public var isUnlimited: Bool { bandwidth == nil && ops == nil }

    public var configuration: Configuration {
        Configuration(bandwidth: bandwidth?.configuration, ops: ops?.configuration)
    }

    /// Whether consuming would be refused at `now` whatever the amount.
    public func isBlocked(now: UInt64) -> Bool {
        blockedUntil.map { now < $0 } ?? false
    }

    /// Nanoseconds from `now` until the block ends; nil when not blocked.
    public func blockedNanoseconds(now: UInt64) -> UInt64? {
        guard let until = blockedUntil, now < until else { return nil }
        return until - now
    }

    /// Takes `tokens` of `type`, Firecracker's `consume`: refused while
    /// blocked; a refusal blocks until the tokens will be there; an
    /// over-consumption succeeds and blocks until the excess is paid off.
    /// Always succeeds for a kind with no bucket.
    public mutating func consume(_ tokens: UInt64, _ type: TokenType, now: UInt64) -> Bool {
        if let until = blockedUntil {
            guard now >= until else { return false }
            blockedUntil = nil
        }
        guard var bucket = self[type] else { return true }
        defer { self[type] = bucket }
        switch bucket.reduce(tokens, now: now) {
        case .success:
            return true
        case .failure:
            blockedUntil = TokenBucket.saturatingSum(now, max(1, bucket.nanosecondsUntilAvailable(tokens, now: now)))
            return false
        case .overConsumption(let excess):
            let wait = bucket.nanosecondsToProduce(excess)
            if wait > 0 { blockedUntil = TokenBucket.saturatingSum(now, wait) }
            return true
        }
    }

    /// One request of `operations` operations and `bytes` bytes, charged as
    /// Firecracker's devices charge it: the operations first, then the bytes
    /// (none for a request that moves no data); when the bytes are refused,
    /// the operations are given back.
    public mutating func consume(operations: UInt64 = 1, bytes: UInt64, now: UInt64) -> Bool {
        guard consume(operations, .operations, now: now) else { return false }
        guard bytes > 0 else { return true }
        guard consume(bytes, .bytes, now: now) else {
            replenish(operations, .operations)
            return false
        }
        return true
    }

    /// Puts tokens back (Firecracker's `manual_replenish`).
    public mutating func replenish(_ tokens: UInt64, _ type: TokenType) {
        self[type]?.replenish(tokens)
    }

    /// Replaces or removes buckets (Firecracker's `update_buckets`): a new
    /// bucket starts full. The block ends too: it was worked out for the old
    /// buckets (Firecracker lets its timer run out instead).
    public mutating func update(bandwidth: BucketUpdate, ops: BucketUpdate, now: UInt64) {
        Self.apply(bandwidth, to: &self.bandwidth, now: now)
        Self.apply(ops, to: &self.ops, now: now)
        blockedUntil = nil
    }

    private static func apply(_ update: BucketUpdate, to bucket: inout TokenBucket?, now: UInt64) {
        switch update {
        case .unchanged: break
        case .disabled: bucket = nil
        case .set(let configuration): bucket = TokenBucket(configuration, now: now)
        }
    }

    private subscript(type: TokenType) -> TokenBucket? {
        get { type == .bytes ? bandwidth : ops }
        set {
            if type == .bytes { bandwidth = newValue } else { ops = newValue }
        }
    }

    /// Monotonic nanoseconds since the first call: the clock devices use
    /// unless given another.
    public static let monotonicNanoseconds: @Sendable () -> UInt64 = {
        let (seconds, attoseconds) = (ContinuousClock.now - clockEpoch).components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
    }
    private static let clockEpoch = ContinuousClock.now
}

/// A device queue's rate limiter as a device keeps it, in the device's own
/// locked state: the limiter, and the one-shot timer on the event registry
/// that resumes the queue once the limiter lets requests through again. A
/// request the limiter refuses is held by the device and offered again when
/// the timer fires; the guest's notifications in between find the limiter
/// blocked and return at once, so nothing spins.
struct LimiterGate {
    var limiter: RateLimiter
    private(set) var timer: EventToken?
    /// Tells a timer that still fires after it was cancelled from the current one.
    private var timerSerial: UInt64 = 0

    init(_ configuration: RateLimiter.Configuration, now: UInt64) {
        limiter = RateLimiter(configuration, now: now)
    }

    /// Charges one request. False: the device holds the request; unless a
    /// timer is already armed, one is, to call `resume(serial)` when the
    /// block ends (without an event registry the request waits for the
    /// next notification).
    mutating func admit(
        operations: UInt64 = 1, bytes: UInt64, clock: () -> UInt64, events: (any EventRegistry)?,
        resume: (UInt64) -> @Sendable () -> Void
    ) -> Bool {
        // The common case, no limit, does not read the clock.
        if limiter.isUnlimited { return true }
        let now = clock()
        if limiter.consume(operations: operations, bytes: bytes, now: now) { return true }
        armTimer(now: now, events: events, resume: resume)
        return false
    }

    private mutating func armTimer(now: UInt64, events: (any EventRegistry)?, resume: (UInt64) -> @Sendable () -> Void) {
        guard timer == nil, let events, let wait = limiter.blockedNanoseconds(now: now) else { return }
        // The loop counts whole milliseconds and may fire up to one early;
        // then the limiter is still blocked for a moment and the timer is
        // armed again.
        let milliseconds = Int(min((wait + 999_999) / 1_000_000, UInt64(Int32.max)))
        timerSerial += 1
        timer = events.addTimer(afterMilliseconds: max(1, milliseconds), periodMilliseconds: nil, handler: resume(timerSerial))
    }

    /// The timer with `serial` ran; true when it is the armed one.
    mutating func timerFired(serial: UInt64) -> Bool {
        guard timer != nil, serial == timerSerial else { return false }
        timer = nil
        return true
    }

    /// Removes an armed timer; true when there was one.
    @discardableResult
    mutating func cancelTimer(_ events: (any EventRegistry)?) -> Bool {
        guard let token = timer else { return false }
        events?.remove(token)
        timer = nil
        timerSerial += 1
        return true
    }
}
