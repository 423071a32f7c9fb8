import Synchronization
import SwiftVMMemory

/// A virtio entropy device (virtio 1.2 §5.4, device ID 4): one queue whose
/// device-writable buffers the device fills with random bytes. It has no
/// device-specific features and no config space.
///
/// A rate limiter (Firecracker's: bytes are what a request is given, each
/// request is one operation) holds back the request it refuses and stops
/// taking requests until a one-shot timer on the event registry resumes the
/// queue.
public final class VirtioRNG: VirtioDevice, DeviceCountersOwner {
    /// What the device counts, for metrics.
    public enum Counter: String, CaseIterable, Sendable {
        case requests, bytes, errors
        /// Requests the rate limiter held back (Firecracker's name).
        case throttled = "entropy_rate_limiter_throttled"
    }
    public let counters = DeviceCounters(Counter.self)

    /// Fills the buffer with random bytes; returns false if it could not.
    public typealias EntropySource = @Sendable (UnsafeMutableRawBufferPointer) -> Bool

    /// Bytes served per request at most, so one guest request cannot keep the
    /// event loop busy for long.
    public static let maxBytesPerRequest = 64 * 1024
    public static let queueSize: UInt16 = 256

    /// The host's CSPRNG. The standard library's system generator is
    /// `getrandom(2)` on Linux; Glibc's Swift module does not export
    /// `getrandom` itself.
    public static let hostEntropy: EntropySource = { buffer in
        var generator = SystemRandomNumberGenerator()
        var offset = 0
        while offset < buffer.count {
            let word = generator.next()
            let count = min(8, buffer.count - offset)
            withUnsafeBytes(of: word) { bytes in
                UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<(offset + count)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<count]))
            }
            offset += count
        }
        return true
    }

    private let entropy: EntropySource
    private let state: Mutex<State>
    /// Monotonic nanoseconds, for the rate limiter.
    private let clock: @Sendable () -> UInt64

    struct State {
        var activation: VirtioActivation?
        /// Counts activations and resets, for timers that fire late.
        var generation: UInt64 = 0
        var gate: LimiterGate
        /// The request the rate limiter refused, served first on resuming.
        var held: DescriptorChain?
    }

    /// - Parameters:
    ///   - rateLimiter: bytes and requests the guest may take; no limit by default.
    ///   - clock: monotonic nanoseconds, for the rate limiter.
    public init(
        entropy: @escaping EntropySource = VirtioRNG.hostEntropy, rateLimiter: RateLimiter.Configuration = .init(),
        clock: @escaping @Sendable () -> UInt64 = RateLimiter.monotonicNanoseconds
    ) {
        self.entropy = entropy
        self.clock = clock
        self.state = Mutex(State(gate: LimiterGate(rateLimiter, now: clock())))
    }

    public var deviceType: UInt32 { VirtioDeviceType.entropy }
    public var offeredFeatures: UInt64 {
        VirtioFeature.version1 | VirtioFeature.eventIndex | VirtioFeature.indirectDescriptors
    }
    public var queueMaxSizes: [UInt16] { [Self.queueSize] }

    public func readConfig(at offset: Int, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0)
    }

    public func writeConfig(at offset: Int, from data: UnsafeRawBufferPointer) {
        Log.warning("virtio-rng: write to config space at 0x\(String(offset, radix: 16)) ignored; it has none")
    }

    public func activate(_ activation: VirtioActivation) {
        state.withLock { s in
            s.generation += 1
            s.activation = activation
        }
    }

    public func reset() {
        state.withLock { s in
            s.gate.cancelTimer(s.activation?.events)
            s.held = nil
            s.activation = nil
            s.generation += 1
        }
    }

    @discardableResult
    public func process(queue index: Int) -> Bool {
        guard let (activation, generation) = state.withLock({ s in s.activation.map { ($0, s.generation) } }) else {
            return false
        }
        return pass(queue: index, activation, generation: generation)
    }

    /// The rate limiter now: its buckets, their tokens, and any block.
    public var rateLimiter: RateLimiter { state.withLock { $0.gate.limiter } }

    /// Changes the rate limiter while the device runs; new buckets start
    /// full, and a queue held back by the old limiter is served again at
    /// once, on the event loop. Any thread.
    public func updateRateLimiter(bandwidth: RateLimiter.BucketUpdate, ops: RateLimiter.BucketUpdate) {
        let resume = state.withLock { s -> ((any EventRegistry), UInt64)? in
            s.gate.limiter.update(bandwidth: bandwidth, ops: ops, now: clock())
            let events = s.activation?.events
            guard s.gate.cancelTimer(events) || s.held != nil, let events else { return nil }
            return (events, s.generation)
        }
        guard let (events, generation) = resume else { return }
        events.post { [weak self] in self?.resume(generation: generation, serial: nil) }
    }

    /// One bounded pass: the held request first, then new ones, each charged
    /// to the rate limiter before it is filled. True when it stopped at the
    /// per-pass limit.
    private func pass(queue index: Int, _ activation: VirtioActivation, generation: UInt64) -> Bool {
        guard let queue = activation.queue(at: index) else { return false }
        for _ in 0..<VirtioActivation.requestsPerPass {
            let chain: DescriptorChain
            let outcome = state.withLock { s -> (chain: DescriptorChain?, stop: Bool) in
                guard s.generation == generation else { return (nil, true) }
                guard let held = s.held else { return (nil, false) }
                guard charge(held, &s, activation, generation: generation) else { return (nil, true) }
                s.held = nil
                return (held, false)
            }
            if outcome.stop { return false }
            if let held = outcome.chain {
                chain = held
            } else {
                guard let popped = queue.popAvailable() else { return false }
                let admitted = state.withLock { s -> Bool in
                    guard s.generation == generation else { return false }
                    if charge(popped, &s, activation, generation: generation) { return true }
                    s.held = popped
                    counters.add(Counter.throttled)
                    return false
                }
                guard admitted else { return false }
                chain = popped
            }
            queue.addUsed(head: chain.head, length: fill(chain, memory: activation.memory))
        }
        return true
    }

    /// The bytes a request is given: its writable buffers, up to the per-request limit.
    private static func bytes(of chain: DescriptorChain) -> UInt64 {
        min(chain.writableLength, UInt64(maxBytesPerRequest))
    }

    private func charge(_ chain: DescriptorChain, _ s: inout State, _ activation: VirtioActivation, generation: UInt64) -> Bool {
        s.gate.admit(bytes: Self.bytes(of: chain), clock: clock, events: activation.events) { serial in
            { [weak self] in self?.resume(generation: generation, serial: serial) }
        }
    }

    /// The limiter's timer fired (or the limiter changed): serve the queue
    /// again and do what the transport does after a pass.
    private func resume(generation: UInt64, serial: UInt64?) {
        let activation = state.withLock { s -> VirtioActivation? in
            guard s.generation == generation else { return nil }
            if let serial { _ = s.gate.timerFired(serial: serial) }
            return s.activation
        }
        guard let activation, let queue = activation.queue(at: 0) else { return }
        let more = pass(queue: 0, activation, generation: generation)
        activation.finishPass(on: queue, index: 0, more: more) { [weak self] in
            self?.resume(generation: generation, serial: nil)
        }
    }

    /// Fills the chain's writable buffers, up to ``maxBytesPerRequest`` in
    /// all; readable buffers carry nothing for this device and are skipped.
    private func fill(_ chain: DescriptorChain, memory: GuestMemory) -> UInt32 {
        var cursor = GuestBufferCursor(memory: memory, buffers: chain.writable)
        var written = 0
        while written < Self.maxBytesPerRequest {
            let segment: UnsafeMutableRawBufferPointer
            do {
                guard let next = try cursor.nextSegment(limit: UInt64(Self.maxBytesPerRequest - written)) else { break }
                segment = next
            } catch {
                Log.warning("virtio-rng: \(error)")
                break
            }
            guard entropy(segment) else {
                Log.warning("virtio-rng: the entropy source failed; request \(chain.head) gets \(written) bytes")
                counters.add(Counter.errors)
                break
            }
            written += segment.count
        }
        counters.add(Counter.requests)
        counters.add(Counter.bytes, UInt64(written))
        return UInt32(written)
    }
}
