import Synchronization
import SwiftVMDevices
import Testing
import SwiftVMMemory

/// An asynchronous backend whose operations run only when a test says so,
/// in the order it chooses, over an in-memory disk.
final class FakeAsyncBackend: AsyncBlockBackend, @unchecked Sendable {
    struct Started {
        var tag: UInt64
        var operation: BlockOperation
    }

    let disk: InMemoryBlockBackend
    let maxInFlight: Int
    var completionDescriptor: Int32? { nil }
    private let lock = Mutex(())
    /// Operations handed over and not yet performed, oldest first.
    private(set) var pending: [Started] = []
    private var ready: [(UInt64, Int)] = []
    private(set) var submissions = 0
    /// The next read or write moves at most this many bytes.
    var shortTransfer: Int?

    init(disk: InMemoryBlockBackend, maxInFlight: Int = 64) {
        self.disk = disk
        self.maxInFlight = maxInFlight
    }

    var size: UInt64 { disk.size }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws { try disk.read(into: buffer, at: offset) }
    func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws { try disk.write(from: buffer, at: offset) }
    func flush() throws { try disk.flush() }

    func enqueue(_ operation: BlockOperation, tag: UInt64) -> Bool {
        lock.withLock { _ in
            guard pending.count < maxInFlight else { return false }
            pending.append(Started(tag: tag, operation: operation))
            return true
        }
    }

    func submitQueued() { lock.withLock { _ in submissions += 1 } }

    func reap(_ body: (UInt64, Int) -> Void) {
        let batch = lock.withLock { _ in
            defer { ready.removeAll() }
            return ready
        }
        for (tag, result) in batch { body(tag, result) }
    }

    func waitForIdle(timeoutNanoseconds: UInt64) -> Bool {
        while let first = lock.withLock({ _ in pending.first }) { perform(first) }
        lock.withLock { _ in ready.removeAll() }
        return true
    }

    /// Kinds of the operations waiting, oldest first.
    var pendingKinds: [BlockOperation.Kind] { lock.withLock { _ in pending.map(\.operation.kind) } }

    /// Performs the pending operation at `index` (oldest first) and makes its completion ready.
    func complete(_ index: Int) {
        perform(lock.withLock { _ in pending[index] })
    }

    /// Makes the pending operation at `index` fail with `errno`.
    func fail(_ index: Int, errno: Int) {
        lock.withLock { _ in
            let started = pending.remove(at: index)
            ready.append((started.tag, -errno))
        }
    }

    private func perform(_ started: Started) {
        let operation = started.operation
        var moved = 0
        let limit = shortTransfer ?? Int.max
        if operation.kind != .flush { shortTransfer = nil }
        switch operation.kind {
        case .read, .write:
            for segment in operation.segments where moved < limit {
                let count = min(segment.count, limit - moved)
                let at = operation.offset + UInt64(moved)
                if operation.kind == .read {
                    try! disk.read(into: UnsafeMutableRawBufferPointer(rebasing: segment[0..<count]), at: at)
                } else {
                    try! disk.write(from: UnsafeRawBufferPointer(rebasing: segment[0..<count]), at: at)
                }
                moved += count
            }
        case .flush:
            try! disk.flush()
        }
        lock.withLock { _ in
            pending.removeAll { $0.tag == started.tag }
            ready.append((started.tag, moved))
        }
    }
}

/// A block device over ``FakeAsyncBackend``, on the transport, set up by the mock driver.
struct AsyncBlockRig {
    let driver: MMIODriver
    let queue: MockDriverQueue
    let backend: FakeAsyncBackend
    let device: VirtioBlock

    init(
        config: BlockDriveConfig = BlockDriveConfig(id: "async"), sectors: Int = 64, maxInFlight: Int = 64,
        rateLimiter: RateLimiter.Configuration = .init(), loop: ManualEventLoop? = nil
    ) throws {
        backend = FakeAsyncBackend(disk: InMemoryBlockBackend(bytes: BlockRig.diskPattern(sectors * 512)), maxInFlight: maxInFlight)
        if let loop {
            device = try VirtioBlock(config: config, backend: backend, rateLimiter: rateLimiter, clock: loop.clock)
        } else {
            device = try VirtioBlock(config: config, backend: backend, rateLimiter: rateLimiter)
        }
        driver = try MMIODriver(device: device, events: loop)
        queue = try MockDriverQueue(memory: driver.memory, size: 16)
        let status = driver.initialize(queues: [queue])
        precondition(status & MMIODriver.Status.driverOK != 0, "block device did not start")
    }

    @discardableResult
    func submit(type: UInt32, sector: UInt64 = 0, write data: [UInt8]? = nil, readLength: Int? = nil) throws
        -> (status: GuestAddress, data: GuestAddress?)
    {
        let header = try queue.allocate(bytes: BlockRig.header(type: type, sector: sector))
        let status = try queue.allocate(1, fill: 0xff)
        var buffers: [MockDriverQueue.Buffer] = [.readable(header, 16)]
        var dataAddress: GuestAddress?
        if let data {
            let address = try queue.allocate(bytes: data)
            buffers.append(.readable(address, data.count))
            dataAddress = address
        }
        if let readLength {
            let address = try queue.allocate(readLength)
            buffers.append(.writable(address, readLength))
            dataAddress = address
        }
        buffers.append(.writable(status, 1))
        try queue.makeAvailable(try queue.addChain(buffers))
        return (status, dataAddress)
    }

    func statusByte(_ address: GuestAddress) throws -> UInt8 {
        try driver.memory.load(UInt8.self, at: address)
    }
}

@Suite("virtio-blk with requests in flight")
struct VirtioBlockAsyncTests {
    typealias T = VirtioBlock.RequestType
    typealias St = VirtioBlock.RequestStatus

    @Test("requests all start before any completes, complete out of order, and interrupt once per batch")
    func outOfOrderCompletions() throws {
        let rig = try AsyncBlockRig()
        let requests = try (0..<3).map { try rig.submit(type: T.read, sector: UInt64($0 * 4), readLength: 1024) }
        rig.driver.kick()
        #expect(rig.backend.pendingKinds == [.read, .read, .read])
        #expect(rig.backend.submissions == 1, "one submission for the whole pass")
        #expect(try rig.queue.takeUsed().isEmpty)
        #expect(rig.driver.interrupt.count == 0)
        #expect(try rig.statusByte(requests[0].status) == 0xff)

        rig.backend.complete(2)
        rig.backend.complete(0)
        rig.device.serveCompletions()
        // Heads 0, 3, 6: three descriptors per request.
        #expect(try rig.queue.takeUsed() == [.init(id: 6, length: 1025), .init(id: 0, length: 1025)])
        #expect(rig.driver.interrupt.count == 1)
        #expect(try rig.statusByte(requests[1].status) == 0xff, "still in flight")

        rig.backend.complete(0)
        rig.device.serveCompletions()
        #expect(try rig.queue.takeUsed() == [.init(id: 3, length: 1025)])
        for (i, request) in requests.enumerated() {
            #expect(try rig.statusByte(request.status) == St.ok)
            #expect(try rig.driver.memory.read(at: #require(request.data), count: 1024) == BlockRig.diskPattern(1024, from: i * 4 * 512))
        }
        #expect(rig.device.counters["read_bytes"] == 3 * 1024)
    }

    @Test("a flush starts only after the writes before it completed, and reaches the disk after them")
    func flushWaitsForEarlierWrites() throws {
        let rig = try AsyncBlockRig(config: .init(id: "wb", cacheWriteback: true))
        let a = [UInt8](repeating: 0xa1, count: 512), b = [UInt8](repeating: 0xb2, count: 512)
        let first = try rig.submit(type: T.write, sector: 1, write: a)
        let second = try rig.submit(type: T.write, sector: 2, write: b)
        let flush = try rig.submit(type: T.flush)
        let after = try rig.submit(type: T.read, sector: 8, readLength: 512)
        rig.driver.kick()
        #expect(rig.backend.pendingKinds == [.write, .write], "the flush and what follows it wait")

        rig.backend.complete(1)
        rig.device.serveCompletions()
        #expect(rig.backend.pendingKinds == [.write])
        #expect(rig.backend.disk.flushCount == 0)

        rig.backend.complete(0)
        rig.device.serveCompletions()
        #expect(rig.backend.pendingKinds == [.flush, .read], "the flush starts once no write is in flight")
        rig.backend.complete(0)
        rig.backend.complete(0)
        rig.device.serveCompletions()
        #expect(rig.backend.disk.flushCount == 1)
        for request in [first, second, flush, after] { #expect(try rig.statusByte(request.status) == St.ok) }
        #expect(Array(rig.backend.disk.bytes[512..<1536]) == a + b)
    }

    @Test("a reset waits for the requests in flight, and their late completions are dropped")
    func resetWithRequestsInFlight() throws {
        let rig = try AsyncBlockRig()
        let read = try rig.submit(type: T.read, sector: 2, readLength: 512)
        let write = try rig.submit(type: T.write, sector: 5, write: [UInt8](repeating: 7, count: 512))
        rig.driver.kick()
        #expect(rig.backend.pendingKinds == [.read, .write])

        rig.driver.write(MMIODriver.Register.status, 0)
        #expect(rig.backend.pendingKinds.isEmpty, "the reset returned only once nothing was in flight")
        rig.device.serveCompletions()
        #expect(try rig.queue.takeUsed().isEmpty, "nothing is used after the reset")
        #expect(try rig.statusByte(read.status) == 0xff)
        #expect(try rig.statusByte(write.status) == 0xff)
        #expect(rig.driver.interrupt.count == 0)

        // The driver starts over and the device serves it.
        let queue = try MockDriverQueue(memory: rig.driver.memory, size: 16, base: 0x2_0000, data: 0x80_0000)
        #expect(rig.driver.initialize(queues: [queue]) & MMIODriver.Status.driverOK != 0)
        let status = try queue.allocate(1, fill: 0xff)
        let header = try queue.allocate(bytes: BlockRig.header(type: T.read, sector: 0))
        let data = try queue.allocate(512)
        try queue.makeAvailable(try queue.addChain([.readable(header, 16), .writable(data, 512), .writable(status, 1)]))
        rig.driver.kick()
        rig.backend.complete(0)
        rig.device.serveCompletions()
        #expect(try queue.takeUsed() == [.init(id: 0, length: 513)])
        #expect(try rig.driver.memory.read(at: data, count: 512) == BlockRig.diskPattern(512))
    }

    @Test("a short read is continued where it stopped; one that moves nothing is an I/O error")
    func shortReads() throws {
        let rig = try AsyncBlockRig()
        let request = try rig.submit(type: T.read, sector: 4, readLength: 2048)
        rig.driver.kick()
        rig.backend.shortTransfer = 1536
        rig.backend.complete(0)
        rig.device.serveCompletions()
        #expect(try rig.queue.takeUsed().isEmpty)
        #expect(rig.backend.pendingKinds == [.read], "the rest went back to the backend")
        rig.backend.complete(0)
        rig.device.serveCompletions()
        #expect(try rig.statusByte(request.status) == St.ok)
        #expect(try rig.driver.memory.read(at: #require(request.data), count: 2048) == BlockRig.diskPattern(2048, from: 4 * 512))
        #expect(try rig.queue.takeUsed() == [.init(id: 0, length: 2049)])

        let stuck = try rig.submit(type: T.read, sector: 0, readLength: 512)
        rig.driver.kick()
        rig.backend.shortTransfer = 0
        rig.backend.complete(0)
        rig.device.serveCompletions()
        #expect(try rig.statusByte(stuck.status) == St.ioError)
        #expect(rig.backend.pendingKinds.isEmpty)
    }

    @Test("an operation that fails with an errno answers its request with an I/O error")
    func failedOperation() throws {
        let rig = try AsyncBlockRig()
        let request = try rig.submit(type: T.write, sector: 0, write: [UInt8](repeating: 1, count: 512))
        rig.driver.kick()
        rig.backend.fail(0, errno: 5)
        rig.device.serveCompletions()
        #expect(try rig.statusByte(request.status) == St.ioError)
        #expect(try rig.queue.takeUsed() == [.init(id: 0, length: 1)])
        #expect(rig.device.counters["errors"] == 1)
    }

    @Test("read-only drives, past-end and partial-sector requests are answered at once, never started")
    func refusedRequestsNeverStart() throws {
        let ro = try AsyncBlockRig(config: .init(id: "ro", readOnly: true), sectors: 8)
        let write = try ro.submit(type: T.write, sector: 0, write: [UInt8](repeating: 1, count: 512))
        let pastEnd = try ro.submit(type: T.read, sector: 7, readLength: 1024)
        let partial = try ro.submit(type: T.read, sector: 0, readLength: 100)
        ro.driver.kick()
        #expect(ro.backend.pendingKinds.isEmpty)
        for request in [write, pastEnd, partial] { #expect(try ro.statusByte(request.status) == St.ioError) }
        #expect(ro.backend.disk.bytes == BlockRig.diskPattern(8 * 512))
    }

    @Test("no more requests start than the backend holds; completions make room for the rest")
    func boundedInFlight() throws {
        let rig = try AsyncBlockRig(maxInFlight: 2)
        let requests = try (0..<4).map { try rig.submit(type: T.read, sector: UInt64($0), readLength: 512) }
        rig.driver.kick()
        #expect(rig.backend.pendingKinds.count == 2)
        rig.backend.complete(0)
        rig.device.serveCompletions()
        #expect(rig.backend.pendingKinds.count == 2, "the third started when the first completed")
        rig.backend.complete(0)
        rig.backend.complete(0)
        rig.device.serveCompletions()
        rig.backend.complete(0)
        rig.device.serveCompletions()
        for request in requests { #expect(try rig.statusByte(request.status) == St.ok) }
        #expect(try rig.queue.takeUsed().count == 4)
    }

    @Test("a request the rate limiter holds back is not started until its tokens exist")
    func throttledRequestsWait() throws {
        let loop = ManualEventLoop()
        let rig = try AsyncBlockRig(rateLimiter: .init(ops: .init(size: 2, refillTimeMilliseconds: 1000)), loop: loop)
        let requests = try (0..<3).map { try rig.submit(type: T.read, sector: UInt64($0), readLength: 512) }
        rig.driver.kick()
        #expect(rig.backend.pendingKinds == [.read, .read], "two operations' worth of tokens")
        rig.backend.complete(0)
        rig.backend.complete(0)
        rig.device.serveCompletions()
        #expect(rig.backend.pendingKinds.isEmpty, "the third still waits for a token")
        #expect(try rig.statusByte(requests[2].status) == 0xff)

        loop.advance(milliseconds: 500)
        #expect(rig.backend.pendingKinds == [.read], "started once the bucket refilled")
        rig.backend.complete(0)
        rig.device.serveCompletions()
        for request in requests { #expect(try rig.statusByte(request.status) == St.ok) }
        #expect(rig.device.counters["rate_limiter_throttled_events"] == 1)
    }
}
