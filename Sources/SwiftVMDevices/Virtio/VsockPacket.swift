/// The operations of a virtio-vsock packet (virtio 1.2 §5.10.6, `op`).
public enum VsockOp: UInt16, Sendable, CustomStringConvertible {
    case request = 1
    case response = 2
    case reset = 3
    case shutdown = 4
    case readWrite = 5
    case creditUpdate = 6
    case creditRequest = 7

    public var description: String {
        switch self {
        case .request: "REQUEST"
        case .response: "RESPONSE"
        case .reset: "RST"
        case .shutdown: "SHUTDOWN"
        case .readWrite: "RW"
        case .creditUpdate: "CREDIT_UPDATE"
        case .creditRequest: "CREDIT_REQUEST"
        }
    }
}

/// Constants of the vsock wire format (virtio 1.2 §5.10.6).
public enum VsockWire {
    /// VIRTIO_VSOCK_TYPE_STREAM, the only socket type this device carries.
    public static let typeStream: UInt16 = 1
    /// VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE: the sender will receive no more data.
    public static let shutdownReceive: UInt32 = 1
    /// VIRTIO_VSOCK_SHUTDOWN_F_SEND: the sender will send no more data.
    public static let shutdownSend: UInt32 = 2
    public static let shutdownBoth: UInt32 = shutdownReceive | shutdownSend
    /// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (§5.10.6.7): every connection is gone.
    public static let eventTransportReset: UInt32 = 0
    /// The well-known context id of the host (§5.10.4, and vsock(7)'s VMADDR_CID_HOST).
    public static let hostCID: UInt64 = 2
    /// VIRTIO_VSOCK_F_STREAM (§5.10.3): stream sockets are supported.
    public static let featureStream: UInt64 = 1 << 0
}

/// The header in front of every vsock packet, on the rx and tx queues alike
/// (virtio 1.2 §5.10.6, `struct virtio_vsock_hdr`): 44 bytes, little-endian,
/// without padding.
///
///     0  src_cid   u64     24 len      u32     36 buf_alloc u32
///     8  dst_cid   u64     28 type     u16     40 fwd_cnt   u32
///     16 src_port  u32     30 op       u16
///     20 dst_port  u32     32 flags    u32
public struct VsockHeader: Sendable, Hashable, CustomStringConvertible {
    public static let size = 44

    public var sourceCID: UInt64
    public var destinationCID: UInt64
    public var sourcePort: UInt32
    public var destinationPort: UInt32
    /// Payload bytes after the header.
    public var length: UInt32
    public var type: UInt16
    /// The raw operation; ``operation`` is nil for a value the spec does not define.
    public var op: UInt16
    public var flags: UInt32
    /// The sender's receive buffer for this connection (§5.10.6.3).
    public var bufferAllocation: UInt32
    /// Bytes the sender has taken out of that buffer so far (free-running).
    public var forwardCount: UInt32

    public init(
        sourceCID: UInt64, destinationCID: UInt64, sourcePort: UInt32, destinationPort: UInt32,
        length: UInt32 = 0, type: UInt16 = VsockWire.typeStream, op: UInt16, flags: UInt32 = 0,
        bufferAllocation: UInt32 = 0, forwardCount: UInt32 = 0
    ) {
        self.sourceCID = sourceCID
        self.destinationCID = destinationCID
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.length = length
        self.type = type
        self.op = op
        self.flags = flags
        self.bufferAllocation = bufferAllocation
        self.forwardCount = forwardCount
    }

    public var operation: VsockOp? { VsockOp(rawValue: op) }

    /// Decodes the first 44 bytes of `bytes`; nil if there are fewer.
    public init?(decoding bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= Self.size else { return nil }
        func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        self.init(
            sourceCID: field(0, UInt64.self), destinationCID: field(8, UInt64.self),
            sourcePort: field(16, UInt32.self), destinationPort: field(20, UInt32.self),
            length: field(24, UInt32.self), type: field(28, UInt16.self), op: field(30, UInt16.self),
            flags: field(32, UInt32.self), bufferAllocation: field(36, UInt32.self), forwardCount: field(40, UInt32.self))
    }

    /// Writes the 44 header bytes at the start of `bytes`, which must hold them.
    public func encode(into bytes: UnsafeMutableRawBufferPointer) {
        precondition(bytes.count >= Self.size, "a vsock header needs \(Self.size) bytes")
        func put<T: FixedWidthInteger>(_ value: T, _ offset: Int) {
            bytes.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
        }
        put(sourceCID, 0)
        put(destinationCID, 8)
        put(sourcePort, 16)
        put(destinationPort, 20)
        put(length, 24)
        put(type, 28)
        put(op, 30)
        put(flags, 32)
        put(bufferAllocation, 36)
        put(forwardCount, 40)
    }

    /// The 44 header bytes.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.size)
        out.withUnsafeMutableBytes { encode(into: $0) }
        return out
    }

    public var description: String {
        let name = operation?.description ?? "op \(op)"
        return "\(name) \(sourceCID):\(sourcePort) -> \(destinationCID):\(destinationPort) len \(length) "
            + "flags \(flags) buf_alloc \(bufferAllocation) fwd_cnt \(forwardCount)"
    }
}
