import SwiftVMDevices
import Testing
import SwiftVMMemory

/// Fills buffers with a counting pattern so tests can check the bytes.
let patternEntropy: VirtioRNG.EntropySource = { buffer in
    for i in 0..<buffer.count { buffer[i] = UInt8(truncatingIfNeeded: i &+ 1) }
    return true
}

@Suite("virtio-mmio transport")
struct VirtioMMIOTransportTests {
    typealias R = MMIODriver.Register
    typealias S = MMIODriver.Status

    func rngDriver() throws -> MMIODriver {
        try MMIODriver(device: VirtioRNG(entropy: patternEntropy))
    }

    @Test func identifiesAsAModernVirtioDevice() throws {
        let driver = try rngDriver()
        #expect(driver.read(R.magic) == 0x7472_6976)
        #expect(driver.read(R.version) == 2)
        #expect(driver.read(R.deviceID) == 4)
        #expect(driver.read(R.vendorID) == VirtioMMIOTransport.vendorID)
        driver.write(R.queueSel, 0)
        #expect(driver.read(R.queueNumMax) == 256)
        driver.write(R.queueSel, 1)
        #expect(driver.read(R.queueNumMax) == 0, "a queue the device lacks has no size")
        #expect(VirtioMMIOTransport.windowSize == 0x1000)
        #expect(driver.transport.queueNotifyOffset == 0x50)
    }

    @Test func offersVersion1InTheSecondFeatureWord() throws {
        let driver = try rngDriver()
        let features = driver.deviceFeatures
        #expect(features & VirtioFeature.version1 != 0)
        #expect(features & VirtioFeature.eventIndex != 0)
        driver.write(R.deviceFeaturesSel, 2)
        #expect(driver.read(R.deviceFeatures) == 0)
    }

    @Test func fullInitSequenceThenARequestInterruptsTheGuest() throws {
        let driver = try rngDriver()
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        #expect(driver.negotiate() == S.acknowledge | S.driver | S.featuresOK)
        driver.setUpQueue(0, queue)
        driver.write(R.queueSel, 0)
        #expect(driver.read(R.queueReady) == 1)
        driver.addStatus(S.driverOK)
        #expect(driver.status == S.acknowledge | S.driver | S.featuresOK | S.driverOK)

        let buffer = try queue.allocate(8)
        try queue.makeAvailable(try queue.addChain([.writable(buffer, 8)]))
        driver.write(R.queueNotify, 0)
        #expect(driver.kicks.arguments == [0], "the kick goes to the event loop")
        #expect(try queue.takeUsed().isEmpty, "nothing is processed on the vCPU thread")

        driver.runEventLoop()
        #expect(try queue.takeUsed() == [.init(id: 0, length: 8)])
        #expect(try driver.memory.read(at: buffer, count: 8) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(driver.interrupt.count == 1)
        #expect(driver.read(R.interruptStatus) == 1)
        driver.write(R.interruptACK, 1)
        #expect(driver.read(R.interruptStatus) == 0)
    }

    @Test func withoutAHandlerNotificationsAreProcessedInline() throws {
        let driver = try rngDriver()
        driver.transport.queueNotificationHandler = nil
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.initialize(queues: [queue])
        try queue.makeAvailable(try queue.addChain([.writable(try queue.allocate(4), 4)]))
        driver.write(R.queueNotify, 0)
        #expect(try queue.takeUsed() == [.init(id: 0, length: 4)])
    }

    @Test func notifyingAQueueThatDoesNotExistIsIgnored() throws {
        let driver = try rngDriver()
        driver.initialize(queues: [try MockDriverQueue(memory: driver.memory, size: 16)])
        driver.write(R.queueNotify, 7)
        #expect(driver.kicks.count == 0)
        driver.transport.processQueue(7)
        #expect(driver.status & S.needsReset == 0)
    }

    @Test func processingBeforeDriverOKDoesNothing() throws {
        let driver = try rngDriver()
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.negotiate()
        driver.setUpQueue(0, queue)
        try queue.makeAvailable(try queue.addChain([.writable(try queue.allocate(4), 4)]))
        driver.kick()
        #expect(try queue.takeUsed().isEmpty)
        #expect(driver.interrupt.count == 0)
    }

    // MARK: Feature negotiation

    @Test func refusesFeaturesThatWereNotOffered() throws {
        let driver = try rngDriver()
        let status = driver.negotiate(features: driver.deviceFeatures | 1 << 40)
        #expect(status == S.acknowledge | S.driver, "FEATURES_OK reads back clear")
        driver.addStatus(S.driverOK)
        #expect(driver.status & S.driverOK == 0)
    }

    @Test func refusesADriverWithoutVersion1() throws {
        let driver = try rngDriver()
        #expect(driver.negotiate(features: VirtioFeature.eventIndex) == S.acknowledge | S.driver)
    }

    @Test func refusesFeatureBitsAbove63() throws {
        let driver = try rngDriver()
        driver.write(R.status, 0)
        driver.addStatus(S.acknowledge)
        driver.addStatus(S.driver)
        driver.writeDriverFeatures(driver.deviceFeatures)
        driver.write(R.driverFeaturesSel, 2)
        driver.write(R.driverFeatures, 1)
        driver.addStatus(S.featuresOK)
        #expect(driver.status == S.acknowledge | S.driver)
    }

    @Test func ignoresFeatureWritesAfterFeaturesOK() throws {
        let spy = SpyDevice()
        let driver = try MMIODriver(device: spy)
        driver.negotiate(features: VirtioFeature.version1 | 1 << 3)
        driver.write(R.driverFeaturesSel, 0)
        driver.write(R.driverFeatures, 0)
        driver.addStatus(S.driverOK)
        #expect(spy.activations == [VirtioFeature.version1 | 1 << 3])
    }

    @Test func activationCarriesTheNegotiatedFeaturesAndOnlyReadyQueues() throws {
        let spy = SpyDevice()
        let driver = try MMIODriver(device: spy)
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.negotiate(features: VirtioFeature.version1)
        let resetsDuringInit = spy.resets
        driver.setUpQueue(1, queue)
        driver.addStatus(S.driverOK)
        #expect(spy.activations == [VirtioFeature.version1])
        let queues = spy.lastActivation?.queues ?? []
        #expect(queues.count == 2)
        #expect(queues.first.flatMap { $0 } == nil)
        #expect(queues.last.flatMap { $0 }?.layout == queue.layout)
        driver.kick(1)
        driver.kick(0)
        #expect(spy.processed == [1], "only the running queue is served")
        driver.write(R.status, 0)
        #expect(spy.resets == resetsDuringInit + 1)
        #expect(spy.lastActivation == nil)
    }

    @Test func configSpaceIsByteGranularAndWritesAreForwarded() throws {
        let spy = SpyDevice()
        let driver = try MMIODriver(device: spy)
        var byte: UInt8 = 0
        withUnsafeMutableBytes(of: &byte) { driver.transport.read(offset: R.config + 5, into: $0) }
        #expect(byte == 5)
        var wide: UInt64 = 0
        withUnsafeMutableBytes(of: &wide) { driver.transport.read(offset: R.config + 8, into: $0) }
        #expect(wide == 0x0f0e_0d0c_0b0a_0908)
        withUnsafeBytes(of: UInt16(0xbeef).littleEndian) { driver.transport.write(offset: R.config + 2, from: $0) }
        #expect(spy.configWrites.map(\.0) == [2])
        #expect(spy.configWrites.map(\.1) == [[0xef, 0xbe]])
    }

    // MARK: Status

    @Test func refusesDriverOKBeforeFeaturesOK() throws {
        let driver = try rngDriver()
        driver.write(R.status, S.acknowledge)
        driver.addStatus(S.driver)
        driver.addStatus(S.driverOK)
        #expect(driver.status == S.acknowledge | S.driver)
    }

    @Test(arguments: [
        [S.driver],
        [S.featuresOK],
        [S.acknowledge, S.acknowledge | S.featuresOK],
        [S.acknowledge, S.acknowledge | S.driver, S.acknowledge],
    ])
    func refusesOutOfOrderStatusWrites(_ writes: [UInt32]) throws {
        let driver = try rngDriver()
        var expected: UInt32 = 0
        for (i, value) in writes.enumerated() {
            driver.write(R.status, value)
            if i < writes.count - 1 { expected = value }
        }
        #expect(driver.status == expected)
    }

    @Test func failedMayBeSetAtAnyTime() throws {
        let driver = try rngDriver()
        driver.write(R.status, S.acknowledge)
        driver.addStatus(S.failed)
        #expect(driver.status == S.acknowledge | S.failed)
    }

    @Test func resetReturnsEverythingToItsInitialState() throws {
        let driver = try rngDriver()
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.initialize(queues: [queue])
        try queue.makeAvailable(try queue.addChain([.writable(try queue.allocate(4), 4)]))
        driver.kick()
        #expect(driver.read(R.interruptStatus) == 1)

        driver.write(R.status, 0)
        #expect(driver.status == 0)
        #expect(driver.read(R.interruptStatus) == 0)
        driver.write(R.queueSel, 0)
        #expect(driver.read(R.queueReady) == 0)
        // A request made after the reset is not served: the device stopped.
        try queue.makeAvailable(try queue.addChain([.writable(try queue.allocate(4), 4)]))
        driver.kick()
        #expect(queue.usedIndex == 1)

        // A fresh driver instance starts over with new rings.
        let fresh = try MockDriverQueue(memory: driver.memory, size: 8, base: 0x8_0000)
        #expect(driver.initialize(queues: [fresh]) & S.driverOK != 0)
        try fresh.makeAvailable(try fresh.addChain([.writable(try fresh.allocate(4), 4)]))
        driver.kick()
        #expect(try fresh.takeUsed() == [.init(id: 0, length: 4)])
    }

    @Test func resetClearsDeviceNeedsReset() throws {
        let driver = try rngDriver()
        driver.negotiate()
        driver.write(R.queueSel, 0)
        driver.write(R.queueNum, 3)
        #expect(driver.status & S.needsReset != 0)
        driver.write(R.status, 0)
        #expect(driver.status == 0)
    }

    // MARK: Queue setup

    @Test(arguments: [0, 3, 100, 512, 0x1_0000] as [UInt32])
    func rejectsQueueSizesThatAreNotAPowerOfTwoUpToTheMaximum(_ size: UInt32) throws {
        let driver = try rngDriver()
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.negotiate()
        driver.write(R.queueSel, 0)
        driver.write(R.queueNum, size)
        #expect(driver.status & S.needsReset != 0)
        driver.writeAddress(R.queueDescLow, queue.descriptorTable)
        driver.writeAddress(R.queueDriverLow, queue.availableRing)
        driver.writeAddress(R.queueDeviceLow, queue.usedRing)
        driver.write(R.queueReady, 1)
        #expect(driver.read(R.queueReady) == 0, "an invalid queue cannot be enabled")
    }

    @Test(arguments: [
        (MMIODriver.Register.queueDescLow, 0x1_0008),
        (MMIODriver.Register.queueDriverLow, 0x1_1001),
        (MMIODriver.Register.queueDeviceLow, 0x1_2002),
    ] as [(UInt64, UInt64)])
    func rejectsMisalignedRings(_ register: UInt64, _ address: UInt64) throws {
        let driver = try rngDriver()
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.negotiate()
        driver.write(R.queueSel, 0)
        driver.write(R.queueNum, 16)
        driver.writeAddress(R.queueDescLow, queue.descriptorTable)
        driver.writeAddress(R.queueDriverLow, queue.availableRing)
        driver.writeAddress(R.queueDeviceLow, queue.usedRing)
        driver.writeAddress(register, GuestAddress(address))
        driver.write(R.queueReady, 1)
        #expect(driver.read(R.queueReady) == 0)
        #expect(driver.status & S.needsReset != 0)
    }

    @Test(arguments: [(16 << 20) - 0x10, 0x4000_0000, 0xffff_ffff_ffff_fff0] as [UInt64])
    func rejectsRingsOutsideGuestMemory(_ address: UInt64) throws {
        let driver = try rngDriver()
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.negotiate()
        driver.write(R.queueSel, 0)
        driver.write(R.queueNum, 16)
        driver.writeAddress(R.queueDescLow, GuestAddress(address))
        driver.writeAddress(R.queueDriverLow, queue.availableRing)
        driver.writeAddress(R.queueDeviceLow, queue.usedRing)
        driver.write(R.queueReady, 1)
        #expect(driver.read(R.queueReady) == 0)
        #expect(driver.status & S.needsReset != 0)
    }

    @Test func writingQueueRegistersWhileReadyInvalidatesTheQueue() throws {
        let driver = try rngDriver()
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.negotiate()
        driver.setUpQueue(0, queue)
        driver.write(R.queueNum, 8)
        #expect(driver.read(R.queueReady) == 0)
        #expect(driver.status & S.needsReset != 0)
        driver.addStatus(S.driverOK)
        try queue.makeAvailable(try queue.addChain([.writable(try queue.allocate(4), 4)]))
        driver.kick()
        #expect(queue.usedIndex == 0, "the invalidated queue never runs")
    }

    @Test func switchingOffALiveQueueStopsItAndAsksForAReset() throws {
        let driver = try rngDriver()
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.initialize(queues: [queue])
        try queue.makeAvailable(try queue.addChain([.writable(try queue.allocate(4), 4)]))
        driver.kick()
        #expect(queue.usedIndex == 1)
        driver.write(R.queueSel, 0)
        driver.write(R.queueReady, 0)
        #expect(driver.read(R.queueReady) == 0)
        #expect(driver.status & S.needsReset != 0, "a queue switched off after DRIVER_OK cannot come back before a reset")
        #expect(driver.read(R.interruptStatus) & 2 != 0)
        driver.write(R.queueReady, 1)
        #expect(driver.read(R.queueReady) == 0)
        try queue.makeAvailable(try queue.addChain([.writable(try queue.allocate(4), 4)]))
        driver.kick()
        #expect(queue.usedIndex == 1, "the stopped queue is not served")

        driver.write(R.status, 0)
        let fresh = try MockDriverQueue(memory: driver.memory, size: 8, base: 0x8_0000)
        #expect(driver.initialize(queues: [fresh]) & S.driverOK != 0)
        try fresh.makeAvailable(try fresh.addChain([.writable(try fresh.allocate(4), 4)]))
        driver.kick()
        #expect(try fresh.takeUsed() == [.init(id: 0, length: 4)])
    }

    @Test func switchingOffAQueueBeforeDriverOKIsAllowed() throws {
        let driver = try rngDriver()
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.negotiate()
        driver.setUpQueue(0, queue)
        driver.write(R.queueReady, 0)
        #expect(driver.read(R.queueReady) == 0)
        #expect(driver.status & S.needsReset == 0)
        driver.write(R.queueReady, 1)
        #expect(driver.read(R.queueReady) == 1)
    }

    @Test func needsResetAfterDriverOKRaisesAConfigInterrupt() throws {
        let driver = try rngDriver()
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.initialize(queues: [queue])
        try queue.setAvailIndex(100)
        driver.kick()
        #expect(driver.status & S.needsReset != 0)
        #expect(driver.read(R.interruptStatus) & 2 != 0)
        #expect(driver.interrupt.count == 1)
    }

    // MARK: Register access rules

    @Test func accessesThatAreNot32BitsWideAreIgnored() throws {
        let driver = try rngDriver()
        var byte: UInt8 = 0xaa
        withUnsafeMutableBytes(of: &byte) { driver.transport.read(offset: R.magic, into: $0) }
        #expect(byte == 0)
        var half: UInt16 = 0xffff
        withUnsafeMutableBytes(of: &half) { driver.transport.read(offset: R.version, into: $0) }
        #expect(half == 0)
        withUnsafeBytes(of: UInt16(1)) { driver.transport.write(offset: R.status, from: $0) }
        #expect(driver.status == 0)
        // Misaligned 32-bit access.
        #expect(driver.read(R.magic + 1) == 0)
    }

    @Test func writesToReadOnlyRegistersChangeNothing() throws {
        let driver = try rngDriver()
        driver.write(R.magic, 0)
        driver.write(R.interruptStatus, 0xff)
        #expect(driver.read(R.magic) == 0x7472_6976)
        #expect(driver.read(R.interruptStatus) == 0)
    }

    @Test func configChangeBumpsTheGenerationAndInterrupts() throws {
        let driver = try rngDriver()
        let before = driver.read(R.configGeneration)
        driver.transport.notifier.signalConfigChange()
        #expect(driver.read(R.configGeneration) == before &+ 1)
        #expect(driver.read(R.interruptStatus) == 2)
        #expect(driver.interrupt.count == 1)
        #expect(driver.acknowledgeInterrupt() == 2)
        #expect(driver.read(R.interruptStatus) == 0)
    }

    @Test func resetWhileTheEventLoopProcessesIsSafe() async throws {
        let driver = try rngDriver()
        let queue = try MockDriverQueue(memory: driver.memory, size: 256)
        driver.initialize(queues: [queue])
        for _ in 0..<200 {
            try queue.makeAvailable(try queue.addChain([.writable(try queue.allocate(4096), 4096)]))
        }
        let transport = driver.transport
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for _ in 0..<50 { transport.processQueue(0) }
            }
            group.addTask {
                withUnsafeBytes(of: UInt32(0)) { transport.write(offset: 0x70, from: $0) }
            }
        }
        #expect(driver.status == 0)
        let served = queue.usedIndex
        driver.kick()
        #expect(queue.usedIndex == served, "nothing is served after the reset")
    }

    @Test func sharedMemoryRegionsReadAsAbsent() throws {
        let driver = try rngDriver()
        driver.write(0x0ac, 0)
        #expect(driver.read(0x0b0) == UInt32.max)
        #expect(driver.read(0x0b4) == UInt32.max)
    }
}
