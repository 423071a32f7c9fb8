import SwiftVMDevices
import Testing

/// Firecracker's token bucket and rate limiter rules, on a clock the tests
/// move by hand (nanoseconds).
@Suite("rate limiter")
struct RateLimiterTests {
    static let ms: UInt64 = 1_000_000
    static let second: UInt64 = 1_000_000_000
    /// Where the tests' clock starts: far from zero, as a monotonic clock is.
    static let t0: UInt64 = 1_000 * second

    static func bucket(size: UInt64, burst: UInt64 = 0, refillMs: UInt64, at now: UInt64 = t0) throws -> TokenBucket {
        try #require(TokenBucket(.init(size: size, oneTimeBurst: burst, refillTimeMilliseconds: refillMs), now: now))
    }

    // MARK: Token bucket

    @Test func aBucketWithoutSizeOrRefillTimeLimitsNothing() {
        #expect(TokenBucket(.init(size: 0, refillTimeMilliseconds: 100), now: 0) == nil)
        #expect(TokenBucket(.init(size: 100, refillTimeMilliseconds: 0), now: 0) == nil)
        #expect(TokenBucket(.init(size: 100, refillTimeMilliseconds: TokenBucket.maxRefillTimeMilliseconds + 1), now: 0) == nil)
        #expect(TokenBucket(.init(size: 100, refillTimeMilliseconds: TokenBucket.maxRefillTimeMilliseconds), now: 0) != nil)
        #expect(!TokenBucket.Configuration(size: 0, oneTimeBurst: 50, refillTimeMilliseconds: 10).limits)
    }

    @Test func aBucketStartsFullAndRefusesWhatItDoesNotHold() throws {
        var bucket = try Self.bucket(size: 1000, refillMs: 1000)
        #expect(bucket.budget == 1000)
        let r1 = bucket.reduce(600, now: Self.t0)
        #expect(r1 == .success)
        let r2 = bucket.reduce(400, now: Self.t0)
        #expect(r2 == .success)
        let r3 = bucket.reduce(1, now: Self.t0)
        #expect(r3 == .failure)
        #expect(bucket.budget == 0, "a refusal takes nothing")
    }

    @Test func theBudgetRefillsAtSizeOverRefillTimeAndCarriesFractions() throws {
        // 1000 tokens a second: one a millisecond.
        var bucket = try Self.bucket(size: 1000, refillMs: 1000)
        let r4 = bucket.reduce(1000, now: Self.t0)
        #expect(r4 == .success)
        let r5 = bucket.reduce(500, now: Self.t0 + 499 * Self.ms)
        #expect(r5 == .failure)
        #expect(bucket.budget == 499)
        let r6 = bucket.reduce(500, now: Self.t0 + 500 * Self.ms)
        #expect(r6 == .success)
        // 1.5 ms gives one whole token; the half carries over.
        let start = Self.t0 + 500 * Self.ms
        let r7 = bucket.reduce(2, now: start + 1_500_000)
        #expect(r7 == .failure)
        let r8 = bucket.reduce(1, now: start + 1_500_000)
        #expect(r8 == .success)
        let r9 = bucket.reduce(1, now: start + 2 * Self.ms)
        #expect(r9 == .success, "the half token carried over")
        let r10 = bucket.reduce(1, now: start + 2 * Self.ms)
        #expect(r10 == .failure)
    }

    @Test func theRefillStopsAtSize() throws {
        var bucket = try Self.bucket(size: 1000, refillMs: 1000)
        let r11 = bucket.reduce(1000, now: Self.t0)
        #expect(r11 == .success)
        let r12 = bucket.reduce(1000, now: Self.t0 + 10 * Self.second)
        #expect(r12 == .success)
        let r13 = bucket.reduce(1, now: Self.t0 + 10 * Self.second)
        #expect(r13 == .failure, "ten seconds still fill it once")
    }

    @Test("as in Firecracker, idle time before the first refill counts: a full bucket that sat idle refills at once when it runs dry")
    func idleTimeBeforeTheFirstRefillCounts() throws {
        var bucket = try Self.bucket(size: 1000, refillMs: 1000)
        let later = Self.t0 + 5 * Self.second
        let r14 = bucket.reduce(1000, now: later)
        #expect(r14 == .success)
        let r15 = bucket.reduce(1000, now: later + Self.ms)
        #expect(r15 == .success, "the refill counts from creation")
        let r16 = bucket.reduce(1, now: later + Self.ms)
        #expect(r16 == .failure)
    }

    @Test func theOneTimeBurstIsSpentFirstAndNeverRefills() throws {
        var bucket = try Self.bucket(size: 100, burst: 50, refillMs: 1000)
        let r17 = bucket.reduce(30, now: Self.t0)
        #expect(r17 == .success)
        #expect(bucket.oneTimeBurst == 20)
        #expect(bucket.budget == 100, "a request the burst covers leaves the budget alone")
        let r18 = bucket.reduce(40, now: Self.t0)
        #expect(r18 == .success)
        #expect(bucket.oneTimeBurst == 0)
        #expect(bucket.budget == 80, "20 from the burst, 20 from the budget")
        let r19 = bucket.reduce(80, now: Self.t0 + 10 * Self.second)
        #expect(r19 == .success)
        let r20 = bucket.reduce(1, now: Self.t0 + 10 * Self.second)
        #expect(r20 == .success, "refilled")
        #expect(bucket.oneTimeBurst == 0, "the burst does not come back")
        #expect(bucket.configuration == .init(size: 100, oneTimeBurst: 50, refillTimeMilliseconds: 1000))
    }

    @Test("a request larger than the bucket is allowed, full or not: it empties the budget and owes the rest")
    func overConsumption() throws {
        var full = try Self.bucket(size: 100, refillMs: 1000)
        let r21 = full.reduce(250, now: Self.t0)
        #expect(r21 == .overConsumption(excess: 150))
        #expect(full.budget == 0)
        #expect(full.nanosecondsToProduce(150) == 1_500 * Self.ms, "1.5 bucketfuls take 1.5 refill times")

        var partial = try Self.bucket(size: 100, refillMs: 1000)
        let r22 = partial.reduce(60, now: Self.t0)
        #expect(r22 == .success)
        let r23 = partial.reduce(250, now: Self.t0)
        #expect(r23 == .overConsumption(excess: 210))
        #expect(partial.budget == 0)

        var withBurst = try Self.bucket(size: 100, burst: 100, refillMs: 1000)
        let r24 = withBurst.reduce(150, now: Self.t0)
        #expect(r24 == .success, "the burst and the budget together cover it")
        #expect(withBurst.budget == 50)
    }

    @Test func theTimeUntilEnoughTokens() throws {
        var bucket = try Self.bucket(size: 1000, burst: 10, refillMs: 1000)
        #expect(bucket.nanosecondsUntilAvailable(1010, now: Self.t0) == 0, "the burst and the full budget")
        let r25 = bucket.reduce(1010, now: Self.t0)
        #expect(r25 == .success)
        #expect(bucket.nanosecondsUntilAvailable(250, now: Self.t0) == 250 * Self.ms)
        #expect(bucket.nanosecondsUntilAvailable(250, now: Self.t0 + 100 * Self.ms) == 150 * Self.ms)
        #expect(bucket.nanosecondsUntilAvailable(1000, now: Self.t0) == Self.second, "a whole refill")
        #expect(bucket.nanosecondsUntilAvailable(5000, now: Self.t0) == 0, "larger than the bucket: never waits")
        let r26 = bucket.reduce(250, now: Self.t0 + 250 * Self.ms)
        #expect(r26 == .success, "exactly then")
        // 3 tokens a second: a token every 333.33 ms, rounded up.
        var slow = try Self.bucket(size: 3, refillMs: 1000)
        let r27 = slow.reduce(3, now: Self.t0)
        #expect(r27 == .success)
        let wait = slow.nanosecondsUntilAvailable(1, now: Self.t0)
        #expect(wait == 333_333_334)
        let r28 = slow.reduce(1, now: Self.t0 + wait - 1)
        #expect(r28 == .failure)
        let r29 = slow.reduce(1, now: Self.t0 + wait)
        #expect(r29 == .success)
    }

    @Test func replenishingGivesBackToTheBurstWhileThereIsOneElseToTheBudget() throws {
        var bucket = try Self.bucket(size: 100, burst: 20, refillMs: 1000)
        let r30 = bucket.reduce(10, now: Self.t0)
        #expect(r30 == .success)
        bucket.replenish(50)
        #expect(bucket.oneTimeBurst == 20, "at most the initial burst")
        let r31 = bucket.reduce(50, now: Self.t0)
        #expect(r31 == .success)
        #expect(bucket.budget == 70)
        bucket.replenish(UInt64.max)
        #expect(bucket.budget == 100, "at most the size, without overflow")
    }

    @Test func hugeValuesDoNotOverflow() throws {
        var bucket = try Self.bucket(size: UInt64.max, refillMs: TokenBucket.maxRefillTimeMilliseconds)
        let r32 = bucket.reduce(UInt64.max, now: Self.t0)
        #expect(r32 == .success)
        let r33 = bucket.reduce(1, now: Self.t0 + Self.second)
        #expect(r33 == .success)
        #expect(bucket.nanosecondsUntilAvailable(UInt64.max, now: Self.t0 + Self.second) > 0)
        var tiny = try Self.bucket(size: 1, refillMs: 1)
        let r34 = tiny.reduce(UInt64.max, now: Self.t0)
        #expect(r34 == .overConsumption(excess: UInt64.max - 1))
        #expect(tiny.nanosecondsToProduce(UInt64.max) == UInt64.max, "clamped")
    }

    // MARK: Rate limiter

    static func limiter(bandwidth: TokenBucket.Configuration? = nil, ops: TokenBucket.Configuration? = nil) -> RateLimiter {
        RateLimiter(.init(bandwidth: bandwidth, ops: ops), now: t0)
    }

    @Test func withoutBucketsEverythingPasses() {
        var limiter = Self.limiter()
        #expect(limiter.isUnlimited)
        for _ in 0..<100 {
            let passed = limiter.consume(operations: 1, bytes: 1 << 30, now: Self.t0)
            #expect(passed)
        }
        var zero = Self.limiter(bandwidth: .init(size: 0, refillTimeMilliseconds: 100), ops: .init(size: 5, refillTimeMilliseconds: 0))
        #expect(zero.isUnlimited)
        let r36 = zero.consume(operations: 9, bytes: 9, now: Self.t0)
        #expect(r36)
    }

    @Test("a refusal blocks every kind of token until the refused request would fit")
    func aRefusalBlocksUntilTheTokensAreThere() {
        var limiter = Self.limiter(bandwidth: .init(size: 1000, refillTimeMilliseconds: 1000))
        let r37 = limiter.consume(800, .bytes, now: Self.t0)
        #expect(r37)
        let r38 = limiter.consume(500, .bytes, now: Self.t0)
        #expect(!r38)
        #expect(limiter.blockedNanoseconds(now: Self.t0) == 300 * Self.ms)
        #expect(limiter.isBlocked(now: Self.t0 + 299 * Self.ms))
        let r39 = limiter.consume(1, .bytes, now: Self.t0 + 100 * Self.ms)
        #expect(!r39, "blocked: even one byte waits")
        let r40 = limiter.consume(1, .operations, now: Self.t0 + 100 * Self.ms)
        #expect(!r40, "blocked: operations too")
        let r41 = limiter.consume(500, .bytes, now: Self.t0 + 300 * Self.ms)
        #expect(r41)
        #expect(limiter.blockedUntil == nil)
    }

    @Test("an over-consumption passes, then blocks for excess / size x refill time")
    func overConsumptionBlocks() {
        var limiter = Self.limiter(bandwidth: .init(size: 4096, refillTimeMilliseconds: 100))
        let r42 = limiter.consume(12288, .bytes, now: Self.t0)
        #expect(r42, "three bucketfuls at once")
        #expect(limiter.blockedNanoseconds(now: Self.t0) == 200 * Self.ms)
        let r43 = limiter.consume(1, .bytes, now: Self.t0 + 199 * Self.ms)
        #expect(!r43)
        let r44 = limiter.consume(4096, .bytes, now: Self.t0 + 300 * Self.ms)
        #expect(r44, "the bucket refilled meanwhile")
    }

    @Test func aRequestChargesOperationsThenBytesAndGivesTheOperationsBackWhenTheBytesAreRefused() {
        var limiter = Self.limiter(bandwidth: .init(size: 1000, refillTimeMilliseconds: 1000), ops: .init(size: 10, refillTimeMilliseconds: 1000))
        let r45 = limiter.consume(operations: 1, bytes: 900, now: Self.t0)
        #expect(r45)
        #expect(limiter.ops?.budget == 9)
        let r46 = limiter.consume(operations: 1, bytes: 200, now: Self.t0)
        #expect(!r46)
        #expect(limiter.ops?.budget == 9, "the operation was given back")
        #expect(limiter.bandwidth?.budget == 100)
        #expect(limiter.blockedNanoseconds(now: Self.t0) == 100 * Self.ms)
        let r47 = limiter.consume(operations: 1, bytes: 0, now: Self.t0 + 100 * Self.ms)
        #expect(r47, "a request without data costs no bytes")
        #expect(limiter.ops?.budget == 8)
        #expect(limiter.bandwidth?.budget == 100, "not refilled: no bytes were asked for")

        var opsOnly = Self.limiter(ops: .init(size: 2, refillTimeMilliseconds: 1000))
        let r48 = opsOnly.consume(operations: 1, bytes: 1 << 20, now: Self.t0)
        #expect(r48)
        let r49 = opsOnly.consume(operations: 1, bytes: 1 << 20, now: Self.t0)
        #expect(r49)
        let r50 = opsOnly.consume(operations: 1, bytes: 1, now: Self.t0)
        #expect(!r50)
        #expect(opsOnly.blockedNanoseconds(now: Self.t0) == 500 * Self.ms, "one operation every 500 ms")
    }

    @Test func updatesReplaceBucketsFullAndEndTheBlock() {
        var limiter = Self.limiter(bandwidth: .init(size: 100, refillTimeMilliseconds: 1000), ops: .init(size: 10, refillTimeMilliseconds: 1000))
        let r51 = limiter.consume(operations: 1, bytes: 100, now: Self.t0)
        #expect(r51)
        let r52 = limiter.consume(operations: 1, bytes: 100, now: Self.t0)
        #expect(!r52)
        limiter.update(bandwidth: .set(.init(size: 500, refillTimeMilliseconds: 1000)), ops: .unchanged, now: Self.t0)
        #expect(limiter.blockedUntil == nil)
        #expect(limiter.bandwidth?.budget == 500, "a new bucket starts full")
        #expect(limiter.ops?.budget == 9, "an unchanged bucket keeps its tokens")
        limiter.update(bandwidth: .disabled, ops: .set(.init(size: 0, refillTimeMilliseconds: 1000)), now: Self.t0)
        #expect(limiter.isUnlimited, "disabled, and a bucket that limits nothing disables")
        #expect(limiter.configuration == .init())
    }

    /// A device's loop: each 4 KiB request is retried at the end of the
    /// block, as the device's timer does. Returns the seconds 4 MiB take.
    @Test("a 1 MiB/s bucket moves 4 MiB in 4 KiB requests in 3 s: the first MiB at once, the rest at the refill rate")
    func sustainedRate() {
        var limiter = Self.limiter(bandwidth: .init(size: 1 << 20, refillTimeMilliseconds: 1000))
        var now = Self.t0
        var moved: UInt64 = 0
        var wakeUps = 0
        while moved < 4 << 20 {
            if limiter.consume(operations: 1, bytes: 4096, now: now) {
                moved += 4096
            } else {
                now += limiter.blockedNanoseconds(now: now) ?? 0
                wakeUps += 1
            }
        }
        let seconds = Double(now - Self.t0) / 1e9
        #expect(seconds > 2.99 && seconds < 3.01, "\(seconds) s")
        #expect(wakeUps == 768, "one per refused request, none wasted")
    }
}
