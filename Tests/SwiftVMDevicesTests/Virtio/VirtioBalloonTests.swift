import Glibc
import Synchronization
import SwiftVMDevices
import SwiftVMMemory
import Testing

/// The balloon driven the way Linux's virtio_balloon drives it: PFN arrays on
/// inflateq and deflateq, a statistics buffer the device keeps and hands back
/// on a timer, free page reports, and target changes while it runs.
@Suite("virtio-balloon")
struct VirtioBalloonTests {
    // MARK: Set-up

    /// Feature bits as the driver sees them.
    static let statsVQ: UInt64 = 1 << 1
    static let deflateOnOOM: UInt64 = 1 << 2
    static let reporting: UInt64 = 1 << 5
    static let version1: UInt64 = 1 << 32
    static let eventIndex: UInt64 = 1 << 29

    /// Pages 8 MiB to 16 MiB of the 16 MiB test RAM hold nothing else, so
    /// tests inflate those.
    static let firstFreePFN: UInt32 = 0x800
    static let ramPages: UInt32 = 0x1000

    /// A device behind the MMIO transport, initialised by the mock driver
    /// with one queue per negotiated role.
    struct Rig {
        let device: VirtioBalloon
        let driver: MMIODriver
        let queues: [MockDriverQueue]

        init(_ settings: VirtioBalloon.Settings = .init(targetPages: 0), accept: UInt64? = nil, queueSize: UInt16 = 16) throws {
            let device = VirtioBalloon(settings: settings, guestMemoryBytes: 16 << 20)
            let driver = try MMIODriver(device: device)
            let features = accept ?? device.offeredFeatures
            let count = VirtioBalloon.queueRoles(features: features).count
            let queues = try (0..<count).map { try VirtioBalloonTests.makeQueue(driver.memory, index: $0, size: queueSize) }
            let status = driver.initialize(features: features | VirtioBalloonTests.version1, queues: queues)
            #expect(status == 0x0f, "ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK")
            self.device = device
            self.driver = driver
            self.queues = queues
        }

        var memory: GuestMemory { driver.memory }

        /// Posts one PFN array on queue `index` and serves it; returns the used elements.
        @discardableResult
        func send(_ pfns: [UInt32], on index: Int) throws -> [MockDriverQueue.UsedElement] {
            let queue = queues[index]
            let array = try queue.allocate(bytes: VirtioBalloonTests.bytes(pfns))
            try queue.makeAvailable(try queue.addChain([.readable(array, 4 * pfns.count)]))
            driver.kick(index)
            return try queue.takeUsed()
        }
    }

    /// Rings from 0x10000 (0x4000 per queue) and buffers from 1 MiB (512 KiB
    /// per queue), all below the pages tests inflate.
    static func makeQueue(_ memory: GuestMemory, index: Int, size: UInt16) throws -> MockDriverQueue {
        try MockDriverQueue(
            memory: memory, size: size, base: 0x1_0000 + 0x4000 * UInt64(index), data: 0x10_0000 + 0x8_0000 * UInt64(index))
    }

    static func bytes(_ pfns: [UInt32]) -> [UInt8] {
        pfns.flatMap { pfn in (0..<4).map { UInt8(truncatingIfNeeded: pfn >> (8 * $0)) } }
    }

    static func statsBytes(_ entries: [(UInt16, UInt64)]) -> [UInt8] {
        entries.flatMap { tag, value in
            (0..<2).map { UInt8(truncatingIfNeeded: tag >> (8 * $0)) } + (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
        }
    }

    static func address(_ pfn: UInt32) -> GuestAddress { GuestAddress(UInt64(pfn) << 12) }

    /// Fills page `pfn` with `byte`, so the host has to back it.
    static func touch(_ memory: GuestMemory, _ pfn: UInt32, _ byte: UInt8 = 0x5a) throws {
        try memory.write([UInt8](repeating: byte, count: 4096), at: address(pfn))
    }

    /// Whether page `pfn` has host memory behind it (mincore(2)).
    static func isResident(_ memory: GuestMemory, _ pfn: UInt32) throws -> Bool {
        let bytes = try memory.checkedBytes(at: address(pfn), count: 4096)
        var vector: UInt8 = 0
        try #require(mincore(bytes.baseAddress, 4096, &vector) == 0)
        return vector & 1 == 1
    }

    static func pageIs(_ memory: GuestMemory, _ pfn: UInt32, all byte: UInt8) throws -> Bool {
        try memory.read(at: address(pfn), count: 4096).allSatisfy { $0 == byte }
    }

    // MARK: Features, queues, config space

    @Test("features follow the settings: VERSION_1 and EVENT_IDX always, DEFLATE_ON_OOM, STATS_VQ and REPORTING when configured")
    func features() throws {
        let plain = VirtioBalloon(settings: .init(targetPages: 0), guestMemoryBytes: 1 << 20)
        #expect(plain.offeredFeatures == Self.version1 | Self.eventIndex)
        #expect(plain.queueMaxSizes == [256, 256])
        #expect(plain.deviceType == 5)
        let full = VirtioBalloon(
            settings: .init(targetPages: 0, deflateOnOOM: true, statsIntervalMilliseconds: 1000, freePageReporting: true),
            guestMemoryBytes: 1 << 20)
        #expect(full.offeredFeatures == Self.version1 | Self.eventIndex | Self.deflateOnOOM | Self.statsVQ | Self.reporting)
        #expect(full.queueMaxSizes == [256, 256, 256, 256])
        // Never offered: MUST_TELL_HOST, FREE_PAGE_HINT, PAGE_POISON.
        #expect(full.offeredFeatures & 0b1_1001 == 0)
    }

    @Test("queue indexes depend on what was negotiated: reporting_vq is 2 without STATS_VQ, 3 with it")
    func queueIndexes() throws {
        #expect(VirtioBalloon.queueRoles(features: 0) == [.inflate, .deflate])
        #expect(VirtioBalloon.queueRoles(features: Self.statsVQ) == [.inflate, .deflate, .stats])
        #expect(VirtioBalloon.queueRoles(features: Self.reporting) == [.inflate, .deflate, .reporting])
        #expect(VirtioBalloon.queueRoles(features: Self.statsVQ | Self.reporting) == [.inflate, .deflate, .stats, .reporting])

        // Offered both, the driver takes only reporting: its queue is index 2.
        let settings = VirtioBalloon.Settings(targetPages: 0, statsIntervalMilliseconds: 1000, freePageReporting: true)
        let rig = try Rig(settings, accept: Self.reporting)
        #expect(rig.device.activeQueueRoles == [.inflate, .deflate, .reporting])
        let pfn = Self.firstFreePFN
        try Self.touch(rig.memory, pfn)
        let queue = rig.queues[2]
        try queue.makeAvailable(try queue.addChain([.writable(Self.address(pfn), 4096)]))
        rig.driver.kick(2)
        #expect(try queue.takeUsed() == [.init(id: 0, length: 0)])
        #expect(rig.device.counters.reportedFreeBytes == 4096)
        #expect(try !Self.isResident(rig.memory, pfn))
    }

    @Test("config space: num_pages is the target, actual is what the driver writes, any width, the rest read-only")
    func configSpace() throws {
        let rig = try Rig(.init(targetPages: 1234))
        let config = MMIODriver.Register.config
        #expect(rig.driver.read(config) == 1234)
        #expect(rig.driver.read(config + 4) == 0)
        rig.driver.write(config + 4, 777)
        #expect(rig.device.actualPages == 777)
        #expect(rig.driver.read(config + 4) == 777)
        // A one-byte write changes one byte of actual.
        rig.driver.transport.writeByte(config + 5, 0x01)
        #expect(rig.device.actualPages == 777 & 0xffff_00ff | 0x100)
        // num_pages and free_page_hint_cmd_id belong to the device.
        rig.driver.write(config, 99)
        rig.driver.write(config + 8, 99)
        #expect(rig.driver.read(config) == 1234)
        #expect(rig.driver.read(config + 8) == 0)
        #expect(rig.driver.read(config + 16) == 0, "past the 16-byte config space")
        #expect(rig.device.targetPages == 1234)
        // A byte read of num_pages.
        #expect(rig.driver.transport.readByte(config + 1) == UInt8(1234 >> 8))
    }

    @Test("a target change while the guest runs updates num_pages and raises a configuration change interrupt")
    func targetChange() throws {
        let rig = try Rig(.init(targetPages: 0))
        let generation = rig.driver.read(MMIODriver.Register.configGeneration)
        let interrupts = rig.driver.interrupt.count
        try rig.device.setTarget(mib: 4)
        #expect(rig.device.targetPages == 1024)
        #expect(rig.driver.read(MMIODriver.Register.config) == 1024)
        #expect(rig.driver.read(MMIODriver.Register.configGeneration) == generation &+ 1)
        #expect(rig.driver.interrupt.count == interrupts + 1)
        #expect(rig.driver.acknowledgeInterrupt() & 2 == 2, "InterruptStatus bit 1: configuration change")

        // The same target again is no change and no interrupt.
        try rig.device.setTarget(pages: 1024)
        #expect(rig.driver.interrupt.count == interrupts + 1)

        // More than guest RAM, or negative, is refused and changes nothing.
        #expect(throws: VirtioBalloon.TargetError.moreThanGuestMemory(requestedPages: 4097, guestPages: 4096)) {
            try rig.device.setTarget(pages: 4097)
        }
        #expect(throws: VirtioBalloon.TargetError.negative(mib: -1)) { try rig.device.setTarget(mib: -1) }
        #expect(throws: VirtioBalloon.TargetError.self) { try rig.device.setTarget(mib: Int.max) }
        try rig.device.setTarget(mib: 16)
        #expect(rig.device.targetPages == 4096, "all of guest RAM is a valid target")
    }

    @Test("before the driver is ready a new target just waits in the config space; a reset keeps it and forgets actual")
    func targetBeforeActivation() throws {
        let device = VirtioBalloon(settings: .init(targetPages: 10), guestMemoryBytes: 16 << 20)
        let driver = try MMIODriver(device: device)
        try device.setTarget(pages: 20)
        #expect(driver.interrupt.count == 0)
        let queues = try (0..<2).map { try Self.makeQueue(driver.memory, index: $0, size: 16) }
        #expect(driver.initialize(queues: queues) == 0x0f)
        #expect(driver.read(MMIODriver.Register.config) == 20)
        driver.write(MMIODriver.Register.config + 4, 20)
        driver.write(MMIODriver.Register.status, 0)
        #expect(device.actualPages == 0)
        #expect(device.targetPages == 20)
        #expect(device.activeQueueRoles.isEmpty)
    }

    // MARK: Inflate and deflate

    @Test("inflating discards exactly the pages given: they leave host memory and read as zero; their neighbours stay")
    func inflateDiscards() throws {
        let rig = try Rig(.init(targetPages: 16))
        let base = Self.firstFreePFN + 0x100
        for pfn in (base - 1)...(base + 17) { try Self.touch(rig.memory, pfn) }
        // Out of order, with a gap at base + 8, as an allocator hands pages out.
        let given = Array((base..<(base + 8)).reversed()) + Array((base + 9)...(base + 16))
        let used = try rig.send(given, on: 0)
        #expect(used == [.init(id: 0, length: 0)], "the device writes nothing into an inflate request")
        for pfn in given {
            #expect(try !Self.isResident(rig.memory, pfn), "page \(pfn) is still backed")
            #expect(try Self.pageIs(rig.memory, pfn, all: 0))
        }
        for pfn in [base - 1, base + 8, base + 17] {
            #expect(try Self.isResident(rig.memory, pfn))
            #expect(try Self.pageIs(rig.memory, pfn, all: 0x5a), "page \(pfn) was not in the request")
        }
        let counters = rig.device.counters
        #expect(counters.inflatedPages == 16)
        #expect(counters.discardedPages == 16)
        #expect(counters.discardCalls == 2, "two runs, one madvise each")
        #expect(counters.rejectedPFNs == 0)
    }

    @Test("contiguous page frames are coalesced into one range per run; duplicates collapse")
    func coalescing() {
        #expect(VirtioBalloon.coalesce([5, 3, 4, 10, 9, 4, 20]) == [
            .init(first: 3, count: 3), .init(first: 9, count: 2), .init(first: 20, count: 1),
        ])
        #expect(VirtioBalloon.coalesce([]) == [])
        #expect(VirtioBalloon.merge([.init(first: 10, count: 4), .init(first: 0, count: 10), .init(first: 12, count: 1)])
            == [.init(first: 0, count: 14)])
    }

    @Test("Linux's full request of 256 PFNs in one run costs one madvise, and resident memory drops by 1 MiB")
    func fullRequestOneCall() throws {
        let rig = try Rig(.init(targetPages: 256))
        let pfns = (0..<UInt32(256)).map { Self.firstFreePFN + 255 - $0 }
        for pfn in pfns { try Self.touch(rig.memory, pfn) }
        let queue = rig.queues[0]
        let array = try queue.allocate(bytes: Self.bytes(pfns))
        let before = rig.memory.residentBytes()
        try queue.makeAvailable(try queue.addChain([.readable(array, 4 * pfns.count)]))
        rig.driver.kick(0)
        #expect(try queue.takeUsed().count == 1)
        #expect(rig.device.counters.discardCalls == 1)
        #expect(rig.device.counters.discardedPages == 256)
        #expect(rig.memory.residentBytes() == before - 256 * 4096)
    }

    @Test("the PFN array is copied before anything is discarded, even when it lies in a page being inflated")
    func arrayInsideInflatedPage() throws {
        let rig = try Rig(.init(targetPages: 4))
        let holder = Self.firstFreePFN + 0x200
        let pfns = [holder + 1, holder, holder + 2, holder + 3]
        for pfn in holder...(holder + 3) { try Self.touch(rig.memory, pfn) }
        let array = Self.address(holder)
        try rig.memory.write(Self.bytes(pfns), at: array)
        let queue = rig.queues[0]
        try queue.makeAvailable(try queue.addChain([.readable(array, 16)]))
        rig.driver.kick(0)
        #expect(try queue.takeUsed().count == 1)
        #expect(rig.device.counters.discardedPages == 4)
        for pfn in pfns { #expect(try !Self.isResident(rig.memory, pfn)) }
    }

    @Test("a PFN array split across descriptors, even mid-entry, is read as one stream")
    func splitArray() throws {
        let rig = try Rig(.init(targetPages: 2))
        let pfns = [Self.firstFreePFN + 0x300, Self.firstFreePFN + 0x301]
        for pfn in pfns { try Self.touch(rig.memory, pfn) }
        let raw = Self.bytes(pfns)
        let queue = rig.queues[0]
        let a = try queue.allocate(bytes: Array(raw[0..<3]))
        let b = try queue.allocate(bytes: Array(raw[3...]))
        try queue.makeAvailable(try queue.addChain([.readable(a, 3), .readable(b, 5)]))
        rig.driver.kick(0)
        #expect(try queue.takeUsed().count == 1)
        #expect(rig.device.counters.discardedPages == 2)
    }

    @Test("deflating is accounting only: the pages keep what the guest wrote since")
    func deflate() throws {
        let rig = try Rig(.init(targetPages: 8))
        let pfns = (0..<UInt32(8)).map { Self.firstFreePFN + 0x400 + $0 }
        for pfn in pfns { try Self.touch(rig.memory, pfn) }
        try rig.send(pfns, on: 0)
        // Without MUST_TELL_HOST the guest may use the pages before it tells.
        for pfn in pfns { try Self.touch(rig.memory, pfn, 0x77) }
        let used = try rig.send(Array(pfns[0..<5]), on: 1)
        #expect(used == [.init(id: 0, length: 0)])
        for pfn in pfns { #expect(try Self.pageIs(rig.memory, pfn, all: 0x77)) }
        let counters = rig.device.counters
        #expect(counters.inflatedPages == 8)
        #expect(counters.deflatedPages == 5)
        #expect(counters.discardedPages == 8)
    }

    // MARK: Hostile requests

    @Test("PFNs outside guest RAM are skipped and counted; the rest of the request still takes effect")
    func pfnsOutsideRAM() throws {
        let rig = try Rig(.init(targetPages: 2))
        let good = Self.firstFreePFN + 0x500
        try Self.touch(rig.memory, good)
        let used = try rig.send([Self.ramPages, good, UInt32.max, 0x10_0000], on: 0)
        #expect(used == [.init(id: 0, length: 0)])
        let counters = rig.device.counters
        #expect(counters.rejectedPFNs == 3)
        #expect(counters.inflatedPages == 1)
        #expect(counters.discardedPages == 1)
        #expect(try !Self.isResident(rig.memory, good))
        try rig.send([Self.ramPages + 1], on: 1)
        #expect(rig.device.counters.rejectedPFNs == 4)
        #expect(rig.device.counters.deflatedPages == 0)
    }

    @Test("malformed requests are refused whole and change nothing: odd length, device-writable, too many PFNs")
    func malformedRequests() throws {
        let rig = try Rig(.init(targetPages: 2), queueSize: 16)
        let victim = Self.firstFreePFN + 0x600
        try Self.touch(rig.memory, victim)
        let queue = rig.queues[0]
        // Six bytes: one PFN and half of another.
        let odd = try queue.allocate(bytes: Self.bytes([victim]) + [0, 0])
        try queue.makeAvailable(try queue.addChain([.readable(odd, 6)]))
        // A writable buffer where the device only reads.
        let writable = try queue.allocate(bytes: Self.bytes([victim]))
        try queue.makeAvailable(try queue.addChain([.writable(writable, 4)]))
        // One PFN more than a request may carry.
        let huge = try queue.allocate(bytes: Self.bytes([UInt32](repeating: victim, count: VirtioBalloon.maxPFNsPerRequest + 1)))
        try queue.makeAvailable(try queue.addChain([.readable(huge, 4 * (VirtioBalloon.maxPFNsPerRequest + 1))]))
        rig.driver.kick(0)
        #expect(try queue.takeUsed() == [.init(id: 0, length: 0), .init(id: 1, length: 0), .init(id: 2, length: 0)])
        #expect(rig.device.counters.rejectedRequests == 3)
        #expect(rig.device.counters.discardedPages == 0)
        #expect(try Self.isResident(rig.memory, victim))
        #expect(try Self.pageIs(rig.memory, victim, all: 0x5a))
        // An empty request is harmless.
        #expect(try rig.send([], on: 0) == [.init(id: 3, length: 0)])
        #expect(rig.driver.status & MMIODriver.Status.needsReset == 0)
    }

    @Test("one pass stops at the PFN budget and says more is waiting; the next pass finishes")
    func passBudget() throws {
        let rig = try Rig(.init(targetPages: 0), queueSize: 32)
        let queue = rig.queues[0]
        let perRequest = VirtioBalloon.maxPFNsPerRequest
        let requests = VirtioBalloon.pfnsPerPass / perRequest + 1
        // Every request names the same page, so the test stays small.
        let array = try queue.allocate(bytes: Self.bytes([UInt32](repeating: Self.firstFreePFN, count: perRequest)))
        for _ in 0..<requests { try queue.makeAvailable(try queue.addChain([.readable(array, 4 * perRequest)])) }
        #expect(rig.driver.transport.processQueue(0) == true)
        #expect(try queue.takeUsed().count == requests - 1)
        #expect(rig.driver.transport.processQueue(0) == false)
        #expect(try queue.takeUsed().count == 1)
        #expect(rig.device.counters.inflatedPages == UInt64(requests * perRequest))
    }

    @Test("one pass serves at most requestsPerPass requests, then yields")
    func requestBound() throws {
        let rig = try Rig(.init(targetPages: 0), queueSize: 256)
        let queue = rig.queues[1]
        let array = try queue.allocate(bytes: Self.bytes([Self.firstFreePFN]))
        for _ in 0..<VirtioActivation.requestsPerPass { try queue.makeAvailable(try queue.addChain([.readable(array, 4)])) }
        #expect(rig.driver.transport.processQueue(1) == true, "a full pass says more may be waiting")
        #expect(try queue.takeUsed().count == VirtioActivation.requestsPerPass)
        try queue.makeAvailable(try queue.addChain([.readable(array, 4)]))
        #expect(rig.driver.transport.processQueue(1) == false)
        #expect(try queue.takeUsed().count == 1)
        #expect(rig.device.counters.deflatedPages == UInt64(VirtioActivation.requestsPerPass + 1))
    }

    // MARK: Free page reporting

    @Test("reported ranges are discarded and the chain returned; the report's size is counted")
    func reporting() throws {
        let rig = try Rig(.init(targetPages: 0, freePageReporting: true))
        #expect(rig.device.activeQueueRoles == [.inflate, .deflate, .reporting])
        let first = Self.firstFreePFN + 0x100
        for pfn in first..<(first + 64) { try Self.touch(rig.memory, pfn) }
        let queue = rig.queues[2]
        // Two 64 KiB ranges with a page between them, as Linux posts them (device-writable).
        let head = try queue.addChain([.writable(Self.address(first), 16 * 4096), .writable(Self.address(first + 17), 16 * 4096)])
        try queue.makeAvailable(head)
        rig.driver.kick(2)
        #expect(try queue.takeUsed() == [.init(id: UInt32(head), length: 0)])
        for pfn in first..<(first + 16) { #expect(try !Self.isResident(rig.memory, pfn)) }
        #expect(try Self.isResident(rig.memory, first + 16))
        for pfn in (first + 17)..<(first + 33) { #expect(try Self.pageIs(rig.memory, pfn, all: 0)) }
        #expect(try Self.pageIs(rig.memory, first + 33, all: 0x5a))
        let counters = rig.device.counters
        #expect(counters.reportedFreeBytes == 32 * 4096)
        #expect(counters.reportedRanges == 2)
        #expect(counters.discardedPages == 32)
        #expect(counters.inflatedPages == 0)
    }

    @Test("a report with a range that is not whole 4 KiB pages is refused whole; nothing of it is discarded")
    func misalignedReport() throws {
        let rig = try Rig(.init(targetPages: 0, freePageReporting: true))
        let first = Self.firstFreePFN + 0x200
        for pfn in first..<(first + 4) { try Self.touch(rig.memory, pfn) }
        let queue = rig.queues[2]
        let good = MockDriverQueue.Buffer.writable(Self.address(first), 4096)
        let shifted = MockDriverQueue.Buffer.writable(GuestAddress(Self.address(first + 2).rawValue + 512), 4096)
        let short = MockDriverQueue.Buffer.writable(Self.address(first + 3), 100)
        try queue.makeAvailable(try queue.addChain([good, shifted]))
        try queue.makeAvailable(try queue.addChain([good, short]))
        rig.driver.kick(2)
        #expect(try queue.takeUsed().count == 2)
        #expect(rig.device.counters.rejectedRequests == 2)
        #expect(rig.device.counters.discardedPages == 0)
        for pfn in first..<(first + 4) { #expect(try Self.pageIs(rig.memory, pfn, all: 0x5a)) }
    }

    // MARK: Statistics

    /// A device activated directly (no transport), so a fake event loop can
    /// drive its timer.
    struct StatsRig {
        let device: VirtioBalloon
        let memory: GuestMemory
        let queues: [MockDriverQueue]
        let activation: VirtioActivation
        let events = FakeEventRegistry()
        let line = CountingInterruptLine()

        init(intervalMilliseconds: Int = 5000, primed: [(UInt16, UInt64)]? = nil) throws {
            let device = VirtioBalloon(
                settings: .init(targetPages: 0, statsIntervalMilliseconds: intervalMilliseconds), guestMemoryBytes: 16 << 20)
            let memory = try GuestMemory(regions: [(GuestAddress(0), 16 << 20)])
            let roles = VirtioBalloon.queueRoles(features: device.offeredFeatures)
            let queues = try roles.indices.map { try VirtioBalloonTests.makeQueue(memory, index: $0, size: 8) }
            self.device = device
            self.memory = memory
            self.queues = queues
            let split = try queues.map {
                try SplitQueue(memory: memory, layout: $0.layout, eventIndex: false, indirectDescriptors: false)
            }
            activation = VirtioActivation(
                memory: memory, features: device.offeredFeatures, queues: split,
                notifier: VirtioNotifier(name: "virtio-balloon", line: line), events: events)
            // Linux fills and posts the first buffer before DRIVER_OK.
            if let primed { try post(primed) }
            device.activate(activation)
        }

        var statsQueue: MockDriverQueue { queues[2] }

        func post(_ entries: [(UInt16, UInt64)]) throws {
            let buffer = try statsQueue.allocate(bytes: VirtioBalloonTests.statsBytes(entries))
            try statsQueue.makeAvailable(try statsQueue.addChain([.readable(buffer, 10 * entries.count)]))
        }

        /// The driver's kick, served as the event loop would.
        func kick() { device.process(queue: 2) }
    }

    static let linuxStats: [(UInt16, UInt64)] = [
        (0, 1), (1, 2), (2, 3), (3, 4), (4, 100 << 20), (5, 128 << 20), (6, 90 << 20), (7, 5 << 20), (8, 6), (9, 7),
    ]

    @Test("the buffer Linux primes before DRIVER_OK is read at activation and kept; its statistics are readable")
    func primedStatistics() throws {
        let rig = try StatsRig(primed: Self.linuxStats)
        #expect(rig.device.statistics == nil, "read on the loop thread, not in activate")
        #expect(rig.events.timers.count == 1)
        #expect(rig.events.timers.first?.after == 5000)
        #expect(rig.events.timers.first?.period == 5000)
        rig.events.runPosted()
        let stats = try #require(rig.device.statistics)
        #expect(stats.swapIn == 1)
        #expect(stats.swapOut == 2)
        #expect(stats.majorFaults == 3)
        #expect(stats.minorFaults == 4)
        #expect(stats.freeMemory == 100 << 20)
        #expect(stats.totalMemory == 128 << 20)
        #expect(stats.availableMemory == 90 << 20)
        #expect(stats.diskCaches == 5 << 20)
        #expect(stats.hugetlbAllocations == 6)
        #expect(stats.hugetlbFailures == 7)
        #expect(stats.oomKills == nil)
        #expect(stats.updates == 1)
        #expect(try rig.statsQueue.takeUsed().isEmpty, "the device keeps the buffer")
    }

    @Test("each timer tick hands the buffer back with an interrupt; the guest's refill updates the statistics")
    func timerRefresh() throws {
        let rig = try StatsRig(primed: Self.linuxStats)
        rig.events.runPosted()
        let first = try #require(rig.device.statistics)

        rig.events.fireTimers()
        #expect(try rig.statsQueue.takeUsed() == [.init(id: 0, length: 0)])
        #expect(rig.line.count == 1)
        // A tick before the guest refilled finds nothing to return.
        rig.events.fireTimers()
        #expect(rig.line.count == 1)
        #expect(rig.device.requestStatistics() == false)

        try rig.post([(4, 50 << 20), (5, 128 << 20), (10, 3), (99, 12345)])
        rig.kick()
        let second = try #require(rig.device.statistics)
        #expect(second.freeMemory == 50 << 20)
        #expect(second.oomKills == 3)
        #expect(second.swapIn == nil, "each buffer replaces the last")
        #expect(second.updates == 2)
        #expect(second.updatedAt >= first.updatedAt)

        // The host may ask sooner than the timer.
        #expect(rig.device.requestStatistics() == true)
        #expect(try rig.statsQueue.takeUsed().count == 1)
    }

    @Test("a driver that posts a second buffer while the device holds one gets the older back")
    func secondBuffer() throws {
        let rig = try StatsRig()
        try rig.post(Self.linuxStats)
        rig.kick()
        try rig.post([(4, 1)])
        rig.kick()
        #expect(try rig.statsQueue.takeUsed() == [.init(id: 0, length: 0)])
        #expect(rig.device.statistics?.freeMemory == 1)
        rig.events.fireTimers()
        #expect(try rig.statsQueue.takeUsed() == [.init(id: 1, length: 0)])
    }

    @Test("a malformed statistics buffer is kept (to be returned) but not believed")
    func malformedStatistics() throws {
        let rig = try StatsRig()
        let queue = rig.statsQueue
        let odd = try queue.allocate(bytes: [UInt8](repeating: 1, count: 15))
        try queue.makeAvailable(try queue.addChain([.readable(odd, 15)]))
        rig.kick()
        #expect(rig.device.statistics == nil)
        #expect(rig.device.counters.rejectedRequests == 1)
        let tooLong = VirtioBalloon.statsEntrySize * (VirtioBalloon.maxStatsEntries + 1)
        let big = try queue.allocate(tooLong)
        try queue.makeAvailable(try queue.addChain([.readable(big, tooLong)]))
        rig.kick()
        #expect(try queue.takeUsed() == [.init(id: 0, length: 0)])
        let writable = try queue.allocate(10)
        try queue.makeAvailable(try queue.addChain([.writable(writable, 10)]))
        rig.kick()
        #expect(rig.device.counters.rejectedRequests == 3)
        rig.events.fireTimers()
        #expect(try queue.takeUsed().count == 2, "the older one at once, the held one on the tick")
    }

    @Test("a reset removes the timer; a tick from the old activation that still arrives does nothing")
    func resetStopsTimer() throws {
        let rig = try StatsRig(primed: Self.linuxStats)
        rig.events.runPosted()
        let stale = try #require(rig.events.timers.first)
        rig.device.reset()
        #expect(rig.events.timers.isEmpty)
        stale.handler()
        #expect(try rig.statsQueue.takeUsed().isEmpty)
        #expect(rig.line.count == 0)
    }

    @Test("the polling interval changes while the guest runs: the timer is replaced; statistics cannot be turned on or off")
    func intervalChange() throws {
        let rig = try StatsRig(intervalMilliseconds: 5000, primed: Self.linuxStats)
        rig.events.runPosted()
        let old = try #require(rig.events.timers.first)
        try rig.device.setStatisticsInterval(milliseconds: 2000)
        #expect(rig.device.statisticsIntervalMilliseconds == 2000)
        let timers = rig.events.timers
        #expect(timers.count == 1)
        #expect(timers.first?.token != old.token)
        #expect(timers.first?.after == 2000)
        #expect(timers.first?.period == 2000)
        rig.events.fireTimers()
        #expect(try rig.statsQueue.takeUsed().count == 1)
        #expect(throws: VirtioBalloon.StatisticsIntervalError.cannotTurnOff) { try rig.device.setStatisticsInterval(milliseconds: 0) }
        #expect(rig.device.statisticsIntervalMilliseconds == 2000)

        let plain = VirtioBalloon(settings: .init(targetPages: 0), guestMemoryBytes: 1 << 20)
        #expect(throws: VirtioBalloon.StatisticsIntervalError.statisticsOff) { try plain.setStatisticsInterval(milliseconds: 1000) }
    }

    @Test("without an event loop the primed buffer is read at once, and there is no timer")
    func noEventLoop() throws {
        let device = VirtioBalloon(settings: .init(targetPages: 0, statsIntervalMilliseconds: 1000), guestMemoryBytes: 16 << 20)
        let driver = try MMIODriver(device: device)
        let queues = try (0..<3).map { try Self.makeQueue(driver.memory, index: $0, size: 8) }
        #expect(driver.negotiate() & MMIODriver.Status.featuresOK != 0)
        for (index, queue) in queues.enumerated() { driver.setUpQueue(index, queue) }
        let buffer = try queues[2].allocate(bytes: Self.statsBytes([(5, 4096)]))
        try queues[2].makeAvailable(try queues[2].addChain([.readable(buffer, 10)]))
        driver.addStatus(MMIODriver.Status.driverOK)
        #expect(device.statistics?.totalMemory == 4096)
        #expect(device.requestStatistics())
        #expect(try queues[2].takeUsed().count == 1)
    }
}

/// An event registry whose timers and posted work run when a test says so.
final class FakeEventRegistry: EventRegistry {
    struct Timer: Sendable {
        var token: EventToken
        var after: Int
        var period: Int?
        var handler: @Sendable () -> Void
    }

    private struct State {
        var next: UInt64 = 1
        var timers: [Timer] = []
        var posted: [@Sendable () -> Void] = []
    }

    private let state = Mutex(State())

    var timers: [Timer] { state.withLock { $0.timers } }

    func subscribe(_ fd: Int32, interest: EventInterest, handler: @escaping @Sendable (EventReadiness) -> Void) throws
        -> EventToken
    {
        state.withLock { s in
            defer { s.next += 1 }
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
            s.timers.append(Timer(token: token, after: milliseconds, period: periodMilliseconds, handler: handler))
            return token
        }
    }

    func post(_ work: @escaping @Sendable () -> Void) {
        state.withLock { $0.posted.append(work) }
    }

    /// Runs every timer's handler once, as if each came due.
    func fireTimers() {
        for timer in timers { timer.handler() }
    }

    /// Runs the posted work, in order.
    func runPosted() {
        let work = state.withLock { s in
            defer { s.posted = [] }
            return s.posted
        }
        for item in work { item() }
    }
}
