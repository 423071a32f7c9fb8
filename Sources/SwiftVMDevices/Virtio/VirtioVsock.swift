import Synchronization
import SwiftVMMemory

/// A virtio socket device (virtio 1.2 §5.10, device ID 19) whose host end is
/// a ``VsockHostSide``: in swiftvm, Firecracker's "hybrid vsock" over Unix
/// sockets.
///
/// - Host-initiated: a host program connects to the host side's listening
///   socket and writes `CONNECT <port>\n`; the device sends the guest a
///   REQUEST to that port from a host port it assigns (counting up from
///   2^30); when the guest answers RESPONSE the host program reads
///   `OK <host port>\n` and the stream is relayed. A guest RST, a malformed,
///   long or slow line, or no answer in time closes the host socket.
/// - Guest-initiated: a REQUEST to CID 2 port P makes the host side connect
///   to its listener for P (`<uds_path>_P`); the guest gets RESPONSE, or RST
///   when nobody listens.
///
/// Queues (§5.10.2): rx (0, device to guest), tx (1, guest to device),
/// event (2). The config space is `guest_cid`, a little-endian u64 (§5.10.4).
///
/// Flow control (§5.10.6.3) runs both ways. The device sends the guest no
/// more than the guest's `buf_alloc` less what it has not yet consumed, and
/// reads the host socket straight into the guest's rx buffers, so host data
/// is never buffered. Towards the host it advertises ``VsockLimits/bufferSize``
/// per connection and counts in `fwd_cnt` what the host socket took; guest
/// data the host peer is not ready for waits in a per-connection buffer that
/// the credit bounds, and a guest that sends beyond its credit is reset.
///
/// Everything runs under one lock: queue notifications (`process(queue:)`)
/// and the host side's event-loop handlers on the loop thread, `activate` and
/// `reset` on a vCPU thread. Nothing blocks: host descriptors are
/// non-blocking and the device waits for readiness through the event
/// registry it receives at activation (``VirtioActivation/events``).
public final class VirtioVsock: VirtioDevice, DeviceCountersOwner {
    /// The virtio device ID of a socket device (§5.10.1).
    public static let deviceID = VirtioDeviceType.vsock
    public static let queueSize: UInt16 = 256
    /// Host ports the device assigns to host-initiated connections start
    /// here, above the ports host services are usually given.
    public static let firstHostPort: UInt32 = 1 << 30

    enum Queue {
        static let rx = 0
        static let tx = 1
        static let event = 2
    }

    /// Monotonic milliseconds since the first call.
    public static let monotonicMilliseconds: @Sendable () -> UInt64 = {
        let elapsed = ContinuousClock.now - clockEpoch
        let (seconds, attoseconds) = elapsed.components
        return UInt64(max(0, seconds)) * 1000 + UInt64(max(0, attoseconds) / 1_000_000_000_000_000)
    }
    private static let clockEpoch = ContinuousClock.now

    /// The guest's context id, which the guest reads from the config space.
    public let guestCID: UInt64
    public let limits: VsockLimits
    let host: any VsockHostSide
    let clock: @Sendable () -> UInt64
    let state = Mutex(State())

    /// - Parameters:
    ///   - guestCID: the guest's context id (3 or more).
    ///   - host: where connections come in from and go out to.
    ///   - limits: buffer sizes, connection counts and time limits.
    ///   - clock: monotonic milliseconds, for the time limits.
    public init(
        guestCID: UInt64, host: any VsockHostSide, limits: VsockLimits = VsockLimits(),
        clock: @escaping @Sendable () -> UInt64 = VirtioVsock.monotonicMilliseconds
    ) {
        self.guestCID = guestCID
        self.host = host
        self.limits = limits
        self.clock = clock
    }

    deinit {
        state.withLock { s in stop(&s) }
    }

    /// Everything the device tracks; see the extensions for how it changes.
    struct State {
        var activation: VirtioActivation?
        /// Counts activations and resets, so late timers and posted work of
        /// an earlier activation do nothing.
        var generation: UInt64 = 0
        var activatedBefore = false
        /// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET is owed to the guest (§5.10.6.7).
        var transportResetPending = false
        var listenerToken: EventToken?
        /// accept(2) failed; the listener is watched again after this time.
        var listenerPausedUntil: UInt64?
        var timerToken: EventToken?
        var timerFiresAt: UInt64?
        /// Names the armed timer, so one that was replaced does nothing if it runs anyway.
        var timerSerial: UInt64 = 0
        /// Identifies host sockets to their event handlers; never reused.
        var nextSocketID: UInt64 = 1
        var nextHostPort: UInt32 = VirtioVsock.firstHostPort
        var handshakes: [UInt64: VsockHandshake] = [:]
        var connections: [VsockConnectionKey: VsockConnection] = [:]
        var connectionBySocket: [UInt64: VsockConnectionKey] = [:]
        /// RST packets owed to the guest for connections that are gone (or
        /// never existed), sent before anything else.
        var resets = VsockFIFO<VsockConnectionKey>()
        /// Connections owing the guest a control packet, then those with
        /// host data for it; each connection is in each queue at most once.
        var controlQueue = VsockFIFO<VsockConnectionKey>()
        var dataQueue = VsockFIFO<VsockConnectionKey>()
        /// An rx chain taken off the queue that the packet meant for it did
        /// not need after all (the host socket had nothing); used next.
        var heldChain: DescriptorChain?
        /// A continuation of the rx work is posted to the event loop.
        var continuationPosted = false
        var malformedPackets = 0
        var droppedResets = 0
    }

    /// What metrics show for the device.
    enum Counter: String, CaseIterable {
        case txPackets = "tx_packets"
        case txBytes = "tx_bytes"
        case rxPackets = "rx_packets"
        case rxBytes = "rx_bytes"
        case connectionsOpened = "conns_added"
        case connectionsClosed = "conns_removed"
        case malformedPackets = "malformed_packets"
        case droppedResets = "dropped_resets"
    }

    public let counters = DeviceCounters(Counter.self)

    // MARK: - VirtioDevice

    public var deviceType: UInt32 { Self.deviceID }
    public var offeredFeatures: UInt64 {
        VirtioFeature.version1 | VirtioFeature.eventIndex | VirtioFeature.indirectDescriptors | VsockWire.featureStream
    }
    public var queueMaxSizes: [UInt16] { [Self.queueSize, Self.queueSize, Self.queueSize] }

    public func readConfig(at offset: Int, into data: UnsafeMutableRawBufferPointer) {
        // struct virtio_vsock_config { le64 guest_cid; } (§5.10.4).
        withUnsafeBytes(of: guestCID.littleEndian) { config in
            for i in 0..<data.count {
                let index = offset + i
                data[i] = index >= 0 && index < config.count ? config[index] : 0
            }
        }
    }

    public func writeConfig(at offset: Int, from data: UnsafeRawBufferPointer) {
        Log.warning("virtio-vsock: write to the read-only config space at 0x\(String(offset, radix: 16)) ignored")
    }

    public func activate(_ activation: VirtioActivation) {
        state.withLock { s in
            if s.activation != nil { stop(&s) }
            s.activation = activation
            s.generation &+= 1
            // §5.10.6.7: after the device was reset the guest's connections
            // are stale; the event tells a driver that kept them to drop them.
            if s.activatedBefore { s.transportResetPending = true }
            s.activatedBefore = true
            if activation.events == nil {
                Log.warning("virtio-vsock: no event loop; host sockets are not watched")
            }
            startListening(&s)
            deliverEvents(&s)
        }
    }

    public func reset() {
        state.withLock { s in stop(&s) }
    }

    @discardableResult
    public func process(queue index: Int) -> Bool {
        state.withLock { s -> Bool in
            guard let activation = s.activation else { return false }
            switch index {
            case Queue.rx:
                return pumpRx(&s)
            case Queue.tx:
                let more = serveTx(&s, activation)
                let rxMore = pumpRx(&s)
                armTimer(&s)
                return more || rxMore
            case Queue.event:
                deliverEvents(&s)
                return false
            default:
                return false
            }
        }
    }

    // MARK: - Diagnostics

    /// What the device holds, for tests and diagnostics.
    public struct Statistics: Sendable, Equatable {
        public var connections: Int
        /// Host programs that have not yet sent their `CONNECT` line.
        public var pendingHostConnections: Int
        /// Bytes waiting for slow host peers, across connections.
        public var bytesWaitingForHost: Int
        /// RST packets waiting for rx buffers.
        public var queuedResets: Int
        /// Guest packets dropped as malformed.
        public var malformedPackets: Int
        /// Resets not sent because too many were waiting.
        public var droppedResets: Int
        /// Host sockets (listener included) the event loop watches for the device.
        public var subscriptions: Int
    }

    public var statistics: Statistics {
        state.withLock { s in
            Statistics(
                connections: s.connections.count, pendingHostConnections: s.handshakes.count,
                bytesWaitingForHost: s.connections.values.reduce(0) { $0 + $1.toHost.count },
                queuedResets: s.resets.count, malformedPackets: s.malformedPackets, droppedResets: s.droppedResets,
                subscriptions: s.connections.values.filter { $0.token != nil }.count
                    + s.handshakes.values.filter { $0.token != nil }.count + (s.listenerToken == nil ? 0 : 1))
        }
    }

    // MARK: - Lifecycle

    /// Drops every connection and subscription (a device reset, or the end):
    /// host sockets are closed, so host peers see the stream end. The
    /// listening socket stays open; host programs wait in its backlog until
    /// the driver activates the device again.
    func stop(_ s: inout State) {
        let events = s.activation?.events
        if let token = s.listenerToken { events?.remove(token) }
        if let token = s.timerToken { events?.remove(token) }
        for handshake in s.handshakes.values {
            if let token = handshake.token { events?.remove(token) }
            host.close(handshake.fd)
        }
        for connection in s.connections.values {
            if let token = connection.token { events?.remove(token) }
            host.close(connection.fd)
        }
        counters.add(Counter.connectionsClosed, UInt64(s.connections.count))
        s.listenerToken = nil
        s.listenerPausedUntil = nil
        s.timerToken = nil
        s.timerFiresAt = nil
        s.timerSerial &+= 1
        s.handshakes = [:]
        s.connections = [:]
        s.connectionBySocket = [:]
        s.resets.removeAll()
        s.controlQueue.removeAll()
        s.dataQueue.removeAll()
        s.heldChain = nil
        s.continuationPosted = false
        s.activation = nil
        s.generation &+= 1
    }

    /// Sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET once the driver gave the
    /// event queue a buffer (§5.10.6.7: `struct virtio_vsock_event { le32 id; }`).
    func deliverEvents(_ s: inout State) {
        guard s.transportResetPending, let activation = s.activation, let queue = activation.queue(at: Queue.event) else {
            return
        }
        while let chain = queue.popAvailable() {
            var cursor = GuestBufferCursor(memory: activation.memory, buffers: chain.writable)
            var written = 0
            withUnsafeBytes(of: VsockWire.eventTransportReset.littleEndian) { bytes in
                written = (try? cursor.write(from: bytes)) ?? 0
            }
            queue.addUsed(head: chain.head, length: UInt32(written))
            if written == 4 {
                s.transportResetPending = false
                break
            }
            Log.warning("virtio-vsock: event buffer \(chain.head) holds \(written) of the 4 bytes of an event; dropped")
        }
        activation.signalUsedBuffers(on: queue)
    }

    // MARK: - Time limits

    /// The earliest moment something times out: a host program's `CONNECT`
    /// line, the guest's answer to a REQUEST, the paused listener.
    private func earliestDeadline(_ s: State) -> UInt64? {
        var earliest = s.listenerPausedUntil
        for handshake in s.handshakes.values { earliest = min(earliest ?? .max, handshake.deadline) }
        for connection in s.connections.values {
            if let deadline = connection.deadline { earliest = min(earliest ?? .max, deadline) }
        }
        return earliest
    }

    /// Keeps one timer armed for the earliest deadline.
    func armTimer(_ s: inout State) {
        guard let events = s.activation?.events, let deadline = earliestDeadline(s) else { return }
        if let firesAt = s.timerFiresAt, firesAt <= deadline, s.timerToken != nil { return }
        if let token = s.timerToken { events.remove(token) }
        let now = clock()
        let delay = deadline > now ? deadline - now : 0
        s.timerSerial &+= 1
        let serial = s.timerSerial
        s.timerFiresAt = now + delay
        s.timerToken = events.addTimer(afterMilliseconds: Int(min(delay, 3_600_000)), periodMilliseconds: nil) {
            [weak self] in self?.timerFired(serial: serial)
        }
    }

    private func timerFired(serial: UInt64) {
        state.withLock { s in
            guard s.timerSerial == serial, s.activation != nil else { return }
            s.timerToken = nil
            s.timerFiresAt = nil
            expireDeadlines(&s)
            _ = pumpRx(&s)
            armTimer(&s)
        }
    }

    /// Closes what ran out of time.
    func expireDeadlines(_ s: inout State) {
        let now = clock()
        for handshake in s.handshakes.values where handshake.deadline <= now {
            dropHandshake(handshake, "sent no CONNECT line within \(limits.connectLineTimeoutMilliseconds) ms", &s)
        }
        for connection in s.connections.values {
            guard let deadline = connection.deadline, deadline <= now else { continue }
            Log.debug("virtio-vsock: \(connection.key): the guest did not answer the REQUEST within "
                + "\(limits.responseTimeoutMilliseconds) ms; closing the host socket")
            closeConnection(connection, sendReset: true, &s)
        }
        if let until = s.listenerPausedUntil, until <= now {
            s.listenerPausedUntil = nil
            startListening(&s)
        }
    }
}
