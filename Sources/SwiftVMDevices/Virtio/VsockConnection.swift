/// The limits a vsock device keeps, so that neither a guest nor a host peer
/// can make it use unbounded memory or time.
public struct VsockLimits: Sendable, Equatable {
    /// The receive buffer the device advertises per connection (`buf_alloc`,
    /// virtio 1.2 §5.10.6.3): the most guest data it holds for a host peer that
    /// does not read. A guest that sends more than that credit is reset.
    public var bufferSize: UInt32 = 64 * 1024
    /// After forwarding this many bytes to the host since it last told the
    /// guest its `fwd_cnt`, the device sends a CREDIT_UPDATE, so a guest that
    /// used its whole credit goes on.
    public var creditUpdateThreshold: UInt32 = 32 * 1024
    /// The largest payload of one packet in either direction; a guest packet
    /// claiming more is malformed.
    public var maxPacketPayload: UInt32 = 64 * 1024
    /// Connections at once (both directions); more are refused.
    public var maxConnections = 1024
    /// Host connections that have not yet sent their `CONNECT <port>` line.
    public var maxPendingHostConnections = 64
    /// The longest `CONNECT <port>\n` line, newline included.
    public var connectLineLimit = 32
    /// How long a host program has to send its `CONNECT` line.
    public var connectLineTimeoutMilliseconds: UInt64 = 5000
    /// How long the guest has to answer a host-initiated REQUEST (counted from
    /// the `CONNECT` line, and again from when the guest took the REQUEST off
    /// the rx queue).
    public var responseTimeoutMilliseconds: UInt64 = 2000
    /// RST packets waiting for rx buffers; beyond this a reset the guest
    /// provoked is dropped (the guest is not reading its rx queue).
    public var maxQueuedResets = 1024

    public init() {}
}

/// A connection is named by its two ports; the guest's CID is fixed per
/// device and the host's is always 2.
public struct VsockConnectionKey: Hashable, Sendable, CustomStringConvertible {
    /// The port on the host side (CID 2).
    public var hostPort: UInt32
    /// The port on the guest side.
    public var guestPort: UInt32

    public init(hostPort: UInt32, guestPort: UInt32) {
        self.hostPort = hostPort
        self.guestPort = guestPort
    }

    public var description: String { "host port \(hostPort) <-> guest port \(guestPort)" }
}

/// A first-in, first-out queue over an array, for the device's pending work.
struct VsockFIFO<Element> {
    private var items: [Element] = []
    private var head = 0

    var count: Int { items.count - head }
    var isEmpty: Bool { head == items.count }
    var first: Element? { isEmpty ? nil : items[head] }

    mutating func append(_ item: Element) { items.append(item) }

    mutating func popFirst() -> Element? {
        guard head < items.count else { return nil }
        let item = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64, head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return item
    }

    mutating func removeAll(where predicate: (Element) -> Bool) {
        items.removeFirst(head)
        head = 0
        items.removeAll(where: predicate)
    }

    mutating func removeAll() {
        items.removeAll()
        head = 0
    }
}

/// Bytes waiting to be written to a host socket, in order.
struct VsockByteQueue {
    private var storage: [UInt8] = []
    private var head = 0

    var count: Int { storage.count - head }
    var isEmpty: Bool { head == storage.count }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if head > 0, head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        }
        storage.append(contentsOf: bytes)
    }

    mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Calls `body` with the bytes at the front; it returns how many it took.
    mutating func consume(_ body: (UnsafeRawBufferPointer) -> Int) -> Int {
        guard !isEmpty else { return 0 }
        let taken = storage.withUnsafeBytes { all in
            body(UnsafeRawBufferPointer(rebasing: all[head...]))
        }
        head += min(max(taken, 0), count)
        if head == storage.count {
            // A drained queue keeps a small allocation only: a thousand idle
            // connections must not each hold on to a full credit's worth.
            storage.removeAll(keepingCapacity: storage.capacity <= 4096)
            head = 0
        } else if head >= 16 * 1024, head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return taken
    }

    mutating func removeAll() {
        storage = []
        head = 0
    }
}

/// A host program that connected to the listening socket and has not yet
/// sent its whole `CONNECT <port>\n` line.
final class VsockHandshake {
    let fd: Int32
    let socketID: UInt64
    var token: EventToken?
    var line: [UInt8] = []
    let deadline: UInt64

    init(fd: Int32, socketID: UInt64, token: EventToken?, deadline: UInt64) {
        self.fd = fd
        self.socketID = socketID
        self.token = token
        self.deadline = deadline
    }
}

/// One vsock stream between a guest port and a host socket, and its state
/// (virtio 1.2 §5.10.6.4 to §5.10.6.6).
///
/// Phases:
/// - `awaitingResponse`: a host program asked for the guest's port with
///   `CONNECT`; the device owes or has sent the guest a REQUEST and waits for
///   RESPONSE (established) or RST (refused: the host socket is closed).
/// - `established`: bytes flow both ways. Each side may shut down its sending
///   or receiving half (SHUTDOWN flags from the guest; end-of-stream from the
///   host peer); once both directions are finished the device sends RST
///   and forgets the connection.
///
/// A guest-initiated connection is `established` as soon as the host
/// listener took it (connect(2) on a Unix socket completes at once); the
/// device then owes the guest a RESPONSE.
///
/// A class, so the device can change a connection and its own queues in one
/// step; every access happens under the device's lock.
final class VsockConnection {
    enum Phase: Equatable {
        case awaitingResponse
        case established
    }

    /// Control packets the device owes the guest for this connection.
    struct PendingControl: OptionSet {
        let rawValue: UInt8
        static let request = PendingControl(rawValue: 1 << 0)
        static let response = PendingControl(rawValue: 1 << 1)
        static let shutdown = PendingControl(rawValue: 1 << 2)
        static let creditUpdate = PendingControl(rawValue: 1 << 3)
        static let creditRequest = PendingControl(rawValue: 1 << 4)
    }

    let key: VsockConnectionKey
    let fd: Int32
    let socketID: UInt64
    var token: EventToken?
    var phase: Phase
    let hostInitiated: Bool
    var pending: PendingControl = []
    /// Shutdown flags owed to the guest with the next SHUTDOWN.
    var shutdownFlagsToSend: UInt32 = 0
    /// The REQUEST reached the guest's rx queue.
    var requestDelivered = false
    /// When an unanswered REQUEST gives up (monotonic milliseconds).
    var deadline: UInt64?

    // Guest to host.

    /// Bytes owed to the host socket: the `OK <port>\n` line, then guest data.
    var toHost = VsockByteQueue()
    /// How many bytes at the front of `toHost` are the device's own (the OK
    /// line), not guest data, so they count against no credit.
    var ownBytesInQueue = 0
    /// Guest bytes written to the host socket (our `fwd_cnt`, free-running).
    var forwardCount: UInt32 = 0
    /// The `fwd_cnt` the guest last heard from us.
    var advertisedForwardCount: UInt32 = 0
    /// SHUTDOWN flags the guest sent (accumulated).
    var guestShutdown: UInt32 = 0
    var hostWriteShut = false
    var hostReadShut = false
    /// The subscription includes `.writable` (data waits for the host).
    var watchingWritable = false

    // Host to guest.

    /// The host socket may have bytes (or end-of-stream) to read.
    var hostReadable = false
    /// The host peer shut down its sending side; the guest was told.
    var hostEndOfStream = false
    /// The guest's `buf_alloc` and `fwd_cnt` from its latest packet.
    var peerBufferAllocation: UInt32 = 0
    var peerForwardCount: UInt32 = 0
    /// Bytes sent to the guest (free-running), against which its `fwd_cnt` counts.
    var sentToGuest: UInt32 = 0
    /// A CREDIT_REQUEST went out since the credit last changed.
    var creditRequested = false

    /// Membership of the device's rx work queues.
    var inControlQueue = false
    var inDataQueue = false

    init(key: VsockConnectionKey, fd: Int32, socketID: UInt64, token: EventToken?, phase: Phase, hostInitiated: Bool) {
        self.key = key
        self.fd = fd
        self.socketID = socketID
        self.token = token
        self.phase = phase
        self.hostInitiated = hostInitiated
    }

    /// How many more bytes the guest can take (§5.10.6.3: the peer's
    /// `buf_alloc` less what is in flight). A guest whose `fwd_cnt` claims to
    /// have consumed more than it was sent gets no credit.
    var peerCredit: UInt32 {
        let inFlight = sentToGuest &- peerForwardCount
        guard inFlight <= peerBufferAllocation else { return 0 }
        return peerBufferAllocation - inFlight
    }

    /// Guest data waiting for the host peer; the credit the guest used.
    var bufferedGuestBytes: Int { toHost.count - ownBytesInQueue }

    /// Takes the guest's view of its receive buffer from any packet it sent.
    /// Returns true when the credit grew.
    @discardableResult
    func updatePeerCredit(bufferAllocation: UInt32, forwardCount: UInt32) -> Bool {
        let before = peerCredit
        peerBufferAllocation = bufferAllocation
        peerForwardCount = forwardCount
        let grew = peerCredit > before
        if grew { creditRequested = false }
        return grew
    }

    /// The host socket may be read and the guest can take data now.
    var wantsToSendData: Bool {
        phase == .established && hostReadable && !hostEndOfStream && !hostReadShut
            && guestShutdown & VsockWire.shutdownReceive == 0 && peerCredit > 0
    }

    /// Host data waits but the guest gave no credit.
    var blockedOnCredit: Bool {
        phase == .established && hostReadable && !hostEndOfStream && !hostReadShut
            && guestShutdown & VsockWire.shutdownReceive == 0 && peerCredit == 0
    }

    /// Both directions are finished: the guest sends nothing more and all it
    /// sent reached the host; the host sends nothing more, or the guest
    /// receives nothing more. The device then closes with RST (§5.10.6.6).
    var isFinished: Bool {
        guard phase == .established, guestShutdown & VsockWire.shutdownSend != 0, toHost.isEmpty else { return false }
        return hostEndOfStream || guestShutdown & VsockWire.shutdownReceive != 0
    }

    /// Whether the guest should hear our `fwd_cnt` now: enough was forwarded
    /// since it last did that it may be waiting for credit.
    func creditUpdateDue(threshold: UInt32) -> Bool {
        phase == .established && guestShutdown & VsockWire.shutdownSend == 0
            && forwardCount &- advertisedForwardCount >= threshold
    }
}
