import SwiftVMDevices
import SwiftVMMemory
import Synchronization
import Testing

/// An event loop on a clock the test moves: one-shot timers come due when
/// the clock reaches them, as the VMM's loop runs them, and posted work runs
/// after them. The same clock is the devices' (nanoseconds).
final class ManualEventLoop: EventRegistry {
    struct Timer {
        var token: EventToken
        var milliseconds: Int
        var deadline: UInt64
        var handler: @Sendable () -> Void
    }

    private struct State {
        var now: UInt64 = 1_000 * 1_000_000_000
        var next: UInt64 = 1
        var timers: [Timer] = []
        var subscriptions: [Int32: @Sendable (EventReadiness) -> Void] = [:]
        var posted: [@Sendable () -> Void] = []
        var timersArmed = 0
    }

    private let state = Mutex(State())

    var now: UInt64 { state.withLock { $0.now } }
    var clock: @Sendable () -> UInt64 { { [self] in self.now } }
    /// The armed timers' delays, in milliseconds.
    var timers: [Int] { state.withLock { $0.timers.map(\.milliseconds) } }
    /// Timers armed since the loop was made.
    var timersArmed: Int { state.withLock { $0.timersArmed } }
    var postedCount: Int { state.withLock { $0.posted.count } }

    func subscribe(_ fd: Int32, interest: EventInterest, handler: @escaping @Sendable (EventReadiness) -> Void) throws
        -> EventToken
    {
        state.withLock { s in
            defer { s.next += 1 }
            s.subscriptions[fd] = handler
            return EventToken(s.next)
        }
    }

    func modify(_ token: EventToken, interest: EventInterest) throws {}

    func remove(_ token: EventToken) {
        state.withLock { $0.timers.removeAll { $0.token == token } }
    }

    func addTimer(afterMilliseconds milliseconds: Int, periodMilliseconds: Int?, handler: @escaping @Sendable () -> Void)
        -> EventToken
    {
        state.withLock { s in
            let token = EventToken(s.next)
            s.next += 1
            s.timersArmed += 1
            s.timers.append(Timer(
                token: token, milliseconds: milliseconds, deadline: s.now + UInt64(milliseconds) * 1_000_000, handler: handler))
            return token
        }
    }

    func post(_ work: @escaping @Sendable () -> Void) {
        state.withLock { $0.posted.append(work) }
    }

    /// Calls the handler subscribed on `fd`.
    func fire(_ fd: Int32, _ readiness: EventReadiness = .readable) {
        state.withLock { $0.subscriptions[fd] }?(readiness)
    }

    /// Runs the posted work, and the work that posts, until none is left.
    func runPosted() {
        while true {
            let work = state.withLock { s in
                defer { s.posted.removeAll() }
                return s.posted
            }
            if work.isEmpty { return }
            for item in work { item() }
        }
    }

    /// Moves the clock on by `milliseconds`, one millisecond at a time,
    /// running each timer when it comes due and the posted work after it.
    func advance(milliseconds: Int) {
        for _ in 0..<milliseconds {
            let due = state.withLock { s -> [Timer] in
                s.now += 1_000_000
                let now = s.now
                let due = s.timers.filter { $0.deadline <= now }
                s.timers.removeAll { $0.deadline <= now }
                return due
            }
            for timer in due { timer.handler() }
            runPosted()
        }
    }
}

/// Rate limiters in the block, entropy and network devices: a refused
/// request is held, the queue stops, a one-shot timer resumes it, and
/// nothing is lost or reordered.
@Suite("device rate limiters")
struct DeviceRateLimiterTests {
    typealias T = VirtioBlock.RequestType

    /// A block device behind the transport with `limiter`, on a manual loop.
    struct Block {
        let loop = ManualEventLoop()
        let device: VirtioBlock
        let driver: MMIODriver
        let queue: MockDriverQueue

        init(_ limiter: RateLimiter.Configuration) throws {
            device = try VirtioBlock(
                config: BlockDriveConfig(id: "limited"), backend: InMemoryBlockBackend(bytes: BlockRig.diskPattern(64 * 512)),
                rateLimiter: limiter, clock: loop.clock)
            driver = try MMIODriver(device: device, events: loop)
            queue = try MockDriverQueue(memory: driver.memory, size: 16)
            #expect(driver.initialize(queues: [queue]) & MMIODriver.Status.driverOK != 0)
        }

        /// Submits a read of `sectors` sectors at `sector`; returns its head,
        /// status byte and data buffer.
        func read(sector: UInt64, sectors: Int = 1) throws -> (head: UInt16, status: GuestAddress, data: GuestAddress) {
            let header = try queue.allocate(bytes: BlockRig.header(type: T.read, sector: sector))
            let data = try queue.allocate(sectors * 512)
            let status = try queue.allocate(1, fill: 0xff)
            let head = try queue.addChain([.readable(header, 16), .writable(data, sectors * 512), .writable(status, 1)])
            try queue.makeAvailable(head)
            return (head, status, data)
        }

        var throttled: UInt64 { device.counters[VirtioBlock.Counter.throttled.rawValue] ?? 0 }
    }

    @Test("block: a throttled queue stops, the guest's kicks do not spin, the timer resumes it, and every request completes in order")
    func blockPausesAndResumes() throws {
        // Two requests a second: two at once, then one every 500 ms.
        let rig = try Block(.init(ops: .init(size: 2, refillTimeMilliseconds: 1000)))
        let requests = try (0..<5).map { try rig.read(sector: UInt64($0)) }
        rig.driver.kick()
        #expect(try rig.queue.takeUsed().map(\.id) == [0, 3].map(UInt32.init), "two pass, the third is held")
        #expect(rig.loop.timers == [500], "one timer, for when the next operation is there")
        #expect(rig.throttled == 1)
        // The driver wants an interrupt for the next used request (EVENT_IDX).
        try rig.queue.setUsedEvent(2)
        let interrupts = rig.driver.interrupt.count
        for _ in 0..<10 { rig.driver.kick() }
        #expect(try rig.queue.takeUsed().isEmpty, "kicks while throttled serve nothing")
        #expect(rig.loop.timersArmed == 1, "and arm no more timers")
        #expect(rig.throttled == 1, "the held request is counted once")

        rig.loop.advance(milliseconds: 499)
        #expect(try rig.queue.takeUsed().isEmpty)
        rig.loop.advance(milliseconds: 1)
        #expect(try rig.queue.takeUsed().map(\.id) == [UInt32(requests[2].head)], "resumed by the timer")
        #expect(rig.driver.interrupt.count > interrupts, "and the guest was told")
        rig.loop.advance(milliseconds: 499)
        #expect(try rig.queue.takeUsed().isEmpty)
        rig.loop.advance(milliseconds: 501)
        #expect(try rig.queue.takeUsed().map(\.id) == requests[3...].map { UInt32($0.head) })
        #expect(rig.loop.timers.isEmpty, "nothing waits, nothing is armed")
        for (index, request) in requests.enumerated() {
            #expect(try rig.driver.memory.load(UInt8.self, at: request.status) == VirtioBlock.RequestStatus.ok)
            #expect(try rig.driver.memory.read(at: request.data, count: 512) == BlockRig.diskPattern(512, from: index * 512))
        }
        #expect(rig.device.counters[VirtioBlock.Counter.requests.rawValue] == 5)
        #expect(rig.throttled == 3)
    }

    @Test("block: bytes are the request's data; a request larger than the bucket passes and blocks the next for the excess")
    func blockBandwidth() throws {
        let rig = try Block(.init(bandwidth: .init(size: 4096, refillTimeMilliseconds: 100)))
        let large = try rig.read(sector: 0, sectors: 16)  // 8 KiB: twice the bucket
        let small = try rig.read(sector: 20)
        rig.driver.kick()
        #expect(try rig.queue.takeUsed().map(\.id) == [UInt32(large.head)])
        #expect(rig.loop.timers == [100], "the 4 KiB owed take 100 ms")
        rig.loop.advance(milliseconds: 100)
        #expect(try rig.queue.takeUsed().map(\.id) == [UInt32(small.head)])
        #expect(try rig.driver.memory.read(at: small.data, count: 512) == BlockRig.diskPattern(512, from: 20 * 512))
    }

    @Test("block: a request without data (get-id) costs an operation and no bytes")
    func blockGetIDCostsNoBytes() throws {
        let rig = try Block(.init(bandwidth: .init(size: 512, refillTimeMilliseconds: 1000)))
        _ = try rig.read(sector: 0)
        for _ in 0..<3 {
            let header = try rig.queue.allocate(bytes: BlockRig.header(type: T.getID, sector: 0))
            let serial = try rig.queue.allocate(21)
            try rig.queue.makeAvailable(try rig.queue.addChain([.readable(header, 16), .writable(serial, 21)]))
        }
        rig.driver.kick()
        #expect(try rig.queue.takeUsed().count == 4, "the bucket's 512 bytes went to the read")
        #expect(rig.throttled == 0)
    }

    @Test("block: changing the limiter of a throttled queue serves it at once, from the loop")
    func blockUpdateResumes() throws {
        let rig = try Block(.init(ops: .init(size: 1, refillTimeMilliseconds: 60_000)))
        for sector in 0..<4 { _ = try rig.read(sector: UInt64(sector)) }
        rig.driver.kick()
        #expect(try rig.queue.takeUsed().count == 1)
        #expect(rig.loop.timers == [60_000])
        rig.device.updateRateLimiter(bandwidth: .unchanged, ops: .set(.init(size: 100, refillTimeMilliseconds: 1000)))
        #expect(rig.loop.timers.isEmpty, "the old limiter's timer is gone")
        #expect(rig.device.rateLimiter.ops?.size == 100)
        #expect(try rig.queue.takeUsed().isEmpty, "nothing happens on the caller's thread")
        rig.loop.runPosted()
        #expect(try rig.queue.takeUsed().count == 3)
        rig.device.updateRateLimiter(bandwidth: .unchanged, ops: .disabled)
        #expect(rig.device.rateLimiter.isUnlimited)
        #expect(rig.loop.postedCount == 0, "nothing was waiting")
    }

    @Test("block: a reset drops the held request and its timer; the driver starts afresh")
    func blockResetWhileThrottled() throws {
        let rig = try Block(.init(ops: .init(size: 1, refillTimeMilliseconds: 1000)))
        _ = try rig.read(sector: 0)
        _ = try rig.read(sector: 1)
        rig.driver.kick()
        #expect(try rig.queue.takeUsed().count == 1)
        #expect(rig.loop.timers.count == 1)
        rig.driver.write(MMIODriver.Register.status, 0)
        #expect(rig.loop.timers.isEmpty)
        rig.loop.advance(milliseconds: 2000)
        let fresh = try MockDriverQueue(memory: rig.driver.memory, size: 16, base: 0x4_0000, data: 0x40_0000)
        #expect(rig.driver.initialize(queues: [fresh]) & MMIODriver.Status.driverOK != 0)
        let header = try fresh.allocate(bytes: BlockRig.header(type: T.read, sector: 2))
        let data = try fresh.allocate(512)
        let status = try fresh.allocate(1, fill: 0xff)
        try fresh.makeAvailable(try fresh.addChain([.readable(header, 16), .writable(data, 512), .writable(status, 1)]))
        rig.driver.kick()
        #expect(try fresh.takeUsed().count == 1, "the bucket refilled while the device was reset")
        #expect(try rig.driver.memory.load(UInt8.self, at: status) == VirtioBlock.RequestStatus.ok)
    }

    @Test func blockCountersNameTheThrottledEventsAsFirecrackerDoes() throws {
        let rig = try Block(.init())
        #expect(rig.device.counters.names.last == "rate_limiter_throttled_events")
    }

    // MARK: Entropy

    @Test("entropy: bytes are what each request is given; held requests resume from the timer")
    func entropyBandwidth() throws {
        let loop = ManualEventLoop()
        let device = VirtioRNG(
            entropy: { buffer in
                buffer.initializeMemory(as: UInt8.self, repeating: 0x5a)
                return true
            }, rateLimiter: .init(bandwidth: .init(size: 64, refillTimeMilliseconds: 100)), clock: loop.clock)
        let driver = try MMIODriver(device: device, events: loop)
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.initialize(queues: [queue])
        var buffers: [GuestAddress] = []
        for _ in 0..<3 {
            let buffer = try queue.allocate(64)
            try queue.makeAvailable(try queue.addChain([.writable(buffer, 64)]))
            buffers.append(buffer)
        }
        driver.kick()
        #expect(try queue.takeUsed().map(\.length) == [64])
        #expect(loop.timers == [100])
        driver.kick()
        #expect(try queue.takeUsed().isEmpty)
        loop.advance(milliseconds: 100)
        #expect(try queue.takeUsed().map(\.length) == [64])
        loop.advance(milliseconds: 100)
        #expect(try queue.takeUsed().map(\.length) == [64])
        for buffer in buffers { #expect(try driver.memory.read(at: buffer, count: 64) == [UInt8](repeating: 0x5a, count: 64)) }
        #expect(device.counters["entropy_rate_limiter_throttled"] == 2)
        #expect(device.counters["bytes"] == 192)
    }

    // MARK: Network

    static let tap: Int32 = 7

    /// A virtio-net device activated on `rx`/`tx` rings with the manual loop.
    struct Net {
        let loop = ManualEventLoop()
        let memory: GuestMemory
        let backend = InMemoryNetBackend(name: "mem0", readinessDescriptor: DeviceRateLimiterTests.tap)
        let device: VirtioNet
        let rx: MockDriverQueue
        let tx: MockDriverQueue

        init(receive: RateLimiter.Configuration = .init(), transmit: RateLimiter.Configuration = .init()) throws {
            memory = try GuestMemory(regions: [(GuestAddress(0), 16 << 20)])
            device = VirtioNet(
                id: "eth0", mac: nil, backend: backend, receiveLimiter: receive, transmitLimiter: transmit, clock: loop.clock)
            rx = try MockDriverQueue(memory: memory, size: 16, base: 0x1_0000, data: 0x10_0000)
            tx = try MockDriverQueue(memory: memory, size: 16, base: 0x2_0000, data: 0x80_0000)
            let features = VirtioFeature.version1 | VirtioFeature.eventIndex
            device.activate(VirtioActivation(
                memory: memory, features: features,
                queues: [
                    try SplitQueue(memory: memory, layout: rx.layout, eventIndex: true, indirectDescriptors: false, label: "rx"),
                    try SplitQueue(memory: memory, layout: tx.layout, eventIndex: true, indirectDescriptors: false, label: "tx"),
                ],
                notifier: VirtioNotifier(name: "virtio-net", line: CountingInterruptLine()), events: loop))
        }

        /// A frame as it crosses the backend: header, Ethernet header, payload.
        static func frame(payload: Int, seed: UInt8) -> [UInt8] {
            VirtioNetHeader().bytes + [UInt8](repeating: 0xff, count: 6) + [2, 0, 0, 0, 0, 1] + [0x88, 0xb5]
                + [UInt8](repeating: seed, count: payload)
        }

        func postTransmit(_ frame: [UInt8]) throws {
            try tx.makeAvailable(try tx.addChain([.readable(try tx.allocate(bytes: frame), frame.count)]))
        }

        func postReceive(count: Int) throws {
            for _ in 0..<count {
                try rx.makeAvailable(try rx.addChain([.writable(try rx.allocate(2048), 2048)]))
            }
        }

        func count(_ counter: VirtioNet.Counter) -> UInt64 { device.count(of: counter) }
    }

    @Test("net transmit: the frame the limiter refuses waits in the device and goes first when the timer fires")
    func netTransmit() throws {
        // Bytes count the whole frame, header included: 100 + 26 = 126.
        let rig = try Net(transmit: .init(bandwidth: .init(size: 252, refillTimeMilliseconds: 100)))
        let frames = (0..<4).map { Net.frame(payload: 100, seed: UInt8($0)) }
        for frame in frames { try rig.postTransmit(frame) }
        #expect(rig.device.process(queue: VirtioNet.transmitQueue) == false)
        #expect(rig.backend.sentFrames == Array(frames[0..<2]))
        #expect(rig.loop.timers == [50], "126 bytes of a 252-byte bucket that fills in 100 ms")
        #expect(rig.device.process(queue: VirtioNet.transmitQueue) == false)
        #expect(rig.backend.sentFrames.count == 2, "a notification while throttled sends nothing")
        rig.loop.advance(milliseconds: 50)
        #expect(rig.backend.sentFrames == Array(frames[0..<3]))
        rig.loop.advance(milliseconds: 50)
        #expect(rig.backend.sentFrames == frames, "in order, none lost")
        #expect(try rig.tx.takeUsed().count == 4)
        #expect(rig.count(.txThrottled) == 2)
        #expect(rig.count(.rxThrottled) == 0)
    }

    @Test("net receive: a refused frame stays staged, later frames stay in the TAP, the timer delivers them")
    func netReceive() throws {
        let rig = try Net(receive: .init(ops: .init(size: 1, refillTimeMilliseconds: 200)))
        try rig.postReceive(count: 4)
        let frames = (0..<3).map { Net.frame(payload: 60, seed: UInt8($0)) }
        for frame in frames { rig.backend.inject(frame) }
        rig.loop.fire(DeviceRateLimiterTests.tap)
        #expect(try rig.rx.takeUsed().count == 1)
        #expect(rig.backend.pendingFrames == 1, "one frame delivered, one staged, one still in the TAP")
        #expect(rig.loop.timers == [200])
        rig.loop.fire(DeviceRateLimiterTests.tap)
        #expect(rig.device.process(queue: VirtioNet.receiveQueue) == false)
        #expect(try rig.rx.takeUsed().isEmpty, "readiness and notifications while throttled deliver nothing")
        #expect(rig.backend.pendingFrames == 1)
        rig.loop.advance(milliseconds: 200)
        #expect(try rig.rx.takeUsed().count == 1)
        rig.loop.advance(milliseconds: 200)
        #expect(try rig.rx.takeUsed().count == 1)
        #expect(rig.backend.pendingFrames == 0)
        #expect(rig.count(.rxFrames) == 3)
        #expect(rig.count(.rxDropped) == 0)
        #expect(rig.count(.rxThrottled) == 2)
    }

    @Test("net: each direction has its own limiter, and changing one resumes only what it held")
    func netUpdate() throws {
        let rig = try Net(
            receive: .init(ops: .init(size: 1, refillTimeMilliseconds: 60_000)),
            transmit: .init(ops: .init(size: 1, refillTimeMilliseconds: 60_000)))
        for seed in 0..<3 { try rig.postTransmit(Net.frame(payload: 80, seed: UInt8(seed))) }
        try rig.postReceive(count: 3)
        for seed in 0..<3 { rig.backend.inject(Net.frame(payload: 80, seed: UInt8(10 + seed))) }
        rig.device.process(queue: VirtioNet.transmitQueue)
        rig.loop.fire(DeviceRateLimiterTests.tap)
        #expect(rig.backend.sentFrames.count == 1)
        #expect(try rig.rx.takeUsed().count == 1)
        #expect(rig.loop.timers.count == 2)
        rig.device.updateRateLimiter(.transmit, bandwidth: .unchanged, ops: .disabled)
        #expect(rig.loop.timers.count == 1, "the receive timer stays")
        rig.loop.runPosted()
        #expect(rig.backend.sentFrames.count == 3)
        #expect(try rig.rx.takeUsed().isEmpty, "receive is still held")
        #expect(rig.device.rateLimiter(.transmit).isUnlimited)
        #expect(rig.device.rateLimiter(.receive).ops?.size == 1)
    }

    @Test("net: a reset drops the frame the transmit limiter held, counted, and cancels the timers")
    func netReset() throws {
        let rig = try Net(transmit: .init(ops: .init(size: 1, refillTimeMilliseconds: 1000)))
        for seed in 0..<2 { try rig.postTransmit(Net.frame(payload: 80, seed: UInt8(seed))) }
        rig.device.process(queue: VirtioNet.transmitQueue)
        #expect(rig.loop.timers.count == 1)
        rig.device.reset()
        #expect(rig.loop.timers.isEmpty)
        #expect(rig.count(.txDropped) == 1)
        rig.loop.advance(milliseconds: 2000)
        #expect(rig.backend.sentFrames.count == 1)
    }
}
