import Synchronization
import SwiftVMMemory

/// How a drive is presented to the guest (the `drives` entry of the
/// Firecracker API: `drive_id`, `is_read_only`, `cache_type`).
public struct BlockDriveConfig: Sendable, Hashable {
    /// The drive's identifier; the guest reads it as the disk's serial
    /// (VIRTIO_BLK_T_GET_ID, `/sys/block/vda/serial`). At most 20 bytes of UTF-8.
    public var id: String
    /// The guest may read but not write; VIRTIO_BLK_F_RO is offered.
    public var readOnly: Bool
    /// Firecracker's `Writeback` cache type: VIRTIO_BLK_F_FLUSH is offered and
    /// the guest's flushes reach the backend. Otherwise (`Unsafe`) the guest
    /// is told the disk has no volatile cache and never flushes.
    public var cacheWriteback: Bool

    public static let maxIDBytes = 20

    public init(id: String, readOnly: Bool = false, cacheWriteback: Bool = false) {
        self.id = id
        self.readOnly = readOnly
        self.cacheWriteback = cacheWriteback
    }
}

/// A virtio block device (virtio 1.2 §5.2, device ID 2) with one request queue.
///
/// The config space reports the capacity in 512-byte sectors, `seg_max`, and a
/// `blk_size` of 512. A 512-byte logical block is what every guest tool and
/// image accepts: ext4 images made with 1 KiB blocks (mkfs's choice for small
/// images) cannot be mounted on a disk with 4 KiB logical blocks, and the
/// request format addresses 512-byte sectors whatever `blk_size` says. Host
/// files with 4 KiB physical blocks still work; the host page cache absorbs
/// the sub-block writes.
///
/// A rate limiter (Firecracker's: bytes are a read's or write's data, each
/// request is one operation) holds back the request it refuses and stops
/// taking requests; a one-shot timer on the event registry resumes the queue
/// when the limiter allows it again, and no request is lost.
///
/// With an ``AsyncBlockBackend`` (the io_uring engine) requests overlap: a
/// queue pass starts each request's read, write or flush and returns without
/// waiting, up to the backend's in-flight limit; the event loop reaps the
/// completions, writes the status bytes, adds the used elements and
/// interrupts the guest once per batch (as EVENT_IDX or NO_INTERRUPT
/// allow). A flush starts only once every write before it has completed;
/// a short transfer is continued where it stopped, and one that moves
/// nothing fails with an I/O error. A reset waits for what is in flight
/// before it returns, so no request touches guest memory afterwards.
public final class VirtioBlock: VirtioDevice, DeviceCountersOwner {
    /// What the device counts, for metrics.
    public enum Counter: String, CaseIterable, Sendable {
        case requests, reads = "read_requests", writes = "write_requests", flushes = "flush_requests"
        case readBytes = "read_bytes", writeBytes = "write_bytes", errors
        /// Requests the rate limiter held back (Firecracker's name).
        case throttled = "rate_limiter_throttled_events"
    }
    public let counters = DeviceCounters(Counter.self)

    /// Block feature bits (§5.2.3).
    public enum Feature {
        public static let segMax: UInt64 = 1 << 2
        public static let readOnly: UInt64 = 1 << 5
        public static let blockSize: UInt64 = 1 << 6
        public static let flush: UInt64 = 1 << 9
    }

    /// Request types (§5.2.6).
    public enum RequestType {
        public static let read: UInt32 = 0
        public static let write: UInt32 = 1
        public static let flush: UInt32 = 4
        public static let getID: UInt32 = 8
    }

    /// Values of the status byte that ends each request (§5.2.6).
    public enum RequestStatus {
        public static let ok: UInt8 = 0
        public static let ioError: UInt8 = 1
        public static let unsupported: UInt8 = 2
    }

    public enum ConfigError: Error, Equatable, CustomStringConvertible {
        case idTooLong(String)

        public var description: String {
            switch self {
            case .idTooLong(let id):
                "drive id \"\(id)\" is \(id.utf8.count) bytes; virtio-blk serials hold at most \(BlockDriveConfig.maxIDBytes)"
            }
        }
    }

    public static let sectorSize: UInt64 = 512
    public static let queueSize: UInt16 = 256
    /// Size of the request header: type u32, reserved u32, sector u64.
    static let headerSize: UInt64 = 16

    public let config: BlockDriveConfig
    public let backend: any BlockBackend
    /// The backend as one that keeps requests in flight, when it is one.
    let asyncBackend: (any AsyncBlockBackend)?
    /// The disk size in 512-byte sectors; a partial last sector is not exposed.
    public let capacity: UInt64
    public let offeredFeatures: UInt64
    private let configSpace: [UInt8]
    private let serial: [UInt8]
    private let state: Mutex<State>
    /// Monotonic nanoseconds, for the rate limiter.
    private let clock: @Sendable () -> UInt64

    struct State {
        var activation: VirtioActivation?
        /// Counts activations and resets; a timer of an earlier activation
        /// that fires late sees a different value.
        var generation: UInt64 = 0
        var gate: LimiterGate
        /// The request the rate limiter refused, served first on resuming.
        var held: HeldRequest?

        // The asynchronous path.
        /// Requests started and not yet completed, by the tag of their operation.
        var inFlight: [UInt64: InFlight] = [:]
        var nextTag: UInt64 = 1
        /// Writes among `inFlight`: a flush waits until there are none.
        var writesInFlight = 0
        /// A request admitted but not started: a flush waiting for writes, or
        /// one the backend had no room for. Nothing after it starts first.
        var blocked: HeldRequest?
        /// The backend's completion descriptor is watched by the event loop.
        var completionsSubscribed = false
    }

    /// A request whose operation the backend is performing.
    struct InFlight {
        var head: UInt16
        var request: Request
        var kind: BlockOperation.Kind
        var offset: UInt64
        /// The guest buffers the data moves through.
        var buffers: [GuestBuffer]
        var total: UInt64
        /// Bytes already moved, by earlier completions of a short transfer.
        var done: UInt64 = 0
    }

    /// A request taken from the ring and not yet performed.
    struct HeldRequest {
        var head: UInt16
        var request: Request
    }

    /// - Parameters:
    ///   - rateLimiter: bytes and operations the guest may use; no limit by default.
    ///   - clock: monotonic nanoseconds, for the rate limiter.
    public init(
        config: BlockDriveConfig, backend: any BlockBackend, rateLimiter: RateLimiter.Configuration = .init(),
        clock: @escaping @Sendable () -> UInt64 = RateLimiter.monotonicNanoseconds
    ) throws(ConfigError) {
        guard config.id.utf8.count <= BlockDriveConfig.maxIDBytes else { throw .idTooLong(config.id) }
        self.config = config
        self.backend = backend
        self.asyncBackend = backend as? any AsyncBlockBackend
        self.clock = clock
        self.state = Mutex(State(gate: LimiterGate(rateLimiter, now: clock())))
        self.capacity = backend.size / Self.sectorSize
        var features = Feature.segMax | Feature.blockSize
            | VirtioFeature.version1 | VirtioFeature.eventIndex | VirtioFeature.indirectDescriptors
        if config.readOnly { features |= Feature.readOnly }
        if config.cacheWriteback { features |= Feature.flush }
        self.offeredFeatures = features
        self.serial = Array(config.id.utf8) + [UInt8](repeating: 0, count: BlockDriveConfig.maxIDBytes - config.id.utf8.count)
        self.configSpace = Self.configSpace(capacity: capacity)
    }

    /// struct virtio_blk_config up to `blk_size` (§5.2.4): capacity u64 at 0,
    /// size_max u32 at 8 (not offered), seg_max u32 at 12, geometry at 16 (not
    /// offered), blk_size u32 at 20. Later fields belong to features not offered.
    static func configSpace(capacity: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 24)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: capacity.littleEndian, toByteOffset: 0, as: UInt64.self)
            // Two descriptors of each request carry the header and the status.
            raw.storeBytes(of: UInt32(queueSize - 2).littleEndian, toByteOffset: 12, as: UInt32.self)
            raw.storeBytes(of: UInt32(sectorSize).littleEndian, toByteOffset: 20, as: UInt32.self)
        }
        return bytes
    }

    // MARK: - VirtioDevice

    public var deviceType: UInt32 { VirtioDeviceType.block }
    public var queueMaxSizes: [UInt16] { [Self.queueSize] }

    public func readConfig(at offset: Int, into data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count {
            let at = offset + i
            data[i] = at < configSpace.count ? configSpace[at] : 0
        }
    }

    public func writeConfig(at offset: Int, from data: UnsafeRawBufferPointer) {
        // Only the `writeback` field is writable, with VIRTIO_BLK_F_CONFIG_WCE,
        // which is not offered.
        Log.warning("virtio-blk: write to read-only config space at 0x\(String(offset, radix: 16)) ignored")
    }

    public func activate(_ activation: VirtioActivation) {
        let subscribe = state.withLock { s in
            s.generation += 1
            s.activation = activation
            guard asyncBackend != nil, activation.events != nil, !s.completionsSubscribed else { return false }
            s.completionsSubscribed = true
            return true
        }
        // The completion descriptor stays watched for the device's life.
        if subscribe, let events = activation.events, let fd = asyncBackend?.completionDescriptor {
            do {
                _ = try events.subscribe(fd, interest: .readable) { [weak self] _ in self?.serveCompletions() }
            } catch {
                Log.error("virtio-blk: drive \"\(config.id)\": cannot watch I/O completions: \(error)")
            }
        }
    }

    public func reset() {
        let busy = state.withLock { s in
            s.gate.cancelTimer(s.activation?.events)
            s.held = nil
            s.activation = nil
            s.generation += 1
            // Completions of these requests are dropped when they arrive.
            let busy = !s.inFlight.isEmpty
            s.inFlight.removeAll()
            s.writesInFlight = 0
            s.blocked = nil
            return busy
        }
        // The driver may reuse the buffers once the reset is done.
        if busy, let asyncBackend, !asyncBackend.waitForIdle(timeoutNanoseconds: Self.resetWaitNanoseconds) {
            Log.warning("virtio-blk: drive \"\(config.id)\": I/O still running after the reset")
        }
    }

    /// How long a reset waits for requests in flight.
    static let resetWaitNanoseconds: UInt64 = 5_000_000_000

    @discardableResult
    public func process(queue index: Int) -> Bool {
        guard let (activation, generation) = state.withLock({ s in s.activation.map { ($0, s.generation) } }) else {
            return false
        }
        let more = pass(queue: index, activation, generation: generation)
        // Reads the host has cached often complete while they are submitted:
        // finish them now rather than on the loop's next turn.
        if asyncBackend != nil { serveCompletions() }
        return more
    }
}

// MARK: - Rate limiting

extension VirtioBlock {
    /// The rate limiter now: its buckets, their tokens, and any block.
    public var rateLimiter: RateLimiter { state.withLock { $0.gate.limiter } }

    /// Changes the rate limiter while the device runs (Firecracker's
    /// `PATCH /drives/{id}`); new buckets start full. A queue held back by
    /// the old limiter is served again at once, on the event loop. Any thread.
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

    /// One bounded pass over the request queue: the held request first, then
    /// new ones, each charged to the rate limiter before it is performed.
    /// Returns true when it stopped at the per-pass limit.
    private func pass(queue index: Int, _ activation: VirtioActivation, generation: UInt64) -> Bool {
        if let asyncBackend { return asyncPass(queue: index, activation, generation: generation, backend: asyncBackend) }
        guard let queue = activation.queue(at: index) else { return false }
        let flushNegotiated = activation.negotiated(Feature.flush)
        for _ in 0..<VirtioActivation.requestsPerPass {
            let next: HeldRequest
            switch takeHeld(activation, generation: generation) {
            case .throttled:
                return false
            case .admitted(let held):
                next = held
            case .none:
                guard let chain = queue.popAvailable() else { return false }
                switch parse(chain, memory: activation.memory) {
                case .answered(let length):
                    queue.addUsed(head: chain.head, length: length)
                    continue
                case .request(let request):
                    next = HeldRequest(head: chain.head, request: request)
                    guard admitOrHold(next, activation, generation: generation) else { return false }
                }
            }
            queue.addUsed(head: next.head, length: perform(next.request, memory: activation.memory, flushNegotiated: flushNegotiated))
        }
        return true
    }

    private enum HeldOutcome { case none, throttled, admitted(HeldRequest) }

    /// The held request if the limiter lets it through now.
    private func takeHeld(_ activation: VirtioActivation, generation: UInt64) -> HeldOutcome {
        state.withLock { s in
            guard s.generation == generation else { return .throttled }
            guard let held = s.held else { return .none }
            guard charge(held.request, &s, activation, generation: generation) else { return .throttled }
            s.held = nil
            return .admitted(held)
        }
    }

    /// Charges a new request; when the limiter refuses it, holds it.
    private func admitOrHold(_ request: HeldRequest, _ activation: VirtioActivation, generation: UInt64) -> Bool {
        state.withLock { s in
            // A reset since the pass began: the driver no longer wants it.
            guard s.generation == generation else { return false }
            if charge(request.request, &s, activation, generation: generation) { return true }
            s.held = request
            counters.add(Counter.throttled)
            return false
        }
    }

    private func charge(_ request: Request, _ s: inout State, _ activation: VirtioActivation, generation: UInt64) -> Bool {
        s.gate.admit(bytes: request.dataLength, clock: clock, events: activation.events) { serial in
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
}

// MARK: - Requests

extension VirtioBlock {
    /// A request parsed from its chain, ready to perform. Performing and
    /// completing are separate so an asynchronous backend can do the first
    /// later and elsewhere.
    struct Request {
        var type: UInt32
        var sector: UInt64
        /// Device-readable data after the header (write requests).
        var readableData: [GuestBuffer]
        /// Device-writable data before the status byte (read, get-id requests).
        var writableData: [GuestBuffer]
        var status: GuestAddress

        /// The bytes the rate limiter charges: a read's or a write's data.
        var dataLength: UInt64 {
            switch type {
            case RequestType.read: VirtioBlock.length(of: writableData)
            case RequestType.write: VirtioBlock.length(of: readableData)
            default: 0
            }
        }
    }

    /// A chain parsed: a request to perform, or one answered already (a bad
    /// header) with the used length.
    enum Parsed {
        case request(Request)
        case answered(UInt32)
    }

    /// Reads the request header of `chain`; a chain without a status byte or
    /// with a short header is answered at once.
    func parse(_ chain: DescriptorChain, memory: GuestMemory) -> Parsed {
        // The status byte is the last writable byte (§5.2.6); without it the
        // device has no way to answer, and hands the chain back untouched.
        let writable = chain.writable.filter { $0.length > 0 }
        guard let last = writable.last else {
            Log.warning("virtio-blk: request \(chain.head) has no writable status byte; returned unanswered")
            return .answered(0)
        }
        let status = GuestAddress(last.address.rawValue + UInt64(last.length) - 1)
        var writableData = writable
        writableData[writableData.count - 1] = GuestBuffer(address: last.address, length: last.length - 1, isWritable: true)

        var header = [UInt8](repeating: 0, count: Int(Self.headerSize))
        var cursor = GuestBufferCursor(memory: memory, buffers: chain.readable)
        let headerRead = (try? header.withUnsafeMutableBytes { bytes throws(GuestMemoryError) in try cursor.read(into: bytes) }) ?? 0
        guard headerRead == header.count else {
            Log.warning("virtio-blk: request \(chain.head) has a \(headerRead)-byte header, not 16")
            return .answered(complete(status: RequestStatus.ioError, at: status, written: 0, memory: memory))
        }
        return .request(header.withUnsafeBytes { bytes in
            Request(
                type: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)),
                sector: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                readableData: Self.buffers(of: chain.readable, after: Self.headerSize),
                writableData: writableData,
                status: status
            )
        })
    }

    /// Performs `request` and writes its status byte; returns the used length.
    func perform(_ request: Request, memory: GuestMemory, flushNegotiated: Bool) -> UInt32 {
        let (result, written) = performCounted(request, memory: memory, flushNegotiated: flushNegotiated)
        return complete(status: result, at: request.status, written: written, memory: memory)
    }

    /// Writes the status byte; returns the used length.
    private func complete(status: UInt8, at address: GuestAddress, written: UInt64, memory: GuestMemory) -> UInt32 {
        do {
            try memory.store(status, at: address)
        } catch {
            Log.warning("virtio-blk: cannot write request status: \(error)")
            return UInt32(truncatingIfNeeded: written)
        }
        return UInt32(truncatingIfNeeded: written + 1)
    }

    /// Performs `request`; returns its status and the data bytes it wrote
    /// into guest memory.
    func performCounted(_ request: Request, memory: GuestMemory, flushNegotiated: Bool) -> (UInt8, UInt64) {
        let (status, written) = performUncounted(request, memory: memory, flushNegotiated: flushNegotiated)
        counters.add(Counter.requests)
        if status != RequestStatus.ok { counters.add(Counter.errors) }
        switch request.type {
        case RequestType.read:
            counters.add(Counter.reads)
            if status == RequestStatus.ok { counters.add(Counter.readBytes, written) }
        case RequestType.write:
            counters.add(Counter.writes)
            if status == RequestStatus.ok { counters.add(Counter.writeBytes, Self.length(of: request.readableData)) }
        case RequestType.flush:
            counters.add(Counter.flushes)
        default:
            break
        }
        return (status, written)
    }

    private func performUncounted(_ request: Request, memory: GuestMemory, flushNegotiated: Bool) -> (UInt8, UInt64) {
        switch request.type {
        case RequestType.read:
            guard let offset = byteOffset(request, length: Self.length(of: request.writableData)) else {
                return (RequestStatus.ioError, 0)
            }
            var cursor = GuestBufferCursor(memory: memory, buffers: request.writableData)
            var position = offset
            do {
                while let segment = try cursor.nextSegment(limit: .max) {
                    try backend.read(into: segment, at: position)
                    position += UInt64(segment.count)
                }
            } catch {
                Log.warning("virtio-blk: read of sector \(request.sector) failed: \(error)")
                return (RequestStatus.ioError, position - offset)
            }
            return (RequestStatus.ok, position - offset)

        case RequestType.write:
            guard !config.readOnly else {
                Log.warning("virtio-blk: write to read-only drive \"\(config.id)\" refused")
                return (RequestStatus.ioError, 0)
            }
            guard let offset = byteOffset(request, length: Self.length(of: request.readableData)) else {
                return (RequestStatus.ioError, 0)
            }
            var cursor = GuestBufferCursor(memory: memory, buffers: request.readableData)
            var position = offset
            do {
                while let segment = try cursor.nextSegment(limit: .max) {
                    try backend.write(from: UnsafeRawBufferPointer(segment), at: position)
                    position += UInt64(segment.count)
                }
            } catch {
                Log.warning("virtio-blk: write of sector \(request.sector) failed: \(error)")
                return (RequestStatus.ioError, 0)
            }
            return (RequestStatus.ok, 0)

        case RequestType.flush:
            guard flushNegotiated else { return (RequestStatus.unsupported, 0) }
            do {
                try backend.flush()
            } catch {
                Log.warning("virtio-blk: flush failed: \(error)")
                return (RequestStatus.ioError, 0)
            }
            return (RequestStatus.ok, 0)

        case RequestType.getID:
            var cursor = GuestBufferCursor(memory: memory, buffers: request.writableData)
            // The serial fills at most 20 bytes and is NUL-padded, not NUL-terminated.
            let written = (try? serial.withUnsafeBytes { try cursor.write(from: $0) }) ?? 0
            return (RequestStatus.ok, UInt64(written))

        default:
            return (RequestStatus.unsupported, 0)
        }
    }

    /// The byte offset of a read or write of `length` bytes, or nil (and a log
    /// line) when it is not whole sectors or reaches past the end of the disk.
    private func byteOffset(_ request: Request, length: UInt64) -> UInt64? {
        guard length % Self.sectorSize == 0 else {
            Log.warning("virtio-blk: \(length)-byte transfer is not a multiple of 512")
            return nil
        }
        let sectors = length / Self.sectorSize
        guard request.sector <= capacity, sectors <= capacity - request.sector else {
            Log.warning("virtio-blk: \(sectors) sectors at sector \(request.sector) run past the end of drive \"\(config.id)\" (\(capacity) sectors)")
            return nil
        }
        return request.sector * Self.sectorSize
    }

    static func length(of buffers: [GuestBuffer]) -> UInt64 {
        buffers.reduce(0) { $0 + UInt64($1.length) }
    }

    /// `buffers` with the first `skip` bytes removed.
    static func buffers(of buffers: some Collection<GuestBuffer>, after skip: UInt64) -> [GuestBuffer] {
        var remaining = skip
        var result: [GuestBuffer] = []
        for buffer in buffers {
            let length = UInt64(buffer.length)
            if remaining >= length {
                remaining -= length
                continue
            }
            result.append(GuestBuffer(
                address: GuestAddress(buffer.address.rawValue + remaining),
                length: buffer.length - UInt32(remaining),
                isWritable: buffer.isWritable
            ))
            remaining = 0
        }
        return result
    }
}

// MARK: - Requests in flight

extension VirtioBlock {
    private enum Start { case answered(UInt32), started, blocked }

    /// One bounded pass with an asynchronous backend: the blocked request
    /// first, then the held one, then new ones, each started without waiting.
    /// Everything happens under the state lock, so a reset either sees a
    /// request in flight (and waits for it) or stops it from starting.
    private func asyncPass(
        queue index: Int, _ activation: VirtioActivation, generation: UInt64, backend: any AsyncBlockBackend
    ) -> Bool {
        guard let queue = activation.queue(at: index) else { return false }
        let flushNegotiated = activation.negotiated(Feature.flush)
        let memory = activation.memory
        var started = false
        let more = state.withLock { s -> Bool in
            guard s.generation == generation else { return false }
            if let blocked = s.blocked {
                s.blocked = nil
                switch start(blocked, &s, memory: memory, flushNegotiated: flushNegotiated, backend: backend) {
                case .blocked: return false
                case .started: started = true
                case .answered(let length): queue.addUsed(head: blocked.head, length: length)
                }
            }
            for _ in 0..<VirtioActivation.requestsPerPass {
                guard s.inFlight.count < backend.maxInFlight else { return false }
                let next: HeldRequest
                if let held = s.held {
                    guard charge(held.request, &s, activation, generation: generation) else { return false }
                    s.held = nil
                    next = held
                } else {
                    guard let chain = queue.popAvailable() else { return false }
                    switch parse(chain, memory: memory) {
                    case .answered(let length):
                        queue.addUsed(head: chain.head, length: length)
                        continue
                    case .request(let request):
                        next = HeldRequest(head: chain.head, request: request)
                        guard charge(request, &s, activation, generation: generation) else {
                            s.held = next
                            counters.add(Counter.throttled)
                            return false
                        }
                    }
                }
                switch start(next, &s, memory: memory, flushNegotiated: flushNegotiated, backend: backend) {
                case .blocked: return false
                case .started: started = true
                case .answered(let length): queue.addUsed(head: next.head, length: length)
                }
            }
            return true
        }
        if started { backend.submitQueued() }
        return more
    }

    /// Starts `held`'s operation, or answers it at once (a request with no
    /// disk I/O, or one that fails its checks), or blocks it: a flush while
    /// writes are in flight, or any request the backend has no room for.
    private func start(
        _ held: HeldRequest, _ s: inout State, memory: GuestMemory, flushNegotiated: Bool, backend: any AsyncBlockBackend
    ) -> Start {
        let request = held.request
        let kind: BlockOperation.Kind
        var buffers: [GuestBuffer] = []
        var offset: UInt64 = 0
        switch request.type {
        case RequestType.read:
            guard let at = silentOffset(request, length: Self.length(of: request.writableData)),
                Self.length(of: request.writableData) > 0
            else { return .answered(perform(request, memory: memory, flushNegotiated: flushNegotiated)) }
            (kind, buffers, offset) = (.read, request.writableData, at)
        case RequestType.write:
            guard !config.readOnly, let at = silentOffset(request, length: Self.length(of: request.readableData)),
                Self.length(of: request.readableData) > 0
            else { return .answered(perform(request, memory: memory, flushNegotiated: flushNegotiated)) }
            (kind, buffers, offset) = (.write, request.readableData, at)
        case RequestType.flush where flushNegotiated:
            // Only writes that completed are covered by a flush (§5.2.6.1):
            // wait for those started before it.
            guard s.writesInFlight == 0 else {
                s.blocked = held
                return .blocked
            }
            kind = .flush
        default:
            return .answered(perform(request, memory: memory, flushNegotiated: flushNegotiated))
        }
        var flight = InFlight(
            head: held.head, request: request, kind: kind, offset: offset, buffers: buffers, total: Self.length(of: buffers))
        let tag = s.nextTag
        s.nextTag &+= 1
        switch enqueue(flight, tag: tag, memory: memory, backend: backend) {
        case .some(true):
            break
        case .some(false):
            s.blocked = held
            return .blocked
        case .none:
            flight.done = 0
            return .answered(finish(flight, status: RequestStatus.ioError, memory: memory))
        }
        s.inFlight[tag] = flight
        if kind == .write { s.writesInFlight += 1 }
        return .started
    }

    /// Hands the part of `flight` not yet done to the backend: true when
    /// queued, false when the backend has no room, nil when the guest
    /// buffers cannot be reached.
    private func enqueue(_ flight: InFlight, tag: UInt64, memory: GuestMemory, backend: any AsyncBlockBackend) -> Bool? {
        var operation = BlockOperation(kind: flight.kind, offset: flight.offset + flight.done)
        if flight.kind != .flush {
            var cursor = GuestBufferCursor(memory: memory, buffers: Self.buffers(of: flight.buffers, after: flight.done))
            do {
                while let segment = try cursor.nextSegment(limit: .max) { operation.segments.append(segment) }
            } catch {
                Log.warning("virtio-blk: request \(flight.head): \(error)")
                return nil
            }
        }
        return backend.enqueue(operation, tag: tag)
    }

    /// Reaps the backend's completions: each finished request gets its status
    /// byte and used element, a short one is continued, the guest is
    /// interrupted once for the batch, and the queue is served again (a
    /// flush may be free to start, and there is room for more). The event
    /// loop calls it when the backend's completion descriptor is readable.
    public func serveCompletions() {
        guard let backend = asyncBackend else { return }
        var batch: [(tag: UInt64, result: Int)] = []
        backend.reap { batch.append(($0, $1)) }
        var resubmitted = false
        let current = state.withLock { s -> (VirtioActivation, UInt64)? in
            guard let activation = s.activation, let queue = activation.queue(at: 0) else { return nil }
            for (tag, result) in batch {
                // Unknown tags belong to requests a reset abandoned.
                guard var flight = s.inFlight[tag] else { continue }
                let status: UInt8
                if result == -Self.eintr || result == -Self.eagain {
                    status = retry(&flight, tag: tag, &s, activation.memory, backend, &resubmitted)
                } else if result < 0 {
                    Log.warning("virtio-blk: \(flight.kind) at byte \(flight.offset + flight.done) of drive \"\(config.id)\" failed: errno \(-result)")
                    status = RequestStatus.ioError
                } else if flight.kind == .flush {
                    status = RequestStatus.ok
                } else {
                    flight.done += UInt64(result)
                    if flight.done >= flight.total {
                        status = RequestStatus.ok
                    } else if result == 0 {
                        Log.warning("virtio-blk: \(flight.kind) at byte \(flight.offset + flight.done) of drive \"\(config.id)\" made no progress")
                        status = RequestStatus.ioError
                    } else {
                        status = retry(&flight, tag: tag, &s, activation.memory, backend, &resubmitted)
                    }
                }
                if status == Self.stillRunning {
                    s.inFlight[tag] = flight
                    continue
                }
                s.inFlight[tag] = nil
                if flight.kind == .write { s.writesInFlight -= 1 }
                queue.addUsed(head: flight.head, length: finish(flight, status: status, memory: activation.memory))
            }
            return (activation, s.generation)
        }
        if resubmitted { backend.submitQueued() }
        guard let (activation, generation) = current, let queue = activation.queue(at: 0) else { return }
        let more = pass(queue: 0, activation, generation: generation)
        activation.finishPass(on: queue, index: 0, more: more) { [weak self] in
            self?.resume(generation: generation, serial: nil)
        }
    }

    /// Linux's EINTR and EAGAIN: an operation that ended with one is repeated.
    private static let eintr = 4, eagain = 11

    /// Not a status byte: the request went back to the backend.
    private static let stillRunning: UInt8 = 0xff

    /// Queues the rest of a short or interrupted transfer; an I/O error when
    /// it cannot be queued.
    private func retry(
        _ flight: inout InFlight, tag: UInt64, _ s: inout State, _ memory: GuestMemory, _ backend: any AsyncBlockBackend,
        _ resubmitted: inout Bool
    ) -> UInt8 {
        guard enqueue(flight, tag: tag, memory: memory, backend: backend) == true else {
            Log.warning("virtio-blk: cannot continue a short \(flight.kind) on drive \"\(config.id)\"")
            return RequestStatus.ioError
        }
        resubmitted = true
        return Self.stillRunning
    }

    /// Counts a completed request and writes its status byte; returns the used length.
    private func finish(_ flight: InFlight, status: UInt8, memory: GuestMemory) -> UInt32 {
        counters.add(Counter.requests)
        if status != RequestStatus.ok { counters.add(Counter.errors) }
        var written: UInt64 = 0
        switch flight.kind {
        case .read:
            counters.add(Counter.reads)
            written = status == RequestStatus.ok ? flight.total : flight.done
            if status == RequestStatus.ok { counters.add(Counter.readBytes, written) }
        case .write:
            counters.add(Counter.writes)
            if status == RequestStatus.ok { counters.add(Counter.writeBytes, flight.total) }
        case .flush:
            counters.add(Counter.flushes)
        }
        return complete(status: status, at: flight.request.status, written: written, memory: memory)
    }

    /// `byteOffset` without its log line: nil for a transfer that is not whole
    /// sectors or runs past the end (the synchronous path then reports it).
    private func silentOffset(_ request: Request, length: UInt64) -> UInt64? {
        guard length % Self.sectorSize == 0 else { return nil }
        let sectors = length / Self.sectorSize
        guard request.sector <= capacity, sectors <= capacity - request.sector else { return nil }
        return request.sector * Self.sectorSize
    }
}
