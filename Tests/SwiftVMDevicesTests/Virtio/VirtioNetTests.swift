import SwiftVMDevices
import Synchronization
import Testing
import SwiftVMMemory

/// An event registry that records what a device subscribes and lets the
/// test fire readiness and run posted work, as the VMM's loop would.
fileprivate final class NetLoopDouble: EventRegistry {
    struct Subscription {
        var fd: Int32
        var interest: EventInterest
        var handler: @Sendable (EventReadiness) -> Void
    }

    private struct State {
        var next: UInt64 = 1
        var subscriptions: [UInt64: Subscription] = [:]
        var posted: [@Sendable () -> Void] = []
        var removed: [EventToken] = []
    }

    private let state = Mutex(State())

    func subscribe(_ fd: Int32, interest: EventInterest, handler: @escaping @Sendable (EventReadiness) -> Void) throws
        -> EventToken
    {
        state.withLock { s in
            defer { s.next += 1 }
            s.subscriptions[s.next] = Subscription(fd: fd, interest: interest, handler: handler)
            return EventToken(s.next)
        }
    }

    func modify(_ token: EventToken, interest: EventInterest) throws {
        state.withLock { $0.subscriptions[token.value]?.interest = interest }
    }

    func remove(_ token: EventToken) {
        state.withLock { s in
            s.subscriptions.removeValue(forKey: token.value)
            s.removed.append(token)
        }
    }

    func addTimer(afterMilliseconds milliseconds: Int, periodMilliseconds: Int?, handler: @escaping @Sendable () -> Void)
        -> EventToken
    {
        state.withLock { s in
            defer { s.next += 1 }
            return EventToken(s.next)
        }
    }

    func post(_ work: @escaping @Sendable () -> Void) {
        state.withLock { $0.posted.append(work) }
    }

    /// What the subscription on `fd` waits for, nil when there is none.
    func interest(of fd: Int32) -> EventInterest? {
        state.withLock { $0.subscriptions.values.first { $0.fd == fd }?.interest }
    }

    /// The handler subscribed on `fd`, to call it late as a loop mid-dispatch would.
    func handler(of fd: Int32) -> (@Sendable (EventReadiness) -> Void)? {
        state.withLock { $0.subscriptions.values.first { $0.fd == fd }?.handler }
    }

    var subscriptionCount: Int { state.withLock { $0.subscriptions.count } }
    var removedCount: Int { state.withLock { $0.removed.count } }
    var postedCount: Int { state.withLock { $0.posted.count } }

    /// Calls the handler subscribed on `fd`, as epoll reporting `readiness` would.
    func fire(_ fd: Int32, _ readiness: EventReadiness) {
        let handler = state.withLock { $0.subscriptions.values.first { $0.fd == fd }?.handler }
        handler?(readiness)
    }

    /// Runs the work posted so far, in order; returns how much there was.
    @discardableResult
    func runPosted() -> Int {
        let work = state.withLock { s in
            defer { s.posted.removeAll() }
            return s.posted
        }
        for item in work { item() }
        return work.count
    }
}

/// A virtio-net device activated straight from a driver's rings (receive
/// queue at 0x10000, transmit at 0x20000, buffers above 1 MiB and 8 MiB),
/// over an in-memory backend, with a fake event loop.
fileprivate final class NetRig {
    static let tapDescriptor: Int32 = 42
    static let guestMAC: [UInt8] = [0x06, 0x00, 0xac, 0x10, 0x00, 0x02]
    static let hostMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01]

    /// A receive buffer the driver posted.
    struct Posted {
        var head: UInt16
        var address: GuestAddress
        var size: Int
    }

    let memory: GuestMemory
    let backend: InMemoryNetBackend
    let device: VirtioNet
    let rx: MockDriverQueue
    let tx: MockDriverQueue
    let events = NetLoopDouble()
    let interrupt = CountingInterruptLine()
    let notifier: VirtioNotifier
    let features: UInt64
    private(set) var posted: [UInt16: Posted] = [:]

    /// - Parameters:
    ///   - features: what the driver accepts; all the device offers when nil.
    ///   - subscribe: give the device an event loop and the backend a descriptor.
    init(features: UInt64? = nil, mac: [UInt8]? = NetRig.guestMAC, queueSize: UInt16 = 16, subscribe: Bool = true) throws {
        memory = try GuestMemory(regions: [(GuestAddress(0), 16 << 20)])
        backend = InMemoryNetBackend(name: "mem0", readinessDescriptor: subscribe ? Self.tapDescriptor : nil)
        device = VirtioNet(id: "eth0", mac: mac, backend: backend)
        rx = try MockDriverQueue(memory: memory, size: queueSize, base: 0x1_0000, data: 0x10_0000)
        tx = try MockDriverQueue(memory: memory, size: queueSize, base: 0x2_0000, data: 0x80_0000)
        notifier = VirtioNotifier(name: "virtio-net", line: interrupt)
        let accepted = (features ?? device.offeredFeatures) | VirtioFeature.version1
        self.features = accepted
        let eventIndex = accepted & VirtioFeature.eventIndex != 0
        let queues = [
            try SplitQueue(memory: memory, layout: rx.layout, eventIndex: eventIndex, indirectDescriptors: false, label: "rx"),
            try SplitQueue(memory: memory, layout: tx.layout, eventIndex: eventIndex, indirectDescriptors: false, label: "tx"),
        ]
        device.activate(VirtioActivation(
            memory: memory, features: accepted, queues: queues, notifier: notifier, events: subscribe ? events : nil))
    }

    /// Features without mergeable buffers or any offload.
    static let plainFeatures = VirtioNet.Feature.mac | VirtioFeature.eventIndex

    /// Posts one receive chain per size, one writable descriptor each.
    @discardableResult
    func postReceive(_ sizes: [Int]) throws -> [Posted] {
        try sizes.map { size in
            let address = try rx.allocate(size, fill: 0xcc)
            let head = try rx.addChain([.writable(address, size)])
            try rx.makeAvailable(head)
            let entry = Posted(head: head, address: address, size: size)
            posted[head] = entry
            return entry
        }
    }

    /// Posts `pieces` as one transmit chain, one readable descriptor each.
    @discardableResult
    func postTransmit(_ pieces: [[UInt8]]) throws -> UInt16 {
        let buffers = try pieces.map { MockDriverQueue.Buffer.readable(try tx.allocate(bytes: $0), $0.count) }
        let head = try tx.addChain(buffers)
        try tx.makeAvailable(head)
        return head
    }

    /// A frame as it crosses the backend: header, Ethernet header, `payload`
    /// bytes of a pattern that depends on `seed`.
    static func frame(
        payload: Int, header: VirtioNetHeader = VirtioNetHeader(), seed: Int = 0, to destination: [UInt8] = guestMAC
    ) -> [UInt8] {
        header.bytes + destination + hostMAC + [0x88, 0xb5]
            + (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed) }
    }

    /// The bytes the device wrote into the used receive chain `element`.
    func received(_ element: MockDriverQueue.UsedElement) throws -> [UInt8] {
        let entry = try #require(posted[UInt16(element.id)], "used element \(element.id) was never posted")
        return try memory.read(at: entry.address, count: Int(element.length))
    }

    @discardableResult
    func processReceive() -> Bool { device.process(queue: VirtioNet.receiveQueue) }
    @discardableResult
    func processTransmit() -> Bool { device.process(queue: VirtioNet.transmitQueue) }
    func fire(_ readiness: EventReadiness) { events.fire(Self.tapDescriptor, readiness) }
}

@Suite("virtio-net")
struct VirtioNetTests {
    typealias F = VirtioNet.Feature

    // MARK: Identity and config space

    @Test func configSpaceHoldsTheMACThroughTheTransport() throws {
        let driver = try MMIODriver(device: VirtioNet(id: "eth0", mac: NetRig.guestMAC, backend: InMemoryNetBackend()))
        #expect(driver.read(MMIODriver.Register.deviceID) == 1)
        let offered = driver.deviceFeatures
        #expect(offered & F.mac != 0)
        for feature in [F.checksum, F.guestChecksum, F.guestTSO4, F.guestTSO6, F.guestUFO, F.hostTSO4, F.hostTSO6, F.hostUFO,
                        F.mergeableReceiveBuffers, VirtioFeature.version1, VirtioFeature.eventIndex] {
            #expect(offered & feature != 0, "feature 0x\(String(feature, radix: 16)) offered")
        }
        #expect(offered & F.status == 0, "the link is always up, as in Firecracker")
        #expect(offered & VirtioFeature.indirectDescriptors == 0)
        let bytes = (0..<8).map { offset in
            var byte: UInt8 = 0xaa
            withUnsafeMutableBytes(of: &byte) { driver.transport.read(offset: 0x100 + UInt64(offset), into: $0) }
            return byte
        }
        #expect(bytes == NetRig.guestMAC + [0, 0], "mac[6], then a status field that is not offered")
        #expect(driver.read(0x100) == 0x10ac_0006, "a 32-bit read of the first four bytes")
        #expect(driver.read(0x200) == 0)
        // Two queues of 256.
        for queue in 0..<2 {
            driver.write(MMIODriver.Register.queueSel, UInt32(queue))
            #expect(driver.read(MMIODriver.Register.queueNumMax) == 256)
        }
        driver.write(MMIODriver.Register.queueSel, 2)
        #expect(driver.read(MMIODriver.Register.queueNumMax) == 0, "no control queue")
    }

    @Test func withoutAMACNoneIsOfferedAndTheFieldReadsZero() throws {
        let device = VirtioNet(id: "eth0", mac: nil, backend: InMemoryNetBackend())
        #expect(device.offeredFeatures & F.mac == 0)
        var bytes = [UInt8](repeating: 0xaa, count: 6)
        bytes.withUnsafeMutableBytes { device.readConfig(at: 0, into: $0) }
        #expect(bytes == [0, 0, 0, 0, 0, 0])
    }

    @Test func configWritesAreIgnored() throws {
        let device = VirtioNet(id: "eth0", mac: NetRig.guestMAC, backend: InMemoryNetBackend())
        [UInt8](repeating: 0xff, count: 6).withUnsafeBytes { device.writeConfig(at: 0, from: $0) }
        var bytes = [UInt8](repeating: 0, count: 6)
        bytes.withUnsafeMutableBytes { device.readConfig(at: 0, into: $0) }
        #expect(bytes == NetRig.guestMAC)
    }

    @Test func headerEncodesAndDecodesTheSpecLayout() throws {
        let header = VirtioNetHeader(
            flags: 1, gsoType: 4, headerLength: 0x0102, gsoSize: 0x0304, checksumStart: 0x0506, checksumOffset: 0x0708,
            bufferCount: 0x090a)
        #expect(header.bytes == [1, 4, 0x02, 0x01, 0x04, 0x03, 0x06, 0x05, 0x08, 0x07, 0x0a, 0x09])
        #expect(VirtioNetHeader(header.bytes) == header)
        #expect(VirtioNetHeader([UInt8](repeating: 0, count: 11)) == nil, "too short")
    }

    // MARK: Offloads

    @Test("the negotiated GUEST_* features map to the TAP's offload flags", arguments: [
        (UInt64(0), NetOffload()),
        (F.guestTSO4 | F.guestTSO6 | F.guestUFO, NetOffload()),  // without GUEST_CSUM none of them count
        (F.guestChecksum, NetOffload.checksum),
        (F.guestChecksum | F.guestTSO4, [.checksum, .tcp4Segmentation]),
        (F.guestChecksum | F.guestTSO6, [.checksum, .tcp6Segmentation]),
        (F.guestChecksum | F.guestUFO, [.checksum, .udpFragmentation]),
        (F.guestChecksum | F.guestTSO4 | F.guestTSO6 | F.guestUFO | F.hostTSO4 | F.checksum,
         [.checksum, .tcp4Segmentation, .tcp6Segmentation, .udpFragmentation]),
        (F.checksum | F.hostTSO4 | F.hostTSO6 | F.hostUFO, NetOffload()),  // HOST_* concern the other direction
    ] as [(UInt64, NetOffload)])
    func offloadMapping(features: UInt64, expected: NetOffload) throws {
        #expect(VirtioNet.tunOffload(forNegotiated: features) == expected)
        let rig = try NetRig(features: features)
        #expect(rig.backend.offloadHistory == [expected], "set once, at activation")
        rig.device.reset()
        #expect(rig.backend.offloadHistory == [expected, []], "a reset goes back to plain frames")
    }

    @Test func theTUNFlagValuesAreLinux() {
        // TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_UFO in linux/if_tun.h.
        #expect(NetOffload.checksum.rawValue == 0x01)
        #expect(NetOffload.tcp4Segmentation.rawValue == 0x02)
        #expect(NetOffload.tcp6Segmentation.rawValue == 0x04)
        #expect(NetOffload.udpFragmentation.rawValue == 0x10)
    }

    // MARK: Transmit

    @Test func transmitGathersAFrameSplitAcrossDescriptors() throws {
        let rig = try NetRig()
        let frame = NetRig.frame(payload: 100, to: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        // The header itself is split, as virtio allows (§2.6.4).
        let head = try rig.postTransmit([Array(frame[0..<4]), Array(frame[4..<30]), Array(frame[30...])])
        #expect(rig.processTransmit() == false)
        #expect(rig.backend.sentFrames == [frame])
        #expect(try rig.tx.takeUsed() == [.init(id: UInt32(head), length: 0)], "the device writes nothing back")
        let device = rig.device
        #expect(device.count(of: .txFrames) == 1)
        #expect(device.count(of: .txBytes) == UInt64(frame.count - VirtioNetHeader.size))
        #expect(device.count(of: .txDropped) == 0)
        #expect(device.count(of: .txErrors) == 0)
        #expect(device.counters.names == ["rx_frames", "rx_bytes", "rx_dropped", "rx_errors",
                                          "tx_frames", "tx_bytes", "tx_dropped", "tx_errors",
                                          "rx_rate_limiter_throttled", "tx_rate_limiter_throttled"], "the names metrics show")
    }

    @Test func transmitPassesOnlyWhatTheTAPActsOn() throws {
        let rig = try NetRig()
        var header = VirtioNetHeader(flags: VirtioNetHeader.Flag.needsChecksum | VirtioNetHeader.Flag.dataValid,
                                     gsoType: VirtioNetHeader.GSO.tcp4, headerLength: 54, gsoSize: 1448,
                                     checksumStart: 34, checksumOffset: 16, bufferCount: 7)
        try rig.postTransmit([NetRig.frame(payload: 3000, header: header)])
        rig.processTransmit()
        let sent = try #require(rig.backend.sentFrames.first)
        header.flags = VirtioNetHeader.Flag.needsChecksum
        header.bufferCount = 0
        #expect(VirtioNetHeader(sent) == header, "DATA_VALID is receive-only, num_buffers means nothing on transmit")
    }

    @Test("a transmit header that asks for an offload the driver did not accept is refused", arguments: [
        (VirtioNetHeader(flags: VirtioNetHeader.Flag.needsChecksum), F.checksum),
        (VirtioNetHeader(gsoType: VirtioNetHeader.GSO.tcp4), F.hostTSO4),
        (VirtioNetHeader(gsoType: VirtioNetHeader.GSO.tcp6), F.hostTSO6),
        (VirtioNetHeader(gsoType: VirtioNetHeader.GSO.udp), F.hostUFO),
    ] as [(VirtioNetHeader, UInt64)])
    func transmitOffloadNeedsItsFeature(header: VirtioNetHeader, feature: UInt64) throws {
        let without = try NetRig(features: NetRig.plainFeatures)
        try without.postTransmit([NetRig.frame(payload: 64, header: header)])
        without.processTransmit()
        #expect(without.backend.sentFrames.isEmpty)
        #expect(try without.tx.takeUsed().map(\.length) == [0])
        #expect(without.device.count(of: .txDropped) == 1)

        let with = try NetRig(features: NetRig.plainFeatures | feature | F.checksum)
        try with.postTransmit([NetRig.frame(payload: 64, header: header)])
        with.processTransmit()
        #expect(with.backend.sentFrames.count == 1)
        #expect(with.device.count(of: .txDropped) == 0)
    }

    @Test func ecnAndUnknownSegmentTypesAreRefused() throws {
        let rig = try NetRig()
        try rig.postTransmit([NetRig.frame(payload: 64, header: VirtioNetHeader(gsoType: VirtioNetHeader.GSO.tcp4 | VirtioNetHeader.GSO.ecn))])
        try rig.postTransmit([NetRig.frame(payload: 64, header: VirtioNetHeader(gsoType: 5))])
        rig.processTransmit()
        #expect(rig.backend.sentFrames.isEmpty)
        #expect(rig.device.count(of: .txDropped) == 2)
    }

    @Test func aBackendThatWouldBlockHoldsTheFrameUntilItIsWritable() throws {
        let rig = try NetRig(features: NetRig.plainFeatures & ~VirtioFeature.eventIndex)
        rig.backend.refusesWrites = true
        let first = try rig.postTransmit([NetRig.frame(payload: 60, seed: 1)])
        let second = try rig.postTransmit([NetRig.frame(payload: 60, seed: 2)])
        #expect(rig.processTransmit() == false)
        #expect(rig.backend.sentFrames.isEmpty)
        #expect(try rig.tx.takeUsed().isEmpty, "the refused frame's chain stays with the device")
        #expect(rig.events.interest(of: NetRig.tapDescriptor) == [.readable, .writable, .edgeTriggered])
        // A notification while blocked does not reorder or lose anything.
        #expect(rig.processTransmit() == false)
        #expect(try rig.tx.takeUsed().isEmpty)

        rig.backend.refusesWrites = false
        let interrupts = rig.interrupt.count
        rig.fire(.writable)
        #expect(rig.backend.sentFrames == [NetRig.frame(payload: 60, seed: 1), NetRig.frame(payload: 60, seed: 2)])
        #expect(try rig.tx.takeUsed() == [.init(id: UInt32(first), length: 0), .init(id: UInt32(second), length: 0)])
        #expect(rig.interrupt.count > interrupts, "completions found by the handler interrupt the driver")
        #expect(rig.events.interest(of: NetRig.tapDescriptor) == [.readable, .edgeTriggered], "writability no longer wanted")
        #expect(rig.device.count(of: .txFrames) == 2)
    }

    @Test func aFailedWriteIsCountedAndTheChainReturned() throws {
        let rig = try NetRig()
        rig.backend.failsWrites = true
        try rig.postTransmit([NetRig.frame(payload: 60)])
        rig.processTransmit()
        #expect(try rig.tx.takeUsed().map(\.length) == [0])
        #expect(rig.device.count(of: .txErrors) == 1)
        rig.backend.failsWrites = false
        try rig.postTransmit([NetRig.frame(payload: 60)])
        rig.processTransmit()
        #expect(rig.device.count(of: .txFrames) == 1)
    }

    // MARK: Hostile transmit chains

    @Test func aTransmitChainWithAWritableBufferIsRefusedWhole() throws {
        let rig = try NetRig()
        let frame = NetRig.frame(payload: 60)
        let data = try rig.tx.allocate(bytes: frame)
        let reply = try rig.tx.allocate(16)
        let head = try rig.tx.addChain([.readable(data, frame.count), .writable(reply, 16)])
        try rig.tx.makeAvailable(head)
        rig.processTransmit()
        #expect(rig.backend.sentFrames.isEmpty, "nothing leaves before the whole chain is checked")
        #expect(try rig.tx.takeUsed() == [.init(id: UInt32(head), length: 0)])
        #expect(rig.device.count(of: .txDropped) == 1)
    }

    @Test("transmit chains of a bad length are refused", arguments: [
        VirtioNetHeader.size - 1, VirtioNetHeader.size + 13, VirtioNet.maxFrameLength + 1, 200_000,
    ])
    func badTransmitLengths(length: Int) throws {
        let rig = try NetRig()
        try rig.postTransmit([[UInt8](repeating: 0, count: length)])
        rig.processTransmit()
        #expect(rig.backend.sentFrames.isEmpty)
        #expect(rig.device.count(of: .txDropped) == 1)
        #expect(try rig.tx.takeUsed().map(\.length) == [0])
    }

    @Test func theLargestTransmitFramePasses() throws {
        let rig = try NetRig()
        try rig.postTransmit([NetRig.frame(payload: VirtioNet.maxFrameLength - VirtioNet.minTransmitLength)])
        rig.processTransmit()
        #expect(rig.backend.sentFrames.first?.count == VirtioNet.maxFrameLength)
    }

    @Test func loopsAndOutOfRangeBuffersFailOnlyTheirOwnRequest() throws {
        let rig = try NetRig()
        // Two descriptors that point at each other.
        let first = rig.tx.reserveDescriptors(2)
        let data = try rig.tx.allocate(64)
        try rig.tx.writeDescriptor(first, address: data, length: 64, flags: SplitQueue.DescriptorFlag.next, next: first + 1)
        try rig.tx.writeDescriptor(first + 1, address: data, length: 64, flags: SplitQueue.DescriptorFlag.next, next: first)
        try rig.tx.makeAvailable(first)
        // A length that runs far past guest RAM.
        let huge = rig.tx.reserveDescriptors(1)
        try rig.tx.writeDescriptor(huge, address: data, length: 0xffff_fff0, flags: 0)
        try rig.tx.makeAvailable(huge)
        // Then a good frame.
        let good = try rig.postTransmit([NetRig.frame(payload: 60)])
        rig.processTransmit()
        #expect(try rig.tx.takeUsed() == [.init(id: UInt32(first), length: 0), .init(id: UInt32(huge), length: 0),
                                          .init(id: UInt32(good), length: 0)])
        #expect(rig.backend.sentFrames == [NetRig.frame(payload: 60)])
        #expect(!rig.notifier.needsReset, "a bad chain fails the request, not the device")
    }

    // MARK: Receive

    @Test func receiveIntoOneBuffer() throws {
        let rig = try NetRig(features: NetRig.plainFeatures)
        let frame = NetRig.frame(payload: 1000)
        rig.backend.inject(frame)
        try rig.postReceive([1526, 1526])
        #expect(rig.processReceive() == false)
        let used = try rig.rx.takeUsed()
        #expect(used.map(\.length) == [UInt32(frame.count)])
        let bytes = try rig.received(try #require(used.first))
        #expect(VirtioNetHeader(bytes)?.bufferCount == 1, "num_buffers is 1 without MRG_RXBUF (§5.1.6.4)")
        #expect(Array(bytes[VirtioNetHeader.size...]) == Array(frame[VirtioNetHeader.size...]))
        let device = rig.device
        #expect(device.count(of: .rxFrames) == 1)
        #expect(device.count(of: .rxBytes) == UInt64(frame.count - VirtioNetHeader.size))
    }

    @Test func receiveSpreadsAFrameOverMergeableBuffers() throws {
        let rig = try NetRig()
        let frame = NetRig.frame(payload: 1215)  // 1241 bytes with the header
        rig.backend.inject(frame)
        let posted = try rig.postReceive([512, 512, 512, 512])
        rig.processReceive()
        let used = try rig.rx.takeUsed()
        #expect(used == [
            .init(id: UInt32(posted[0].head), length: 512), .init(id: UInt32(posted[1].head), length: 512),
            .init(id: UInt32(posted[2].head), length: 217),
        ])
        let joined = try used.flatMap { try rig.received($0) }
        #expect(VirtioNetHeader(joined)?.bufferCount == 3)
        #expect(Array(joined[VirtioNetHeader.size...]) == Array(frame[VirtioNetHeader.size...]))
        // The fourth buffer waits for the next frame.
        rig.backend.inject(NetRig.frame(payload: 20))
        rig.fire(.readable)
        #expect(try rig.rx.takeUsed() == [.init(id: UInt32(posted[3].head), length: UInt32(VirtioNetHeader.size + 34))])
    }

    @Test func aMergeableFrameWaitsForEnoughBuffers() throws {
        let rig = try NetRig()
        rig.backend.inject(NetRig.frame(payload: 1215))
        try rig.postReceive([512])
        rig.processReceive()
        #expect(try rig.rx.takeUsed().isEmpty, "one buffer is not enough; nothing is handed back half-filled")
        try rig.postReceive([512, 512])
        rig.processReceive()
        #expect(try rig.rx.takeUsed().map(\.length) == [512, 512, 217])
        #expect(rig.device.count(of: .rxDropped) == 0)
    }

    @Test func aFrameLargerThanEveryBufferTheRingCanHoldIsDropped() throws {
        let rig = try NetRig(queueSize: 4)
        rig.backend.inject(NetRig.frame(payload: 200))
        rig.backend.inject(NetRig.frame(payload: 10))
        try rig.postReceive([32, 32, 32, 32])
        rig.processReceive()
        // Four 32-byte buffers can never hold 226 bytes; waiting would stall for good.
        #expect(rig.device.count(of: .rxDropped) == 1)
        #expect(try rig.rx.takeUsed().map(\.length) == [32, 4], "the next frame uses the held buffers")
    }

    @Test func aNonMergeableBufferTooSmallForTheFrameDropsTheFrameAndKeepsTheBuffer() throws {
        let rig = try NetRig(features: NetRig.plainFeatures)
        rig.backend.inject(NetRig.frame(payload: 300))
        rig.backend.inject(NetRig.frame(payload: 40))
        let posted = try rig.postReceive([100])
        rig.processReceive()
        #expect(rig.device.count(of: .rxDropped) == 1)
        #expect(try rig.rx.takeUsed() == [.init(id: UInt32(posted[0].head), length: UInt32(VirtioNetHeader.size + 54))])
        #expect(rig.device.count(of: .rxFrames) == 1)
    }

    @Test func withoutReceiveBuffersFramesStayInTheBackend() throws {
        let rig = try NetRig()
        rig.backend.inject(NetRig.frame(payload: 100))
        rig.fire(.readable)
        rig.processReceive()
        #expect(rig.backend.pendingFrames == 1, "not read, so not dropped")
        #expect(rig.backend.readCalls == 0)
        #expect(rig.device.count(of: .rxDropped) == 0)
        // The driver adds buffers and notifies: the frame flows, with no new edge.
        try rig.postReceive([2048])
        rig.processReceive()
        #expect(rig.backend.pendingFrames == 0)
        #expect(try rig.rx.takeUsed().map(\.length) == [UInt32(VirtioNetHeader.size + 114)])
    }

    @Test func aReadableEdgeDrainsTheBackendUntilItWouldBlock() throws {
        let rig = try NetRig()
        try rig.postReceive([2048, 2048, 2048, 2048])
        rig.processReceive()  // the driver's first notification; nothing to read yet
        let readsBefore = rig.backend.readCalls
        for seed in 0..<3 { rig.backend.inject(NetRig.frame(payload: 60, seed: seed)) }
        let interrupts = rig.interrupt.count
        rig.fire(.readable)
        #expect(try rig.rx.takeUsed().count == 3)
        #expect(rig.backend.readCalls - readsBefore == 4, "three frames, then would-block")
        #expect(rig.interrupt.count > interrupts)
        // Without a new edge the device does not read again.
        rig.processReceive()
        #expect(rig.backend.readCalls - readsBefore == 4)
    }

    @Test func receivedHeadersAreCheckedAgainstTheGuestsFeatures() throws {
        let plain = try NetRig(features: NetRig.plainFeatures)
        plain.backend.inject(NetRig.frame(payload: 60, header: VirtioNetHeader(gsoType: VirtioNetHeader.GSO.tcp4)))
        plain.backend.inject(NetRig.frame(payload: 60, header: VirtioNetHeader(flags: VirtioNetHeader.Flag.needsChecksum)))
        plain.backend.inject(NetRig.frame(payload: 60, header: VirtioNetHeader(flags: VirtioNetHeader.Flag.dataValid)))
        try plain.postReceive([2048, 2048])
        plain.processReceive()
        #expect(plain.device.count(of: .rxDropped) == 2)
        let used = try plain.rx.takeUsed()
        #expect(used.count == 1)
        #expect(try VirtioNetHeader(plain.received(try #require(used.first)))?.flags == 0,
                "DATA_VALID only for a guest that accepted GUEST_CSUM")

        let offloading = try NetRig()
        let header = VirtioNetHeader(flags: VirtioNetHeader.Flag.needsChecksum, gsoType: VirtioNetHeader.GSO.tcp4,
                                     headerLength: 54, gsoSize: 1448, checksumStart: 34, checksumOffset: 16)
        offloading.backend.inject(NetRig.frame(payload: 3000, header: header))
        try offloading.postReceive([4096])
        offloading.processReceive()
        let bytes = try offloading.received(try #require(try offloading.rx.takeUsed().first))
        var expected = header
        expected.bufferCount = 1
        #expect(VirtioNetHeader(bytes) == expected)
    }

    @Test func framesTooShortOrTooLongAreDropped() throws {
        let rig = try NetRig()
        rig.backend.inject([UInt8](repeating: 0, count: 20))
        rig.backend.inject([UInt8](repeating: 0, count: VirtioNet.maxFrameLength + 10))
        rig.backend.inject(NetRig.frame(payload: 10))
        try rig.postReceive([4096])
        rig.processReceive()
        #expect(rig.device.count(of: .rxDropped) == 2)
        #expect(try rig.rx.takeUsed().count == 1)
    }

    @Test func unusableReceiveChainsAreReturnedAndCounted() throws {
        let rig = try NetRig()
        let readable = try rig.rx.allocate(64)
        let writable = try rig.rx.allocate(2048)
        let mixed = try rig.rx.addChain([.readable(readable, 64), .writable(writable, 2048)])
        try rig.rx.makeAvailable(mixed)
        let tiny = try rig.rx.addChain([.writable(try rig.rx.allocate(8), 8)])
        try rig.rx.makeAvailable(tiny)
        let good = try rig.postReceive([2048])
        rig.backend.inject(NetRig.frame(payload: 60))
        rig.processReceive()
        #expect(try rig.rx.takeUsed() == [
            .init(id: UInt32(mixed), length: 0), .init(id: UInt32(tiny), length: 0),
            .init(id: UInt32(good[0].head), length: UInt32(VirtioNetHeader.size + 74)),
        ])
        #expect(rig.device.count(of: .rxErrors) == 2)
    }

    @Test func aFailedReadIsCountedAndRetriedOnTheNextEdge() throws {
        let rig = try NetRig()
        try rig.postReceive([2048])
        rig.backend.failsReads = true
        rig.backend.inject(NetRig.frame(payload: 60))
        rig.fire(.readable)
        #expect(rig.device.count(of: .rxErrors) == 1)
        rig.backend.failsReads = false
        rig.fire(.readable)
        #expect(try rig.rx.takeUsed().count == 1)
    }

    @Test func withoutAnEventLoopTheBackendIsPolledOnReceiveNotifications() throws {
        let rig = try NetRig(subscribe: false)
        #expect(rig.events.subscriptionCount == 0)
        try rig.postReceive([2048])
        rig.backend.inject(NetRig.frame(payload: 60))
        rig.processReceive()
        #expect(try rig.rx.takeUsed().count == 1)
    }

    // MARK: Event loop and lifecycle

    @Test func activationSubscribesTheBackendEdgeTriggeredAndResetRemovesIt() throws {
        let rig = try NetRig()
        #expect(rig.events.interest(of: NetRig.tapDescriptor) == [.readable, .edgeTriggered])
        rig.device.reset()
        #expect(rig.events.subscriptionCount == 0)
        #expect(rig.events.removedCount == 1)
        try rig.postReceive([2048])
        rig.backend.inject(NetRig.frame(payload: 60))
        #expect(rig.device.process(queue: 0) == false, "a reset device serves nothing")
        #expect(rig.backend.readCalls == 0)
    }

    @Test func aHandlerStillRunningAfterAResetTouchesNothing() throws {
        let rig = try NetRig()
        // The loop may already be dispatching the handler when the reset
        // removes it (EventRegistry's contract): keep it and call it late.
        let stale = try #require(rig.events.handler(of: NetRig.tapDescriptor))
        try rig.postReceive([2048])
        rig.device.reset()
        rig.backend.inject(NetRig.frame(payload: 60))
        stale([.readable, .writable])
        #expect(rig.backend.readCalls == 0)
        #expect(try rig.rx.takeUsed().isEmpty)
        #expect(rig.events.postedCount == 0)
    }

    @Test func aResetCountsTheFramesItAbandons() throws {
        let rig = try NetRig()
        rig.backend.inject(NetRig.frame(payload: 1215))
        try rig.postReceive([512])  // not enough: the frame stays staged
        rig.processReceive()
        rig.backend.refusesWrites = true
        try rig.postTransmit([NetRig.frame(payload: 60)])
        rig.processTransmit()
        rig.device.reset()
        let device = rig.device
        #expect(device.count(of: .rxDropped) == 1)
        #expect(device.count(of: .txDropped) == 1)
    }

    @Test("one pass handles at most requestsPerPass frames and says so") func passesAreBounded() throws {
        let limit = VirtioActivation.requestsPerPass
        let rig = try NetRig(queueSize: 256)
        for seed in 0..<limit { try rig.postTransmit([NetRig.frame(payload: 60, seed: seed)]) }
        #expect(rig.processTransmit() == true, "stopped at the limit; more may wait")
        #expect(rig.backend.sentFrames.count == limit)
        #expect(rig.processTransmit() == false)

        // Receive from the backend's handler: it yields by posting the rest
        // to the loop instead of draining everything at once.
        for seed in 0..<(limit + 10) { rig.backend.inject(NetRig.frame(payload: 20, seed: seed)) }
        try rig.postReceive([Int](repeating: 128, count: limit))
        rig.fire(.readable)
        #expect(try rig.rx.takeUsed().count == limit)
        #expect(rig.events.postedCount == 1, "the rest continues after the loop's other events")
        #expect(rig.backend.pendingFrames == 10)
        try rig.postReceive([Int](repeating: 128, count: 10))
        #expect(rig.events.runPosted() == 1)
        #expect(try rig.rx.takeUsed().count == 10)
        #expect(rig.backend.pendingFrames == 0)
        #expect(rig.events.postedCount == 0)
    }

    @Test func theWholeExchangeWorksThroughTheTransport() throws {
        let backend = InMemoryNetBackend()
        let driver = try MMIODriver(device: VirtioNet(id: "eth0", mac: NetRig.guestMAC, backend: backend))
        let rx = try MockDriverQueue(memory: driver.memory, size: 16, base: 0x1_0000, data: 0x10_0000)
        let tx = try MockDriverQueue(memory: driver.memory, size: 16, base: 0x2_0000, data: 0x80_0000)
        #expect(driver.initialize(queues: [rx, tx]) == 0x0f)
        // The driver's reset at the start clears them; DRIVER_OK sets what it accepted.
        #expect(backend.offloadHistory == [[], [.checksum, .tcp4Segmentation, .tcp6Segmentation, .udpFragmentation]])
        let frame = NetRig.frame(payload: 80)
        try tx.makeAvailable(try tx.addChain([.readable(try tx.allocate(bytes: frame), frame.count)]))
        driver.kick(1)
        #expect(backend.sentFrames == [frame])
        #expect(try tx.takeUsed().count == 1)
        backend.inject(NetRig.frame(payload: 90))
        try rx.makeAvailable(try rx.addChain([.writable(try rx.allocate(2048), 2048)]))
        driver.kick(0)
        #expect(try rx.takeUsed().map(\.length) == [UInt32(VirtioNetHeader.size + 104)])
        #expect(driver.interrupt.count >= 2)
        driver.write(MMIODriver.Register.status, 0)
        #expect(backend.offloadHistory.last == [])
    }
}
