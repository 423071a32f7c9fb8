import SwiftVMDevices
import SwiftVMMemory

struct NoInterrupt: InterruptLine {
    func trigger() {}
}

/// Virtio targets. Input: one option byte, then bytes laid into 64 KiB of
/// guest RAM from address 0, where the queues sit at fixed places: queue n's
/// descriptor table at 0x400·n, its available ring at 0x400·n + 0x100 and its
/// used ring at 0x400·n + 0x200 (16 entries each). Buffers may point anywhere.
enum VirtioFuzz {
    static let memorySize = 64 << 10
    static let queueSize: UInt16 = 16
    nonisolated(unsafe) static let memory = try! GuestMemory(regions: [(GuestAddress(0), UInt64(memorySize))])

    static func layout(_ index: Int, size: UInt16 = queueSize) -> SplitQueue.Layout {
        let base = UInt64(index) * 0x400
        return SplitQueue.Layout(
            size: size, descriptorTable: GuestAddress(base), availableRing: GuestAddress(base + 0x100),
            usedRing: GuestAddress(base + 0x200))
    }

    /// Zeroes guest RAM and copies `bytes` to address 0.
    static func load(_ bytes: UnsafeRawBufferPointer) {
        try! memory.zero(at: GuestAddress(0), count: memorySize)
        let count = min(bytes.count, memorySize)
        try! memory.write(UnsafeRawBufferPointer(rebasing: bytes[0..<count]), at: GuestAddress(0))
    }

    static func queues(_ count: Int, options: UInt8) -> [SplitQueue?] {
        (0..<count).map { index in
            try? SplitQueue(
                memory: memory, layout: layout(index), eventIndex: options & 1 != 0,
                indirectDescriptors: options & 2 != 0, label: "fuzz queue \(index)")
        }
    }

    static func activation(
        _ device: any VirtioDevice, queues: [SplitQueue?], options: UInt8, events: (any EventRegistry)? = nil
    ) -> VirtioActivation {
        var features = device.offeredFeatures | VirtioFeature.version1
        if options & 1 == 0 { features &= ~VirtioFeature.eventIndex }
        if options & 2 == 0 { features &= ~VirtioFeature.indirectDescriptors }
        return VirtioActivation(
            memory: memory, features: features, queues: queues,
            notifier: VirtioNotifier(name: "fuzz", line: NoInterrupt()), events: events)
    }

    /// The chain walker alone: bits 4–6 of the option byte pick the queue
    /// size (1 to 128, so the rings of the one queue grow with it: table at
    /// 0, available ring at 0x800, used ring at 0xc00); every chain popped is
    /// read and written through a cursor, then returned.
    static func splitQueue(_ data: UnsafeRawBufferPointer) {
        guard let options = data.first else { return }
        load(UnsafeRawBufferPointer(rebasing: data.dropFirst()))
        let size = UInt16(1) << (options >> 4 & 7)
        let layout = SplitQueue.Layout(
            size: size, descriptorTable: GuestAddress(0), availableRing: GuestAddress(0x800),
            usedRing: GuestAddress(0xc00))
        guard let queue = try? SplitQueue(
            memory: memory, layout: layout, eventIndex: options & 1 != 0, indirectDescriptors: options & 2 != 0,
            label: "fuzz queue")
        else { return }
        var scratch = [UInt8](repeating: 0xa5, count: 512)
        for _ in 0..<64 {
            guard let chain = queue.popAvailable() else { break }
            _ = chain.readableLength
            _ = chain.writableLength
            var reader = GuestBufferCursor(memory: memory, buffers: chain.readable)
            var writer = GuestBufferCursor(memory: memory, buffers: chain.writable)
            var written = 0
            scratch.withUnsafeMutableBytes { raw in
                for _ in 0..<8 {
                    guard let moved = try? reader.read(into: raw), moved > 0 else { break }
                    guard let out = try? writer.write(from: UnsafeRawBufferPointer(rebasing: raw[0..<moved])) else { break }
                    written += out
                }
            }
            queue.addUsed(head: chain.head, length: UInt32(written))
            _ = queue.needsNotification()
        }
        _ = queue.failure
    }

    /// Block requests on queue 0; option bit 2 makes the disk read-only,
    /// bit 3 offers the flush.
    static func block(_ data: UnsafeRawBufferPointer) {
        guard let options = data.first else { return }
        load(UnsafeRawBufferPointer(rebasing: data.dropFirst()))
        let config = BlockDriveConfig(id: "fuzz", readOnly: options & 4 != 0, cacheWriteback: options & 8 != 0)
        guard let device = try? VirtioBlock(
            config: config, backend: InMemoryBlockBackend(size: 16 << 10), clock: { 0 })
        else { return }
        device.activate(activation(device, queues: queues(1, options: options), options: options))
        for _ in 0..<2 { device.process(queue: 0) }
        var config4 = [UInt8](repeating: 0, count: 8)
        config4.withUnsafeMutableBytes { device.readConfig(at: Int(options >> 4), into: $0) }
        device.reset()
    }

    /// Frames through virtio-net: the guest's tx queue (1) is served, then
    /// a frame is injected and delivered to the rx queue (0). After the option
    /// byte, one length byte and that many bytes form the injected frame
    /// (virtio-net header first); the rest is guest RAM.
    static func net(_ data: UnsafeRawBufferPointer) {
        guard data.count >= 2 else { return }
        let options = data[0]
        let frameLength = min(Int(data[1]) * 2, data.count - 2)
        let frame = Array(data[2..<(2 + frameLength)])
        if let header = VirtioNetHeader(frame) {
            var encoded = [UInt8](repeating: 0, count: 12)
            encoded.withUnsafeMutableBytes { header.encode(into: $0) }
        }
        load(UnsafeRawBufferPointer(rebasing: data[(2 + frameLength)...]))
        let backend = InMemoryNetBackend()
        let device = VirtioNet(
            id: "fuzz0", mac: options & 4 != 0 ? [2, 0, 0, 0, 0, 1] : nil, backend: backend, clock: { 0 })
        var activation = activation(device, queues: queues(2, options: options), options: options)
        if options & 8 != 0 {
            // Without mergeable receive buffers.
            activation = VirtioActivation(
                memory: memory, features: activation.features & ~(1 << 15), queues: activation.queues,
                notifier: activation.notifier)
        }
        device.activate(activation)
        device.process(queue: 1)
        backend.inject(frame)
        device.process(queue: 0)
        device.process(queue: 0)
        device.reset()
    }

    /// virtio-vsock: the tx queue (1), then rx (0) and event (2), twice, with
    /// a host side on which every connection succeeds and every socket has a
    /// few bytes to read.
    static func vsock(_ data: UnsafeRawBufferPointer) {
        guard let options = data.first else { return }
        load(UnsafeRawBufferPointer(rebasing: data.dropFirst()))
        let host = FuzzVsockHost(refuses: options & 4 != 0)
        let events = FuzzEvents()
        let device = VirtioVsock(guestCID: 3, host: host, clock: { 0 })
        device.activate(activation(device, queues: queues(3, options: options), options: options, events: events))
        for _ in 0..<2 {
            device.process(queue: 1)
            device.process(queue: 0)
            device.process(queue: 2)
            events.fireAll()
        }
        device.reset()
    }
}

/// A host side that never blocks the device: connections succeed (or are
/// refused), sockets hand out a few bytes once, then end.
final class FuzzVsockHost: VsockHostSide, @unchecked Sendable {
    private var nextDescriptor: Int32 = 100
    private var reads: [Int32: Int] = [:]
    private let refuses: Bool

    init(refuses: Bool) { self.refuses = refuses }

    var listeningDescriptor: Int32? { nil }
    func accept() -> VsockAcceptResult { .wouldBlock }

    func connect(toPort port: UInt32) -> VsockConnectResult {
        if refuses { return .refused("fuzz") }
        nextDescriptor += 1
        return .connected(nextDescriptor)
    }

    func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> VsockHostIO {
        let done = reads[fd, default: 0]
        reads[fd] = done + 1
        switch done {
        case 0:
            let count = min(buffer.count, 37)
            guard count > 0 else { return .wouldBlock }
            for i in 0..<count { buffer[i] = UInt8(truncatingIfNeeded: i) }
            return .transferred(count)
        case 1: return .wouldBlock
        default: return .endOfStream
        }
    }

    func write(_ fd: Int32, from buffer: UnsafeRawBufferPointer) -> VsockHostIO {
        buffer.isEmpty ? .wouldBlock : .transferred(buffer.count)
    }

    func shutdown(_ fd: Int32, reading: Bool, writing: Bool) {}
    func close(_ fd: Int32) {}
}

/// An event loop that runs nothing by itself: the target fires every
/// subscription (readable and writable) and runs posted work between passes.
final class FuzzEvents: EventRegistry, @unchecked Sendable {
    private var next: UInt64 = 1
    private var subscriptions: [(token: EventToken, handler: @Sendable (EventReadiness) -> Void)] = []
    private var timers: [(token: EventToken, handler: @Sendable () -> Void)] = []
    private var posted: [@Sendable () -> Void] = []

    private func token() -> EventToken {
        next += 1
        return EventToken(next)
    }

    func subscribe(_ fd: Int32, interest: EventInterest, handler: @escaping @Sendable (EventReadiness) -> Void) throws
        -> EventToken
    {
        let token = token()
        subscriptions.append((token, handler))
        return token
    }

    func modify(_ token: EventToken, interest: EventInterest) throws {}

    func remove(_ token: EventToken) {
        subscriptions.removeAll { $0.token == token }
        timers.removeAll { $0.token == token }
    }

    func addTimer(afterMilliseconds milliseconds: Int, periodMilliseconds: Int?, handler: @escaping @Sendable () -> Void)
        -> EventToken
    {
        let token = token()
        timers.append((token, handler))
        return token
    }

    func post(_ work: @escaping @Sendable () -> Void) { posted.append(work) }

    /// One round: posted work, then every subscription and timer once, in token order.
    func fireAll() {
        let work = posted
        posted = []
        for item in work { item() }
        for subscription in subscriptions { subscription.handler([.readable, .writable]) }
        for timer in timers { timer.handler() }
    }
}
