/// The header in front of every frame on a virtio-net queue (virtio 1.2
/// §5.1.6): `struct virtio_net_hdr` with `num_buffers`, 12 bytes,
/// little-endian. With VIRTIO_F_VERSION_1 it is 12 bytes whether or not
/// mergeable receive buffers were negotiated, and a TAP set to a 12-byte
/// vnet header reads and writes the same layout.
public struct VirtioNetHeader: Equatable, Sendable {
    public static let size = 12

    /// Bits of `flags` (§5.1.6).
    public enum Flag {
        /// VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum from `checksumStart` is partial.
        public static let needsChecksum: UInt8 = 1
        /// VIRTIO_NET_HDR_F_DATA_VALID: the device checked the checksums (receive only).
        public static let dataValid: UInt8 = 2
    }

    /// Values of `gsoType` (§5.1.6).
    public enum GSO {
        public static let none: UInt8 = 0
        public static let tcp4: UInt8 = 1
        public static let udp: UInt8 = 3
        public static let tcp6: UInt8 = 4
        /// VIRTIO_NET_HDR_GSO_ECN, or-ed into a TCP type; needs the *_ECN features.
        public static let ecn: UInt8 = 0x80
    }

    public var flags: UInt8
    public var gsoType: UInt8
    /// hdr_len: bytes of headers before the segmented payload.
    public var headerLength: UInt16
    public var gsoSize: UInt16
    public var checksumStart: UInt16
    public var checksumOffset: UInt16
    /// num_buffers: receive chains one frame spans (1 without VIRTIO_NET_F_MRG_RXBUF).
    public var bufferCount: UInt16

    public init(
        flags: UInt8 = 0, gsoType: UInt8 = GSO.none, headerLength: UInt16 = 0, gsoSize: UInt16 = 0,
        checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0, bufferCount: UInt16 = 0
    ) {
        self.flags = flags
        self.gsoType = gsoType
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
        self.bufferCount = bufferCount
    }

    /// Decodes the first 12 bytes of `bytes`; nil when there are fewer.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= Self.size else { return nil }
        func u16(_ offset: Int) -> UInt16 { UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
        self.init(
            flags: bytes[0], gsoType: bytes[1], headerLength: u16(2), gsoSize: u16(4),
            checksumStart: u16(6), checksumOffset: u16(8), bufferCount: u16(10))
    }

    /// Decodes the first 12 bytes of `bytes`; nil when there are fewer.
    public init?(_ bytes: [UInt8]) {
        guard let header = bytes.withUnsafeBytes({ VirtioNetHeader($0) }) else { return nil }
        self = header
    }

    /// Encodes the header into the first 12 bytes of `bytes`, which must hold them.
    public func encode(into bytes: UnsafeMutableRawBufferPointer) {
        guard bytes.count >= Self.size else { return }
        bytes[0] = flags
        bytes[1] = gsoType
        for (offset, value) in [(2, headerLength), (4, gsoSize), (6, checksumStart), (8, checksumOffset), (10, bufferCount)] {
            bytes.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
        }
    }

    /// The 12 encoded bytes.
    public var bytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        bytes.withUnsafeMutableBytes { encode(into: $0) }
        return bytes
    }
}
