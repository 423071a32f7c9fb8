import Foundation
import Synchronization
import SwiftVMDevices
import Testing
import SwiftVMMemory

/// Hostile descriptor chains, each sent to a running block device. The device
/// must hand the chain back with a used length of 0 (or, where the ring
/// itself is broken, set DEVICE_NEEDS_RESET) and keep serving the driver.
@Suite("split virtqueue: hostile drivers")
struct VirtioSplitQueueHostileTests {
    typealias Flag = SplitQueue.DescriptorFlag
    typealias T = VirtioBlock.RequestType

    /// Makes `head` available, follows it with a good read, and checks that
    /// the bad chain came back empty while the good one was served.
    func expectDroppedThenServed(_ rig: BlockRig, head: UInt16, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try rig.queue.makeAvailable(head)
        let (status, data) = try rig.submit(type: T.read, sector: 1, readLength: 512)
        rig.driver.kick()
        let used = try rig.queue.takeUsed()
        #expect(used.first == .init(id: UInt32(head), length: 0), sourceLocation: sourceLocation)
        #expect(used.count == 2, sourceLocation: sourceLocation)
        #expect(try rig.statusByte(status) == VirtioBlock.RequestStatus.ok, sourceLocation: sourceLocation)
        #expect(try rig.driver.memory.read(at: #require(data), count: 512) == BlockRig.diskPattern(512, from: 512), sourceLocation: sourceLocation)
        #expect(rig.driver.status & MMIODriver.Status.needsReset == 0, sourceLocation: sourceLocation)
        #expect(rig.backend.bytes == BlockRig.diskPattern(64 * 512), "the disk is untouched", sourceLocation: sourceLocation)
    }

    /// A write request whose data descriptor is replaced by `bad`.
    func writeChain(_ rig: BlockRig, bad: (address: GuestAddress, length: UInt32)) throws -> UInt16 {
        let header = try rig.queue.allocate(bytes: BlockRig.header(type: T.write, sector: 0))
        let status = try rig.queue.allocate(1)
        let head = rig.queue.reserveDescriptors(3)
        try rig.queue.writeDescriptor(head, address: header, length: 16, flags: Flag.next, next: head + 1)
        try rig.queue.writeDescriptor(head + 1, address: bad.address, length: bad.length, flags: Flag.next, next: head + 2)
        try rig.queue.writeDescriptor(head + 2, address: status, length: 1, flags: Flag.write)
        return head
    }

    @Test func descriptorPointingAtItself() throws {
        let rig = try BlockRig()
        let buffer = try rig.queue.allocate(16)
        let head = rig.queue.reserveDescriptors(1)
        try rig.queue.writeDescriptor(head, address: buffer, length: 16, flags: Flag.next, next: head)
        try expectDroppedThenServed(rig, head: head)
    }

    @Test func chainLongerThanTheQueue() throws {
        // Every descriptor of a 4-entry table, then back to the start.
        let rig = try BlockRig(queueSize: 4)
        let buffer = try rig.queue.allocate(16)
        _ = rig.queue.reserveDescriptors(4)
        for i in 0..<4 as Range<UInt16> {
            try rig.queue.writeDescriptor(i, address: buffer, length: 16, flags: Flag.next, next: (i + 1) % 4)
        }
        try rig.queue.makeAvailable(0)
        rig.driver.kick()
        #expect(try rig.queue.takeUsed() == [.init(id: 0, length: 0)])
        #expect(rig.driver.status & MMIODriver.Status.needsReset == 0)
    }

    @Test func loopInsideAnIndirectTable() throws {
        let rig = try BlockRig()
        let buffer = try rig.queue.allocate(16)
        let table = try rig.queue.allocate(32)
        try rig.queue.writeDescriptor(0, in: table, address: buffer, length: 16, flags: Flag.next, next: 1)
        try rig.queue.writeDescriptor(1, in: table, address: buffer, length: 16, flags: Flag.next, next: 0)
        let head = try rig.queue.addIndirectDescriptor(table: table, length: 32)
        try expectDroppedThenServed(rig, head: head)
    }

    @Test func nextIndexOutOfRange() throws {
        let rig = try BlockRig()
        let buffer = try rig.queue.allocate(16)
        let head = rig.queue.reserveDescriptors(1)
        try rig.queue.writeDescriptor(head, address: buffer, length: 16, flags: Flag.next, next: 200)
        try expectDroppedThenServed(rig, head: head)
    }

    @Test func headIndexOutOfRangeNeedsAReset() throws {
        let rig = try BlockRig()
        try rig.queue.makeAvailable(99)
        let (status, _) = try rig.submit(type: T.read, sector: 0, readLength: 512)
        rig.driver.kick()
        #expect(rig.driver.status & MMIODriver.Status.needsReset != 0)
        #expect(try rig.statusByte(status) == 0xff, "the queue stopped")
        #expect(rig.driver.read(MMIODriver.Register.interruptStatus) & 2 != 0)
        // The driver recovers by resetting the device.
        let queue = try MockDriverQueue(memory: rig.driver.memory, size: 16, base: 0x8_0000, data: 0x20_0000)
        #expect(rig.driver.initialize(queues: [queue]) & MMIODriver.Status.driverOK != 0)
        #expect(rig.driver.status & MMIODriver.Status.needsReset == 0)
    }

    @Test(arguments: [
        (0x4000_0000, 512),       // beyond the end of RAM
        ((16 << 20) - 256, 512),  // starts in RAM, ends outside
    ] as [(UInt64, UInt32)])
    func bufferOutsideGuestRAM(_ address: UInt64, _ length: UInt32) throws {
        let rig = try BlockRig()
        let head = try writeChain(rig, bad: (GuestAddress(address), length))
        try expectDroppedThenServed(rig, head: head)
    }

    @Test func bufferAddressPlusLengthOverflows() throws {
        let rig = try BlockRig()
        let head = try writeChain(rig, bad: (GuestAddress(0xffff_ffff_ffff_ff00), 0x200))
        try expectDroppedThenServed(rig, head: head)
    }

    @Test func readableBufferAfterAWritableOne() throws {
        let rig = try BlockRig()
        let header = try rig.queue.allocate(bytes: BlockRig.header(type: T.read, sector: 0))
        let data = try rig.queue.allocate(512)
        let status = try rig.queue.allocate(1, fill: 0xff)
        let head = try rig.queue.addChain([.readable(header, 16), .writable(data, 512), .readable(status, 1)])
        try expectDroppedThenServed(rig, head: head)
        #expect(try rig.statusByte(status) == 0xff)
    }

    @Test(arguments: [0, 17, 16 * 17] as [UInt32])
    func indirectTableWithABadLength(_ length: UInt32) throws {
        let rig = try BlockRig()
        let table = try rig.queue.allocate(16 * 17)
        let buffer = try rig.queue.allocate(16)
        for i in 0..<17 as Range<UInt16> {
            try rig.queue.writeDescriptor(i, in: table, address: buffer, length: 16, flags: i < 16 ? Flag.next : 0, next: i + 1)
        }
        let head = try rig.queue.addIndirectDescriptor(table: table, length: length)
        try expectDroppedThenServed(rig, head: head)
    }

    @Test func nestedIndirectTable() throws {
        let rig = try BlockRig()
        let inner = try rig.queue.allocate(16)
        let outer = try rig.queue.allocate(16)
        try rig.queue.writeDescriptor(0, in: inner, address: try rig.queue.allocate(16), length: 16, flags: Flag.write)
        try rig.queue.writeDescriptor(0, in: outer, address: inner, length: 16, flags: Flag.indirect)
        let head = try rig.queue.addIndirectDescriptor(table: outer, length: 16)
        try expectDroppedThenServed(rig, head: head)
    }

    @Test func indirectDescriptorThatAlsoHasNext() throws {
        let rig = try BlockRig()
        let table = try rig.queue.allocate(16)
        try rig.queue.writeDescriptor(0, in: table, address: try rig.queue.allocate(16), length: 16, flags: Flag.write)
        let head = try rig.queue.addIndirectDescriptor(table: table, length: 16, extraFlags: Flag.next)
        try expectDroppedThenServed(rig, head: head)
    }

    @Test func indirectTableOutsideGuestRAM() throws {
        let rig = try BlockRig()
        let head = try rig.queue.addIndirectDescriptor(table: GuestAddress(0x4000_0000), length: 32)
        try expectDroppedThenServed(rig, head: head)
    }

    @Test func indirectDescriptorWithoutTheFeature() throws {
        let offered = try BlockRig().driver.deviceFeatures
        let rig = try BlockRig(features: offered & ~VirtioFeature.indirectDescriptors)
        let (status, _) = try rig.submit(type: T.read, sector: 0, readLength: 512, indirect: true)
        rig.driver.kick()
        #expect(try rig.queue.takeUsed() == [.init(id: 0, length: 0)])
        #expect(try rig.statusByte(status) == 0xff)
    }

    @Test(arguments: [17, 100, 0x8000] as [UInt16])
    func availIndexRunningMoreThanAQueueAhead(_ jump: UInt16) throws {
        let rig = try BlockRig()
        let header = try rig.queue.allocate(bytes: BlockRig.header(type: T.read, sector: 0))
        let status = try rig.queue.allocate(1, fill: 0xff)
        _ = try rig.queue.addChain([.readable(header, 16), .writable(status, 1)])
        try rig.queue.setAvailIndex(jump)
        rig.driver.kick()
        #expect(rig.driver.status & MMIODriver.Status.needsReset != 0)
        #expect(rig.queue.usedIndex == 0, "nothing was consumed")
        // The transport still answers, and further kicks do nothing.
        rig.driver.kick()
        #expect(rig.driver.read(MMIODriver.Register.magic) == 0x7472_6976)
        #expect(rig.queue.usedIndex == 0)
    }

    @Test func aFullRingIsNotTooFarAhead() throws {
        // Four one-descriptor chains fill a 4-entry queue: exactly `size`
        // outstanding is allowed. Without a header each is an I/O error.
        let rig = try BlockRig(queueSize: 4)
        for _ in 0..<4 {
            try rig.queue.makeAvailable(try rig.queue.addChain([.writable(try rig.queue.allocate(1, fill: 0xff), 1)]))
        }
        rig.driver.kick()
        #expect(try rig.queue.takeUsed() == Array(repeating: .init(id: 0, length: 1), count: 1) + [1, 2, 3].map { .init(id: $0, length: 1) })
        #expect(rig.driver.status & MMIODriver.Status.needsReset == 0)
    }
}

@Suite("split virtqueue: notification suppression")
struct VirtioSplitQueueNotificationTests {
    typealias T = VirtioBlock.RequestType

    @Test func eventIndexInterruptsOnlyOnceUsedEventIsPassed() throws {
        let rig = try BlockRig()
        try rig.queue.setUsedEvent(1)
        try rig.submit(type: T.getID, readLength: 20)
        rig.driver.kick()
        #expect(rig.queue.usedIndex == 1)
        #expect(rig.driver.interrupt.count == 0, "used.idx 1 has not passed used_event 1")
        try rig.submit(type: T.getID, readLength: 20)
        rig.driver.kick()
        #expect(rig.queue.usedIndex == 2)
        #expect(rig.driver.interrupt.count == 1)
        #expect(rig.driver.read(MMIODriver.Register.interruptStatus) == 1)
    }

    @Test func eventIndexPublishesAvailEventWhenTheRingRunsDry() throws {
        let rig = try BlockRig()
        for _ in 0..<3 { try rig.submit(type: T.getID, readLength: 20) }
        rig.driver.kick()
        #expect(rig.queue.availEvent == 3, "the device asks to be kicked for entry 3")
    }

    @Test func withoutEventIndexNoInterruptFlagSuppresses() throws {
        let offered = try BlockRig().driver.deviceFeatures
        let rig = try BlockRig(features: offered & ~VirtioFeature.eventIndex)
        try rig.queue.setAvailFlags(SplitQueue.availNoInterrupt)
        try rig.queue.setUsedEvent(0)
        try rig.submit(type: T.getID, readLength: 20)
        rig.driver.kick()
        #expect(rig.queue.usedIndex == 1)
        #expect(rig.driver.interrupt.count == 0)
        #expect(rig.queue.availEvent == 0, "avail_event is not used without EVENT_IDX")
        try rig.queue.setAvailFlags(0)
        try rig.submit(type: T.getID, readLength: 20)
        rig.driver.kick()
        #expect(rig.driver.interrupt.count == 1)
    }

    @Test func noInterruptWhenNothingWasUsed() throws {
        let rig = try BlockRig()
        rig.driver.kick()
        #expect(rig.driver.interrupt.count == 0)
    }
}

@Suite("split virtqueue: layout")
struct VirtioSplitQueueLayoutTests {
    let memory: GuestMemory

    init() throws {
        memory = try GuestMemory(regions: [(GuestAddress(0), 1 << 20)])
    }

    func layout(size: UInt16 = 16, desc: UInt64 = 0x1000, avail: UInt64 = 0x2000, used: UInt64 = 0x3000) -> SplitQueue.Layout {
        SplitQueue.Layout(size: size, descriptorTable: GuestAddress(desc), availableRing: GuestAddress(avail), usedRing: GuestAddress(used))
    }

    @Test func acceptsAWellPlacedQueue() throws {
        try SplitQueue.validate(layout(), memory: memory)
        try SplitQueue.validate(layout(size: 32768, desc: 0x10_0000 - 16 * 32768, avail: 0, used: 0x1_0000), memory: memory)
    }

    @Test(arguments: [0, 3, 24, 65535] as [UInt16])
    func rejectsSizes(_ size: UInt16) {
        #expect(throws: SplitQueue.LayoutError.invalidSize(size)) {
            try SplitQueue.validate(layout(size: size), memory: memory)
        }
    }

    @Test func rejectsMisalignment() {
        #expect(throws: SplitQueue.LayoutError.misaligned(part: "used ring", address: GuestAddress(0x3002), alignment: 4)) {
            try SplitQueue.validate(layout(used: 0x3002), memory: memory)
        }
    }

    @Test func rejectsRingsRunningOffTheEndOfRAM() {
        #expect(throws: SplitQueue.LayoutError.outsideMemory(part: "available ring", address: GuestAddress(0xf_fff0), length: 38)) {
            try SplitQueue.validate(layout(avail: 0xf_fff0), memory: memory)
        }
    }

    @Test func aDisabledQueueNeitherPopsNorPublishes() throws {
        let driver = try MockDriverQueue(memory: memory, size: 16, base: 0x1000, data: 0x8_0000)
        let queue = try SplitQueue(memory: memory, layout: driver.layout, eventIndex: false, indirectDescriptors: false)
        let buffer = try driver.allocate(8)
        try driver.makeAvailable(try driver.addChain([.writable(buffer, 8)]))
        let chain = try #require(queue.popAvailable())
        #expect(chain.head == 0)
        #expect(Array(chain) == [GuestBuffer(address: buffer, length: 8, isWritable: true)])
        #expect(queue.popAvailable() == nil)
        queue.disable()
        queue.addUsed(head: chain.head, length: 8)
        #expect(driver.usedIndex == 0)
        try driver.makeAvailable(try driver.addChain([.writable(buffer, 8)]))
        #expect(queue.popAvailable() == nil)
        #expect(!queue.needsNotification())
    }

    @Test func chainsSplitIntoReadableAndWritableParts() throws {
        let driver = try MockDriverQueue(memory: memory, size: 16, base: 0x1000, data: 0x8_0000)
        let queue = try SplitQueue(memory: memory, layout: driver.layout, eventIndex: false, indirectDescriptors: true)
        let a = try driver.allocate(4), b = try driver.allocate(6), c = try driver.allocate(10)
        try driver.makeAvailable(try driver.addIndirectChain([.readable(a, 4), .readable(b, 6), .writable(c, 10)]))
        let chain = try #require(queue.popAvailable())
        #expect(chain.readable.map(\.address) == [a, b])
        #expect(chain.writable.map(\.address) == [c])
        #expect(chain.readableLength == 10)
        #expect(chain.writableLength == 10)
    }
}

/// A driver thread and a device thread sharing one queue, as a guest vCPU and
/// the event loop do, with VIRTIO_F_EVENT_IDX suppressing most kicks and
/// interrupts. Each side sleeps until the other notifies it, so a lost
/// notification (a skipped re-check or a missing store-load fence, §2.7.10)
/// shows as a time-out, and a used element or reply seen before it was
/// written as a wrong answer. Under scripts/test-tsan.sh the index atomics
/// are checked too.
@Suite("split virtqueue: concurrent driver and device")
struct VirtioSplitQueueConcurrencyTests {
    static let requests = 4000
    /// Long enough for a slow sanitizer build; a lost notification waits forever.
    static let patience: DispatchTimeInterval = .seconds(20)

    /// The reply the device writes for request `sequence`.
    static func reply(to sequence: UInt32) -> UInt32 { sequence ^ 0xa5a5_5a5a }

    struct DriverReport: Sendable {
        var completions: [Int] = Array(repeating: 0, count: VirtioSplitQueueConcurrencyTests.requests)
        var problems: [String] = []
        var kicks = 0
    }

    struct DeviceReport: Sendable {
        /// The request sequence numbers in the order the device served them.
        var served: [UInt32] = []
        var problems: [String] = []
        var interrupts = 0
    }

    /// Small queues keep the device running dry, so most requests meet the
    /// notification handshake; 16 lets requests pile up.
    @Test(arguments: [2, 4, 16] as [UInt16])
    func everyRequestCompletesOnceAndInOrder(queueSize: UInt16) throws {
        let memory = try GuestMemory(regions: [(GuestAddress(0), 4 << 20)])
        // Set up (zero the rings) before either thread runs.
        let driver = try MockDriverQueue(memory: memory, size: queueSize)
        let queue = try SplitQueue(memory: memory, layout: driver.layout, eventIndex: true, indirectDescriptors: false)
        // One request buffer per descriptor, reused whenever it is.
        let buffers = try (0..<queueSize).map { _ in try driver.allocate(8) }
        let kick = DispatchSemaphore(value: 0)
        let interrupt = DispatchSemaphore(value: 0)
        let handoff = Handoff(driver)

        let deviceThread = JoinableThread {
            Self.runDevice(queue: queue, memory: memory, kick: kick, interrupt: interrupt)
        }
        let driverThread = JoinableThread {
            Self.runDriver(handoff.value, queueSize: queueSize, buffers: buffers, kick: kick, interrupt: interrupt)
        }
        // Each side gives up after `patience` without a notification.
        let deadline = DispatchTime.now() + .seconds(120)
        let driverReport = try #require(driverThread.join(before: deadline), "the driver thread hangs")
        let deviceReport = try #require(deviceThread.join(before: deadline), "the device thread hangs")

        #expect(driverReport.problems == [])
        #expect(deviceReport.problems == [])
        #expect(queue.failure == nil)
        #expect(deviceReport.served == (0..<UInt32(Self.requests)).map { $0 }, "served once each, in order")
        let wrong = driverReport.completions.enumerated().filter { $0.element != 1 }.prefix(5)
        #expect(wrong.isEmpty, "requests completed other than once: \(Array(wrong))")
        // Notifications flowed, at most one per request.
        #expect((1...Self.requests).contains(driverReport.kicks))
        #expect((1...Self.requests).contains(deviceReport.interrupts))
    }

    /// The device: serve every chain (copy the request number into the
    /// reply), interrupt when the driver asked, sleep until kicked.
    static func runDevice(
        queue: SplitQueue, memory: GuestMemory, kick: DispatchSemaphore, interrupt: DispatchSemaphore
    ) -> DeviceReport {
        var report = DeviceReport()
        while report.served.count < requests {
            while let chain = queue.popAvailable() {
                do {
                    let request = try #require(chain.readable.first)
                    let reply = try #require(chain.writable.first)
                    let sequence = try memory.load(UInt32.self, at: request.address)
                    try memory.store(Self.reply(to: sequence), at: reply.address)
                    report.served.append(sequence)
                } catch {
                    report.problems.append("request at head \(chain.head): \(error)")
                }
                queue.addUsed(head: chain.head, length: 4)
                if queue.needsNotification() {
                    report.interrupts += 1
                    interrupt.signal()
                }
            }
            if let failure = queue.failure {
                report.problems.append("queue failed: \(failure)")
                break
            }
            guard report.served.count < requests else { break }
            if kick.wait(timeout: .now() + patience) == .timedOut {
                report.problems.append("no kick with \(report.served.count) of \(requests) served: a lost notification")
                break
            }
        }
        return report
    }

    /// The driver: keep the ring as full as its descriptors allow (two per
    /// request), kick when the device asked, check replies in order, and
    /// sleep for an interrupt when nothing is left to do.
    static func runDriver(
        _ driver: MockDriverQueue, queueSize: UInt16, buffers: [GuestAddress], kick: DispatchSemaphore,
        interrupt: DispatchSemaphore
    ) -> DriverReport {
        var report = DriverReport()
        var outstanding: [(head: UInt16, sequence: UInt32)] = []
        var nextSequence: UInt32 = 0
        var completed = 0
        do {
            while completed < requests {
                let old = driver.availIndex
                while Int(nextSequence) < requests, 2 * (outstanding.count + 1) <= Int(queueSize) {
                    let first = Int(driver.nextDescriptor)
                    let request = buffers[first], reply = buffers[(first + 1) % Int(queueSize)]
                    try driver.memory.store(nextSequence, at: request)
                    try driver.memory.store(UInt32.max, at: reply)
                    let head = try driver.addChain([.readable(request, 4), .writable(reply, 4)])
                    try driver.makeAvailable(head)
                    outstanding.append((head, nextSequence))
                    nextSequence += 1
                }
                if driver.availIndex != old, driver.kickNeeded(since: old) {
                    report.kicks += 1
                    kick.signal()
                }
                let used = try driver.takeUsed()
                if used.isEmpty {
                    if try driver.enableInterrupts() { continue }
                    if interrupt.wait(timeout: .now() + patience) == .timedOut {
                        report.problems.append("no interrupt with \(completed) of \(requests) complete: a lost notification")
                        break
                    }
                    continue
                }
                for element in used {
                    guard let expected = outstanding.first else {
                        report.problems.append("used element \(element) with nothing outstanding")
                        return report
                    }
                    outstanding.removeFirst()
                    let reply = buffers[(Int(expected.head) + 1) % Int(queueSize)]
                    let answer = try driver.memory.load(UInt32.self, at: reply)
                    guard element == .init(id: UInt32(expected.head), length: 4),
                          answer == Self.reply(to: expected.sequence)
                    else {
                        report.problems.append(
                            "request \(expected.sequence) at head \(expected.head): used \(element), reply \(answer)")
                        return report
                    }
                    report.completions[Int(expected.sequence)] += 1
                    completed += 1
                }
            }
        } catch {
            report.problems.append("driver: \(error)")
        }
        return report
    }

}

/// A thread started at once, from the caller, whose result can be awaited.
/// Started from a task instead, it could wait behind other tests that block
/// the cooperative threads, and its partner would time out.
final class JoinableThread<Result: Sendable>: Sendable {
    private let result = Mutex<Result?>(nil)
    private let finished = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable () -> Result) {
        Thread { [self] in
            let value = body()
            result.withLock { $0 = value }
            finished.signal()
        }.start()
    }

    /// The thread's result, or nil if it has not finished by `deadline`.
    func join(before deadline: DispatchTime) -> Result? {
        guard finished.wait(timeout: deadline) == .success else { return nil }
        return result.withLock { $0 }
    }
}

/// Hands a value that is not Sendable to the one thread that uses it from
/// then on.
struct Handoff<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The per-access checks behind ``SplitQueue/validate(_:memory:)``: a queue
/// built without validation whose shared index fields are misaligned or
/// outside guest RAM must stop with a ``SplitQueue/failure``, not crash.
@Suite("split virtqueue: ring index checks")
struct VirtioSplitQueueIndexCheckTests {
    /// Which ring field is broken, and how the device first touches it.
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var availableRing: UInt64 = 0x2000
        var usedRing: UInt64 = 0x3000
        /// Make one chain available and hand it back before checking.
        var useOneChain = false
        var expected: String

        var testDescription: String { name }
    }

    static let size: UInt16 = 16
    static let ramEnd: UInt64 = 1 << 20

    static let cases: [Case] = [
        Case(name: "avail.idx misaligned", availableRing: 0x2001, expected: "not 2-byte aligned"),
        Case(name: "avail.idx outside RAM", availableRing: ramEnd, expected: "outside guest RAM"),
        Case(name: "used.idx misaligned", usedRing: 0x3001, useOneChain: true, expected: "not 2-byte aligned"),
        // used_event follows the ring entries, which still fit.
        Case(name: "used_event outside RAM", availableRing: ramEnd - 4 - 2 * UInt64(size), useOneChain: true,
             expected: "outside guest RAM"),
        // avail_event follows the used elements, which still fit.
        Case(name: "avail_event outside RAM", usedRing: ramEnd - 4 - 8 * UInt64(size), expected: "outside guest RAM"),
        Case(name: "avail_event misaligned", usedRing: 0x3001, expected: "not 2-byte aligned"),
    ]

    @Test(arguments: cases)
    func brokenIndexFailsTheQueue(_ broken: Case) throws {
        let memory = try GuestMemory(regions: [(GuestAddress(0), Self.ramEnd)])
        let layout = SplitQueue.Layout(
            size: Self.size, descriptorTable: GuestAddress(0x1000),
            availableRing: GuestAddress(broken.availableRing), usedRing: GuestAddress(broken.usedRing))
        #expect(throws: SplitQueue.LayoutError.self) { try SplitQueue.validate(layout, memory: memory) }
        let queue = SplitQueue(
            memory: memory, unvalidated: layout, eventIndex: true, indirectDescriptors: false)
        if broken.useOneChain {
            // Descriptor 0: an 8-byte writable buffer; avail.idx 1.
            try memory.store(UInt64(0x8_0000), at: GuestAddress(0x1000))
            try memory.store(UInt32(8), at: GuestAddress(0x1008))
            try memory.store(SplitQueue.DescriptorFlag.write, at: GuestAddress(0x100c))
            try memory.store(UInt16(1), at: GuestAddress(broken.availableRing + 2))
            let chain = try #require(queue.popAvailable())
            queue.addUsed(head: chain.head, length: 8)
        }
        // With avail.idx unreadable this stops the queue, with EVENT_IDX on
        // an empty ring it writes avail_event; afterwards it is a no-op.
        #expect(queue.popAvailable() == nil)
        #expect(!queue.needsNotification())
        let failure = try #require(queue.failure)
        #expect(failure.contains(broken.expected), "\(failure)")
        #expect(queue.popAvailable() == nil)
    }
}
