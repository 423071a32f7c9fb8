import Synchronization

/// What one read from or write to a ``NetBackend`` did.
public enum NetTransfer: Equatable, Sendable {
    /// One whole frame moved. `length` counts the 12-byte virtio-net header
    /// too. After a read it may exceed the buffers' capacity: a TAP reports
    /// the frame's full length even when it had to cut it short.
    case frame(length: Int)
    /// Nothing to read now, or no room to write now. A backend with a
    /// ``NetBackend/readinessDescriptor`` reports an edge on it when that changes.
    case wouldBlock
}

/// The offloads a backend may apply to the frames it hands the guest, in
/// the TAP's terms (`TUNSETOFFLOAD`, TUN_F_* in linux/if_tun.h). An empty
/// set means every frame arrives whole and with its checksums computed.
public struct NetOffload: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Frames may carry a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM).
    public static let checksum = NetOffload(rawValue: 0x01)
    /// TCP over IPv4 may arrive unsegmented (GSO_TCPV4).
    public static let tcp4Segmentation = NetOffload(rawValue: 0x02)
    /// TCP over IPv6 may arrive unsegmented (GSO_TCPV6).
    public static let tcp6Segmentation = NetOffload(rawValue: 0x04)
    /// UDP may arrive unfragmented (GSO_UDP).
    public static let udpFragmentation = NetOffload(rawValue: 0x10)

    public var description: String {
        var names: [String] = []
        if contains(.checksum) { names.append("csum") }
        if contains(.tcp4Segmentation) { names.append("tso4") }
        if contains(.tcp6Segmentation) { names.append("tso6") }
        if contains(.udpFragmentation) { names.append("ufo") }
        return names.isEmpty ? "none" : names.joined(separator: ",")
    }
}

/// Where a virtio-net device sends and receives Ethernet frames: a host TAP
/// device in the VMM (`TapBackend`), ``InMemoryNetBackend`` in tests.
///
/// Every frame crosses the interface with the 12-byte virtio-net header in
/// front (the TAP is set to that header size), so the device passes headers
/// through instead of translating them. Calls come from the event-loop
/// thread and must not block.
public protocol NetBackend: AnyObject, Sendable {
    /// Names the backend in log lines, e.g. "tap0".
    var name: String { get }
    /// A descriptor the device watches on the event loop, edge-triggered:
    /// readable when frames arrive, writable when a refused write may be
    /// retried. Nil for a backend without one; the device then tries it
    /// whenever the guest notifies a queue.
    var readinessDescriptor: Int32? { get }
    /// Reads one frame into `buffers`, in order (a readv).
    func read(into buffers: [UnsafeMutableRawBufferPointer]) throws -> NetTransfer
    /// Writes `buffers`, in order, as one frame (a writev).
    func write(from buffers: [UnsafeRawBufferPointer]) throws -> NetTransfer
    /// Sets the offloads the backend may leave to the guest.
    func setOffload(_ offload: NetOffload) throws
}

/// A network backend in host memory: tests inject the frames the guest
/// receives and read back the frames it sent.
public final class InMemoryNetBackend: NetBackend {
    /// A failure the test asked for.
    public struct InjectedFailure: Error, Equatable, CustomStringConvertible {
        public var operation: String
        public var description: String { "injected \(operation) failure" }
    }

    private struct State {
        var incoming: [[UInt8]] = []
        var sent: [[UInt8]] = []
        var refuseWrites = false
        var failWrites = false
        var failReads = false
        var offloads: [NetOffload] = []
        var reads = 0
    }

    public let name: String
    public let readinessDescriptor: Int32?
    private let state = Mutex(State())

    /// - Parameter readinessDescriptor: a number for a test's event registry
    ///   to key its subscription by; nothing is read from it.
    public init(name: String = "memory", readinessDescriptor: Int32? = nil) {
        self.name = name
        self.readinessDescriptor = readinessDescriptor
    }

    /// Queues a frame (virtio-net header included) for the device to read.
    public func inject(_ frame: [UInt8]) {
        state.withLock { $0.incoming.append(frame) }
    }

    /// Frames still waiting to be read.
    public var pendingFrames: Int { state.withLock { $0.incoming.count } }
    /// Frames the device wrote, header included, oldest first.
    public var sentFrames: [[UInt8]] { state.withLock { $0.sent } }
    /// Every offload setting the device asked for, oldest first.
    public var offloadHistory: [NetOffload] { state.withLock { $0.offloads } }
    /// Calls of `read`, including those that found nothing.
    public var readCalls: Int { state.withLock { $0.reads } }

    /// While true, writes report ``NetTransfer/wouldBlock``, as a full TAP would.
    public var refusesWrites: Bool {
        get { state.withLock { $0.refuseWrites } }
        set { state.withLock { $0.refuseWrites = newValue } }
    }

    /// While true, writes throw, as a TAP whose interface went away would.
    public var failsWrites: Bool {
        get { state.withLock { $0.failWrites } }
        set { state.withLock { $0.failWrites = newValue } }
    }

    /// While true, reads throw.
    public var failsReads: Bool {
        get { state.withLock { $0.failReads } }
        set { state.withLock { $0.failReads = newValue } }
    }

    public func read(into buffers: [UnsafeMutableRawBufferPointer]) throws -> NetTransfer {
        let frame = try state.withLock { s throws(InjectedFailure) -> [UInt8]? in
            s.reads += 1
            if s.failReads { throw InjectedFailure(operation: "read") }
            return s.incoming.isEmpty ? nil : s.incoming.removeFirst()
        }
        guard let frame else { return .wouldBlock }
        // Like a TAP: copy what fits, report the whole length.
        var offset = 0
        for buffer in buffers where offset < frame.count {
            let count = min(buffer.count, frame.count - offset)
            frame.withUnsafeBytes { source in
                UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<(offset + count)]))
            }
            offset += count
        }
        return .frame(length: frame.count)
    }

    public func write(from buffers: [UnsafeRawBufferPointer]) throws -> NetTransfer {
        try state.withLock { s throws(InjectedFailure) -> NetTransfer in
            if s.failWrites { throw InjectedFailure(operation: "write") }
            if s.refuseWrites { return .wouldBlock }
            let frame = buffers.flatMap { Array($0) }
            s.sent.append(frame)
            return .frame(length: frame.count)
        }
    }

    public func setOffload(_ offload: NetOffload) throws {
        state.withLock { $0.offloads.append(offload) }
    }
}
