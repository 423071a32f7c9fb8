import Synchronization
import SwiftVMMemory

/// A virtio network device (virtio 1.2 §5.1, device ID 1) in front of a
/// ``NetBackend``, as Firecracker builds it: one receive queue (0), one
/// transmit queue (1), no control queue, and the checksum and segmentation
/// offloads passed through to the backend.
///
/// Frames keep their 12-byte virtio-net header on both sides: the device
/// checks each header against the negotiated features and touches only the
/// fields the negotiation governs (flags, num_buffers). Received frames are staged in one device buffer (a TAP reports
/// a frame's length only by reading it) and copied into the guest's chains,
/// spread over several with VIRTIO_NET_F_MRG_RXBUF. Transmitted chains are
/// checked whole and written with one gather call straight from guest memory.
///
/// Flow control: the backend is read only while the guest has receive
/// buffers, so frames wait in the TAP rather than being dropped, and resume
/// when the guest notifies the receive queue; a frame the backend refuses
/// (would block) waits in the device until the backend's descriptor reports
/// it writable. A frame that must be dropped is counted in ``counters`` and
/// logged (the log is rate-limited).
///
/// Rate limiters, one per direction (Firecracker's `rx_rate_limiter` and
/// `tx_rate_limiter`): each frame is one operation and its length, virtio-net
/// header included, in bytes. A received frame the limiter refuses stays
/// staged in the device and the backend is not read further, so later frames
/// wait in the TAP; a frame to send that it refuses stays in the device and
/// the transmit queue stops. A one-shot timer on the event registry resumes
/// the direction when the limiter allows it.
///
/// Threads: `process(queue:)` and the backend's event handlers run on the
/// event-loop thread and hold the device's lock for one bounded pass;
/// `activate` and `reset` come from a vCPU thread and wait for at most that
/// pass.
public final class VirtioNet: VirtioDevice, DeviceCountersOwner {
    /// Network feature bits (§5.1.3).
    public enum Feature {
        /// VIRTIO_NET_F_CSUM: the driver may send frames with partial checksums.
        public static let checksum: UInt64 = 1 << 0
        /// VIRTIO_NET_F_GUEST_CSUM: the driver takes frames with partial checksums.
        public static let guestChecksum: UInt64 = 1 << 1
        /// VIRTIO_NET_F_MAC: the config space holds the guest's MAC address.
        public static let mac: UInt64 = 1 << 5
        public static let guestTSO4: UInt64 = 1 << 7
        public static let guestTSO6: UInt64 = 1 << 8
        public static let guestUFO: UInt64 = 1 << 10
        public static let hostTSO4: UInt64 = 1 << 11
        public static let hostTSO6: UInt64 = 1 << 12
        public static let hostUFO: UInt64 = 1 << 14
        /// VIRTIO_NET_F_MRG_RXBUF: a received frame may span several chains.
        public static let mergeableReceiveBuffers: UInt64 = 1 << 15
        /// VIRTIO_NET_F_STATUS, not offered: like Firecracker the link is
        /// always up, which a driver assumes without this feature (§5.1.4).
        public static let status: UInt64 = 1 << 16
    }

    /// What the device counts, for metrics (``counters``). Frames are
    /// Ethernet frames; bytes exclude the virtio-net header.
    public enum Counter: String, CaseIterable, Sendable {
        /// Frames placed in the guest's receive buffers, and their bytes.
        case rxFrames = "rx_frames", rxBytes = "rx_bytes"
        /// Frames read from the backend that the guest did not get: larger
        /// than its buffers, a header it did not negotiate, lost at a reset.
        case rxDropped = "rx_dropped"
        /// Backend read failures, and receive chains refused as unusable
        /// (device-readable buffers, shorter than the header).
        case rxErrors = "rx_errors"
        /// Frames the backend took, and their bytes.
        case txFrames = "tx_frames", txBytes = "tx_bytes"
        /// Transmit chains refused as malformed (a writable buffer, too
        /// short, too long, an offload not negotiated), or abandoned at a reset.
        case txDropped = "tx_dropped"
        /// Frames the backend failed to take.
        case txErrors = "tx_errors"
        /// Frames the receive and the transmit rate limiter held back (Firecracker's names).
        case rxThrottled = "rx_rate_limiter_throttled", txThrottled = "tx_rate_limiter_throttled"
    }

    public static let receiveQueue = 0
    public static let transmitQueue = 1
    public static let queueSize: UInt16 = 256
    /// The largest frame either way, header included: 64 KiB of IP datagram
    /// (what TSO and UFO produce at most), an Ethernet header with a VLAN
    /// tag, and the virtio-net header.
    public static let maxFrameLength = VirtioNetHeader.size + 65_535 + 14 + 4
    /// The smallest transmit frame: the virtio-net header and an Ethernet header.
    public static let minTransmitLength = VirtioNetHeader.size + 14

    /// The interface's name (Firecracker's `iface_id`).
    public let id: String
    /// The guest's MAC address, or nil to let the guest choose one.
    public let mac: [UInt8]?
    public let backend: any NetBackend
    /// Names the device in log lines, e.g. "virtio-net eth0".
    public let name: String
    public let offeredFeatures: UInt64
    private let state: Mutex<State>
    /// Every ``Counter``, since the device was created; lock-free, read from any thread.
    public let counters = DeviceCounters(Counter.self)
    /// Monotonic nanoseconds, for the rate limiters.
    private let clock: @Sendable () -> UInt64

    /// - Parameters:
    ///   - id: the interface's name, for log lines.
    ///   - mac: six bytes, offered with VIRTIO_NET_F_MAC; nil offers no MAC.
    ///   - receiveLimiter, transmitLimiter: what each direction may carry; no limit by default.
    ///   - clock: monotonic nanoseconds, for the rate limiters.
    public init(
        id: String, mac: [UInt8]?, backend: any NetBackend,
        receiveLimiter: RateLimiter.Configuration = .init(), transmitLimiter: RateLimiter.Configuration = .init(),
        clock: @escaping @Sendable () -> UInt64 = RateLimiter.monotonicNanoseconds
    ) {
        self.id = id
        self.clock = clock
        self.mac = mac.flatMap { $0.count == 6 ? $0 : nil }
        self.backend = backend
        self.name = "virtio-net \(id)"
        var features = Feature.checksum | Feature.guestChecksum
            | Feature.guestTSO4 | Feature.guestTSO6 | Feature.guestUFO
            | Feature.hostTSO4 | Feature.hostTSO6 | Feature.hostUFO
            | Feature.mergeableReceiveBuffers
            | VirtioFeature.version1 | VirtioFeature.eventIndex
        if self.mac != nil { features |= Feature.mac }
        self.offeredFeatures = features
        let now = clock()
        self.state = Mutex(State(
            staging: [UInt8](repeating: 0, count: Self.maxFrameLength),
            receiveGate: LimiterGate(receiveLimiter, now: now), transmitGate: LimiterGate(transmitLimiter, now: now)))
    }

    /// The current value of one counter.
    public func count(of counter: Counter) -> UInt64 { counters[counter.rawValue] ?? 0 }

    /// The TAP offloads for the features a driver accepted: the guest may be
    /// handed partial checksums only with GUEST_CSUM, and large segments only
    /// of the kinds it accepted on top of that (§5.1.3.1: each GUEST_TSO*
    /// and GUEST_UFO requires GUEST_CSUM).
    public static func tunOffload(forNegotiated features: UInt64) -> NetOffload {
        guard features & Feature.guestChecksum != 0 else { return [] }
        var offload: NetOffload = .checksum
        if features & Feature.guestTSO4 != 0 { offload.insert(.tcp4Segmentation) }
        if features & Feature.guestTSO6 != 0 { offload.insert(.tcp6Segmentation) }
        if features & Feature.guestUFO != 0 { offload.insert(.udpFragmentation) }
        return offload
    }

    // MARK: - VirtioDevice

    public var deviceType: UInt32 { VirtioDeviceType.network }
    public var queueMaxSizes: [UInt16] { [Self.queueSize, Self.queueSize] }

    /// struct virtio_net_config (§5.1.4): mac[6] at 0. `status` and the
    /// later fields belong to features not offered and read as zero, as does
    /// the MAC when none is configured.
    public func readConfig(at offset: Int, into data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count {
            let at = offset + i
            data[i] = if let mac, at >= 0, at < mac.count { mac[at] } else { 0 }
        }
    }

    public func writeConfig(at offset: Int, from data: UnsafeRawBufferPointer) {
        // §5.1.4.2: a VERSION_1 driver does not write the config space;
        // only legacy drivers could set the MAC this way.
        Log.warning("\(name): write to read-only config space at 0x\(String(offset, radix: 16)) ignored")
    }

    public func activate(_ activation: VirtioActivation) {
        let offload = Self.tunOffload(forNegotiated: activation.features)
        do { try backend.setOffload(offload) } catch {
            Log.warning("\(name): cannot set the offloads of \(backend.name) to \(offload): \(error); "
                + "the guest is handed whole, checksummed frames instead")
            try? backend.setOffload([])
        }
        let generation = state.withLock { s -> UInt64 in
            s.generation += 1
            s.activation = activation
            // Frames may have arrived before the driver was ready; edge-
            // triggered readiness only reports new ones.
            s.backendMayHaveFrames = true
            return s.generation
        }
        guard let events = activation.events, let fd = backend.readinessDescriptor else { return }
        do {
            let token = try events.subscribe(fd, interest: [.readable, .edgeTriggered]) { [weak self] readiness in
                self?.backendEvent(readiness, generation: generation)
            }
            state.withLock { $0.subscription = token }
        } catch {
            Log.warning("\(name): cannot watch \(backend.name) on the event loop: \(error); "
                + "frames arrive only when the guest adds receive buffers")
        }
    }

    public func reset() {
        let (token, events) = state.withLock { s -> (EventToken?, (any EventRegistry)?) in
            let token = s.subscription
            let events = s.activation?.events
            if let length = s.stagedLength {
                counters.add(Counter.rxDropped)
                Log.warning("\(name): a received \(length - VirtioNetHeader.size)-byte frame is dropped: the driver reset the device")
            }
            if s.blockedTransmit != nil {
                counters.add(Counter.txDropped)
                Log.warning("\(name): a frame waiting for \(backend.name) is dropped: the driver reset the device")
            }
            if s.throttledTransmit != nil {
                counters.add(Counter.txDropped)
                Log.warning("\(name): a frame held back by the transmit rate limiter is dropped: the driver reset the device")
            }
            s.receiveGate.cancelTimer(events)
            s.transmitGate.cancelTimer(events)
            s.reset()
            return (token, events)
        }
        if let token { events?.remove(token) }
        // The next driver may accept fewer offloads; until it says, the
        // backend hands over only whole, checksummed frames.
        do { try backend.setOffload([]) } catch {
            Log.warning("\(name): cannot clear the offloads of \(backend.name): \(error)")
        }
    }

    @discardableResult
    public func process(queue index: Int) -> Bool {
        state.withLock { s in
            guard let activation = s.activation else { return false }
            switch index {
            case Self.receiveQueue:
                // Without a readiness descriptor the backend is polled on
                // each notification of new receive buffers.
                if s.subscription == nil { s.backendMayHaveFrames = true }
                return receivePass(&s, activation)
            case Self.transmitQueue:
                return transmitPass(&s, activation)
            default:
                return false
            }
        }
    }
}

// MARK: - State

extension VirtioNet {
    /// A transmit chain that passed every check, ready to write.
    struct PreparedFrame {
        var head: UInt16
        /// The header as checked, copied out of guest memory so the guest
        /// cannot change it between the check and the write.
        var header: [UInt8]
        /// The chain's buffers after the header.
        var payload: [GuestBuffer]
        var length: Int
    }

    struct State {
        var activation: VirtioActivation?
        /// Counts activations and resets; handlers of an earlier activation
        /// that run once more after their removal see a different value.
        var generation: UInt64 = 0
        var subscription: EventToken?
        var watchingWritable = false
        /// A readable edge came and the backend was not read dry since.
        var backendMayHaveFrames = false
        var continuationPosted = false
        var hangupReported = false
        /// One frame, header first, read from the backend and not yet
        /// placed; `stagedLength` says whether it holds one.
        var staging: [UInt8]
        var stagedLength: Int?
        /// Receive chains taken from the ring for the staged frame or the next.
        var heldReceiveChains: [DescriptorChain] = []
        /// A frame the backend refused for now; transmission waits for it.
        var blockedTransmit: PreparedFrame?
        /// The staged frame was charged to the receive rate limiter.
        var stagedAdmitted = false
        /// The staged frame was refused by the receive rate limiter (and counted).
        var stagedThrottled = false
        /// A frame the transmit rate limiter refused; transmission waits for it.
        var throttledTransmit: PreparedFrame?
        var receiveGate: LimiterGate
        var transmitGate: LimiterGate

        init(staging: [UInt8], receiveGate: LimiterGate, transmitGate: LimiterGate) {
            self.staging = staging
            self.receiveGate = receiveGate
            self.transmitGate = transmitGate
        }

        /// Forgets everything but the buffer and the limiters' buckets.
        mutating func reset() {
            let next = generation + 1
            self = State(staging: staging, receiveGate: receiveGate, transmitGate: transmitGate)
            generation = next
        }
    }
}

// MARK: - Backend events

extension VirtioNet {
    /// The backend's descriptor changed: frames arrived (readable), a
    /// refused write may now succeed (writable), or it failed (hangup).
    private func backendEvent(_ readiness: EventReadiness, generation: UInt64) {
        state.withLock { s in
            guard s.generation == generation, let activation = s.activation else { return }
            if readiness.contains(.hangup), !s.hangupReported {
                s.hangupReported = true
                Log.warning("\(name): \(backend.name) reports an error or hang-up (was the interface deleted?)")
            }
            let transmit = readiness.contains(.writable) && s.blockedTransmit != nil
            if readiness.contains(.readable) || readiness.contains(.hangup) { s.backendMayHaveFrames = true }
            runPasses(&s, activation, receive: true, transmit: transmit, generation: generation)
        }
    }

    /// Runs one bounded pass per direction outside `process(queue:)`, then
    /// does what the transport does after a pass: interrupts the driver if it
    /// wants it and reports a broken queue. A pass that stopped at its limit
    /// continues in work posted to the loop, after the loop's other events.
    private func runPasses(
        _ s: inout State, _ activation: VirtioActivation, receive: Bool, transmit: Bool, generation: UInt64
    ) {
        var more = false
        if transmit {
            more = transmitPass(&s, activation) || more
            settle(queue: Self.transmitQueue, activation)
        }
        if receive {
            more = receivePass(&s, activation) || more
            settle(queue: Self.receiveQueue, activation)
        }
        guard more, !s.continuationPosted, let events = activation.events else { return }
        s.continuationPosted = true
        events.post { [weak self] in self?.continuePasses(generation: generation) }
    }

    private func continuePasses(generation: UInt64) {
        state.withLock { s in
            // A continuation of an earlier activation leaves the flag to the current one.
            guard s.generation == generation, let activation = s.activation else { return }
            s.continuationPosted = false
            runPasses(&s, activation, receive: true, transmit: true, generation: generation)
        }
    }

    private func settle(queue index: Int, _ activation: VirtioActivation) {
        guard let queue = activation.queue(at: index) else { return }
        activation.settle(queue, index: index)
    }

    /// Adds or drops interest in the backend becoming writable, which is
    /// only wanted while a frame waits for it.
    private func watchWritable(_ wanted: Bool, _ s: inout State) {
        guard s.watchingWritable != wanted, let token = s.subscription, let events = s.activation?.events else { return }
        let interest: EventInterest = wanted ? [.readable, .writable, .edgeTriggered] : [.readable, .edgeTriggered]
        do {
            try events.modify(token, interest: interest)
            s.watchingWritable = wanted
        } catch {
            Log.warning("\(name): cannot change what the event loop watches on \(backend.name): \(error)")
        }
    }
}

// MARK: - Rate limiting

extension VirtioNet {
    /// A direction of traffic, each with its own rate limiter.
    public enum Direction: Sendable, Hashable {
        case receive, transmit
    }

    /// A direction's rate limiter now: its buckets, their tokens, and any block.
    public func rateLimiter(_ direction: Direction) -> RateLimiter {
        state.withLock { s in direction == .receive ? s.receiveGate.limiter : s.transmitGate.limiter }
    }

    /// Changes a direction's rate limiter while the device runs (Firecracker's
    /// `PATCH /network-interfaces/{id}`); new buckets start full, and a
    /// direction held back by the old limiter goes on at once, on the event
    /// loop. Any thread.
    public func updateRateLimiter(
        _ direction: Direction, bandwidth: RateLimiter.BucketUpdate, ops: RateLimiter.BucketUpdate
    ) {
        let resume = state.withLock { s -> ((any EventRegistry), UInt64)? in
            let now = clock()
            let events = s.activation?.events
            let wasWaiting: Bool
            switch direction {
            case .receive:
                s.receiveGate.limiter.update(bandwidth: bandwidth, ops: ops, now: now)
                wasWaiting = s.receiveGate.cancelTimer(events) || s.stagedThrottled
            case .transmit:
                s.transmitGate.limiter.update(bandwidth: bandwidth, ops: ops, now: now)
                wasWaiting = s.transmitGate.cancelTimer(events) || s.throttledTransmit != nil
            }
            guard wasWaiting, let events else { return nil }
            return (events, s.generation)
        }
        guard let (events, generation) = resume else { return }
        events.post { [weak self] in self?.limiterResumed(direction, generation: generation, serial: nil) }
    }

    /// Charges one frame of `bytes` to `direction`'s limiter. False: the
    /// caller holds the frame; a timer resumes the direction.
    private func admit(_ direction: Direction, bytes: Int, _ s: inout State, _ activation: VirtioActivation) -> Bool {
        let generation = s.generation
        func charge(_ gate: inout LimiterGate) -> Bool {
            gate.admit(bytes: UInt64(bytes), clock: clock, events: activation.events) { serial in
                { [weak self] in self?.limiterResumed(direction, generation: generation, serial: serial) }
            }
        }
        switch direction {
        case .receive: return charge(&s.receiveGate)
        case .transmit: return charge(&s.transmitGate)
        }
    }

    /// A limiter's timer fired, or the limiter changed: run that direction's pass.
    private func limiterResumed(_ direction: Direction, generation: UInt64, serial: UInt64?) {
        state.withLock { s in
            guard s.generation == generation, let activation = s.activation else { return }
            if let serial {
                switch direction {
                case .receive: _ = s.receiveGate.timerFired(serial: serial)
                case .transmit: _ = s.transmitGate.timerFired(serial: serial)
                }
            }
            runPasses(&s, activation, receive: direction == .receive, transmit: direction == .transmit, generation: generation)
        }
    }
}

// MARK: - Transmit

extension VirtioNet {
    private enum SendOutcome { case sent, blocked, failed }

    /// One bounded pass over the transmit queue: the frame that waits for
    /// the backend first, then new chains. Returns true when it stopped at
    /// the limit with chains perhaps still waiting.
    private func transmitPass(_ s: inout State, _ activation: VirtioActivation) -> Bool {
        guard let queue = activation.queue(at: Self.transmitQueue) else { return false }
        var budget = VirtioActivation.requestsPerPass
        if let blocked = s.blockedTransmit {
            guard send(blocked, queue: queue, activation) != .blocked else { return false }
            s.blockedTransmit = nil
            watchWritable(false, &s)
            budget -= 1
        }
        while budget > 0 {
            let frame: PreparedFrame
            if let held = s.throttledTransmit {
                guard admit(.transmit, bytes: held.length, &s, activation) else { return false }
                s.throttledTransmit = nil
                frame = held
            } else {
                guard let chain = queue.popAvailable() else { return false }
                guard let prepared = prepareTransmit(chain, activation) else {
                    budget -= 1
                    queue.addUsed(head: chain.head, length: 0)
                    continue
                }
                guard admit(.transmit, bytes: prepared.length, &s, activation) else {
                    s.throttledTransmit = prepared
                    counters.add(Counter.txThrottled)
                    return false
                }
                frame = prepared
            }
            budget -= 1
            if send(frame, queue: queue, activation) == .blocked {
                s.blockedTransmit = frame
                watchWritable(true, &s)
                return false
            }
        }
        return true
    }

    /// Checks a whole transmit chain before anything leaves (§5.1.6.2): only
    /// device-readable buffers, a header and an Ethernet header at least, at
    /// most ``maxFrameLength``, offloads only as negotiated. Nil (counted and
    /// logged) when the chain must be refused.
    private func prepareTransmit(_ chain: DescriptorChain, _ activation: VirtioActivation) -> PreparedFrame? {
        func refuse(_ reason: String) -> PreparedFrame? {
            counters.add(Counter.txDropped)
            Log.warning("\(name): transmit request \(chain.head) refused: \(reason)")
            return nil
        }
        guard chain.writable.isEmpty else {
            return refuse("it has device-writable buffers; a frame to send is read-only for the device")
        }
        let length = chain.readableLength
        guard length >= UInt64(Self.minTransmitLength) else {
            return refuse("\(length) bytes is less than the \(VirtioNetHeader.size)-byte header and an Ethernet header")
        }
        guard length <= UInt64(Self.maxFrameLength) else {
            return refuse("\(length) bytes is more than the \(Self.maxFrameLength)-byte limit")
        }
        var raw = [UInt8](repeating: 0, count: VirtioNetHeader.size)
        var cursor = GuestBufferCursor(memory: activation.memory, buffers: chain.readable)
        let got = (try? raw.withUnsafeMutableBytes { bytes throws(GuestMemoryError) in try cursor.read(into: bytes) }) ?? 0
        guard got == VirtioNetHeader.size, var header = VirtioNetHeader(raw) else {
            return refuse("its header could not be read")
        }
        if let problem = Self.transmitHeaderProblem(header, activation) { return refuse(problem) }
        // What the TAP acts on is NEEDS_CSUM and the GSO fields; the other
        // flags are receive-only and num_buffers means nothing here.
        header.flags &= VirtioNetHeader.Flag.needsChecksum
        header.bufferCount = 0
        return PreparedFrame(
            head: chain.head, header: header.bytes,
            payload: Self.buffers(chain.readable, after: VirtioNetHeader.size), length: Int(length))
    }

    /// Why a transmit header asks for more than the driver negotiated, or nil.
    static func transmitHeaderProblem(_ header: VirtioNetHeader, _ activation: VirtioActivation) -> String? {
        if header.flags & VirtioNetHeader.Flag.needsChecksum != 0, !activation.negotiated(Feature.checksum) {
            return "it asks for checksum offload (NEEDS_CSUM) without VIRTIO_NET_F_CSUM"
        }
        let required: (UInt64, String)?
        switch header.gsoType {
        case VirtioNetHeader.GSO.none: required = nil
        case VirtioNetHeader.GSO.tcp4: required = (Feature.hostTSO4, "VIRTIO_NET_F_HOST_TSO4")
        case VirtioNetHeader.GSO.tcp6: required = (Feature.hostTSO6, "VIRTIO_NET_F_HOST_TSO6")
        case VirtioNetHeader.GSO.udp: required = (Feature.hostUFO, "VIRTIO_NET_F_HOST_UFO")
        default: return "gso_type 0x\(String(header.gsoType, radix: 16)) is not one this device offers"
        }
        if let (feature, featureName) = required, !activation.negotiated(feature) {
            return "gso_type \(header.gsoType) needs \(featureName), which was not negotiated"
        }
        return nil
    }

    /// Writes `frame` to the backend with one gather call: the checked
    /// header from the device, the rest straight from guest memory. Returns
    /// the chain to the driver unless the backend would block.
    private func send(_ frame: PreparedFrame, queue: SplitQueue, _ activation: VirtioActivation) -> SendOutcome {
        var segments: [UnsafeRawBufferPointer] = []
        segments.reserveCapacity(frame.payload.count + 1)
        do {
            for buffer in frame.payload where buffer.length > 0 {
                let bytes = try activation.memory.checkedBytes(at: buffer.address, count: Int(buffer.length))
                segments.append(UnsafeRawBufferPointer(bytes))
            }
        } catch {
            // The queue checked every buffer against guest RAM; a second line of defence.
            counters.add(Counter.txDropped)
            Log.warning("\(name): transmit request \(frame.head) refused: \(error)")
            queue.addUsed(head: frame.head, length: 0)
            return .failed
        }
        let result: Result<NetTransfer, any Error> = frame.header.withUnsafeBytes { header in
            Result { try backend.write(from: [header] + segments) }
        }
        switch result {
        case .success(.wouldBlock):
            return .blocked
        case .success(.frame(let written)):
            counters.add(Counter.txFrames)
            counters.add(Counter.txBytes, UInt64(max(0, written - VirtioNetHeader.size)))
            queue.addUsed(head: frame.head, length: 0)
            return .sent
        case .failure(let error):
            counters.add(Counter.txErrors)
            Log.warning("\(name): \(backend.name) refused a \(frame.length - VirtioNetHeader.size)-byte frame: \(error)")
            queue.addUsed(head: frame.head, length: 0)
            return .failed
        }
    }

    /// `buffers` without their first `skip` bytes.
    static func buffers(_ buffers: some Collection<GuestBuffer>, after skip: Int) -> [GuestBuffer] {
        var remaining = UInt64(skip)
        var result: [GuestBuffer] = []
        for buffer in buffers {
            let length = UInt64(buffer.length)
            if remaining >= length {
                remaining -= length
                continue
            }
            result.append(GuestBuffer(
                address: GuestAddress(buffer.address.rawValue + remaining),
                length: buffer.length - UInt32(remaining), isWritable: buffer.isWritable))
            remaining = 0
        }
        return result
    }
}

// MARK: - Receive

extension VirtioNet {
    private enum ReadOutcome { case staged, dropped, empty }
    private enum PlaceOutcome { case placed, dropped, needsBuffers }

    /// One bounded pass of receiving: while the backend may hold frames and
    /// the guest has buffers, read a frame and place it. Returns true when it
    /// stopped at the limit with frames perhaps still waiting.
    private func receivePass(_ s: inout State, _ activation: VirtioActivation) -> Bool {
        guard let queue = activation.queue(at: Self.receiveQueue) else { return false }
        let mergeable = activation.negotiated(Feature.mergeableReceiveBuffers)
        for _ in 0..<VirtioActivation.requestsPerPass {
            if s.stagedLength == nil {
                guard s.backendMayHaveFrames else { return false }
                // Read only with somewhere to put the frame: without guest
                // buffers, frames wait in the backend instead of being dropped.
                if s.heldReceiveChains.isEmpty {
                    guard let chain = popReceiveChain(queue) else { return false }
                    s.heldReceiveChains.append(chain)
                }
                switch readFrame(&s, activation) {
                case .empty: return false
                case .dropped: continue
                case .staged: break
                }
            }
            if !s.stagedAdmitted, let length = s.stagedLength {
                guard admit(.receive, bytes: length, &s, activation) else {
                    if !s.stagedThrottled { counters.add(Counter.rxThrottled) }
                    s.stagedThrottled = true
                    return false
                }
                s.stagedAdmitted = true
                s.stagedThrottled = false
            }
            switch place(&s, queue: queue, mergeable: mergeable, activation) {
            case .needsBuffers: return false
            case .placed, .dropped:
                s.stagedLength = nil
                s.stagedAdmitted = false
            }
        }
        return true
    }

    /// The next receive chain the device can use. Chains with
    /// device-readable buffers or too small for the header go back unused
    /// (length 0), counted as errors (§5.1.6.3: receive buffers are
    /// device-writable and hold at least the header).
    private func popReceiveChain(_ queue: SplitQueue) -> DescriptorChain? {
        while let chain = queue.popAvailable() {
            let problem: String
            if !chain.readable.isEmpty {
                problem = "it has device-readable buffers"
            } else if chain.writableLength < UInt64(VirtioNetHeader.size) {
                problem = "its \(chain.writableLength) bytes cannot hold the \(VirtioNetHeader.size)-byte header"
            } else {
                return chain
            }
            counters.add(Counter.rxErrors)
            Log.warning("\(name): receive buffer \(chain.head) returned unused: \(problem)")
            queue.addUsed(head: chain.head, length: 0)
        }
        return nil
    }

    /// Reads one frame from the backend into the staging buffer and checks
    /// its header against what the guest negotiated.
    private func readFrame(_ s: inout State, _ activation: VirtioActivation) -> ReadOutcome {
        let result: Result<NetTransfer, any Error> = s.staging.withUnsafeMutableBytes { staging in
            Result { try backend.read(into: [staging]) }
        }
        let length: Int
        switch result {
        case .success(.wouldBlock):
            s.backendMayHaveFrames = false
            return .empty
        case .failure(let error):
            // Tried again on the next readable edge or receive notification.
            s.backendMayHaveFrames = false
            counters.add(Counter.rxErrors)
            Log.warning("\(name): reading from \(backend.name) failed: \(error)")
            return .empty
        case .success(.frame(let read)):
            length = read
        }
        func drop(_ reason: String) -> ReadOutcome {
            counters.add(Counter.rxDropped)
            Log.warning("\(name): received frame dropped: \(reason)")
            return .dropped
        }
        guard length <= s.staging.count else {
            return drop("\(length) bytes is more than the \(Self.maxFrameLength)-byte limit")
        }
        guard length >= VirtioNetHeader.size + 14,
            var header = s.staging.withUnsafeBytes({ VirtioNetHeader($0) })
        else {
            return drop("\(length) bytes is too short for the header and an Ethernet header")
        }
        if let problem = Self.receiveHeaderProblem(header, activation) { return drop(problem) }
        // DATA_VALID tells a guest that accepted checksum offload it may skip
        // its own check; for any other guest the flags must be zero (§5.1.6.4).
        if !activation.negotiated(Feature.guestChecksum) { header.flags = 0 }
        header.flags &= VirtioNetHeader.Flag.needsChecksum | VirtioNetHeader.Flag.dataValid
        s.staging.withUnsafeMutableBytes { header.encode(into: $0) }
        s.stagedLength = length
        return .staged
    }

    /// Why a received header needs an offload the guest did not accept, or nil.
    static func receiveHeaderProblem(_ header: VirtioNetHeader, _ activation: VirtioActivation) -> String? {
        if header.flags & VirtioNetHeader.Flag.needsChecksum != 0, !activation.negotiated(Feature.guestChecksum) {
            return "it carries a partial checksum and the guest did not accept VIRTIO_NET_F_GUEST_CSUM"
        }
        let required: (UInt64, String)?
        switch header.gsoType {
        case VirtioNetHeader.GSO.none: required = nil
        case VirtioNetHeader.GSO.tcp4: required = (Feature.guestTSO4, "VIRTIO_NET_F_GUEST_TSO4")
        case VirtioNetHeader.GSO.tcp6: required = (Feature.guestTSO6, "VIRTIO_NET_F_GUEST_TSO6")
        case VirtioNetHeader.GSO.udp: required = (Feature.guestUFO, "VIRTIO_NET_F_GUEST_UFO")
        default: return "gso_type 0x\(String(header.gsoType, radix: 16)) is not one the guest can accept"
        }
        if let (feature, featureName) = required, !activation.negotiated(feature) {
            return "it is a gso_type \(header.gsoType) segment and the guest did not accept \(featureName)"
        }
        return nil
    }

    /// Places the staged frame. Without mergeable buffers the first held
    /// chain must hold all of it; with them the frame spreads over as many
    /// chains as it needs and num_buffers says how many (§5.1.6.4).
    private func place(
        _ s: inout State, queue: SplitQueue, mergeable: Bool, _ activation: VirtioActivation
    ) -> PlaceOutcome {
        guard let length = s.stagedLength else { return .dropped }
        if s.heldReceiveChains.isEmpty {
            guard let chain = popReceiveChain(queue) else { return .needsBuffers }
            s.heldReceiveChains.append(chain)
        }
        var capacity = s.heldReceiveChains.reduce(0) { $0 + $1.writableLength }
        if mergeable {
            while capacity < UInt64(length) {
                // Every chain the driver can make available at once is held
                // and the frame still does not fit: waiting would never end.
                guard s.heldReceiveChains.count < Int(queue.size) else {
                    counters.add(Counter.rxDropped)
                    Log.warning("\(name): a received \(length - VirtioNetHeader.size)-byte frame is dropped: "
                        + "all \(queue.size) receive buffers together hold \(capacity) bytes")
                    return .dropped
                }
                guard let chain = popReceiveChain(queue) else { return .needsBuffers }
                s.heldReceiveChains.append(chain)
                capacity += chain.writableLength
            }
        } else if let first = s.heldReceiveChains.first, first.writableLength < UInt64(length) {
            counters.add(Counter.rxDropped)
            Log.warning("\(name): a received \(length - VirtioNetHeader.size)-byte frame is dropped: it does not fit "
                + "the guest's \(first.writableLength)-byte receive buffer, and without VIRTIO_NET_F_MRG_RXBUF "
                + "one buffer must hold a whole frame")
            return .dropped
        }
        // How many chains the frame spans, for num_buffers.
        var spans = 0
        var covered: UInt64 = 0
        for chain in s.heldReceiveChains where covered < UInt64(length) {
            covered += chain.writableLength
            spans += 1
        }
        guard spans > 0, mergeable || spans == 1 else { return .needsBuffers }
        s.staging.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(of: UInt16(spans).littleEndian, toByteOffset: 10, as: UInt16.self)
        }
        let chains = s.heldReceiveChains.prefix(spans)
        s.heldReceiveChains.removeFirst(spans)
        var offset = 0
        var failed = false
        s.staging.withUnsafeBytes { staging in
            for chain in chains {
                let piece = min(Int(chain.writableLength), length - offset)
                var cursor = GuestBufferCursor(memory: activation.memory, buffers: chain.writable)
                let written = (try? cursor.write(from: UnsafeRawBufferPointer(rebasing: staging[offset..<(offset + piece)]))) ?? 0
                failed = failed || written != piece
                queue.addUsed(head: chain.head, length: UInt32(written))
                offset += piece
            }
        }
        if failed {
            counters.add(Counter.rxErrors)
            Log.warning("\(name): a received frame could not be written into guest memory")
            return .dropped
        }
        counters.add(Counter.rxFrames)
        counters.add(Counter.rxBytes, UInt64(length - VirtioNetHeader.size))
        return .placed
    }
}
