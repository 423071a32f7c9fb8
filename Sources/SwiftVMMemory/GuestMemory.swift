#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An access to guest memory that falls outside the guest's RAM.
public struct GuestMemoryError: Error, Equatable, Sendable, CustomStringConvertible {
    public var address: GuestAddress
    public var length: UInt64

    public init(address: GuestAddress, length: UInt64) {
        self.address = address
        self.length = length
    }

    public var description: String {
        "guest memory access of \(length) bytes at \(address) is outside guest RAM"
    }
}

/// The guest's RAM: one anonymous host mapping split into guest-physical regions.
///
/// The mapping is made with `MAP_NORESERVE`, so host pages are only committed
/// when the guest (or the VMM writing boot data) touches them. Every read and
/// write is bounds-checked; an access never spans two regions, because the
/// regions are separated by holes (the MMIO gap) in guest-physical space.
public final class GuestMemory: @unchecked Sendable {
    /// One contiguous piece of guest RAM.
    public struct Region: Sendable {
        public let start: GuestAddress
        public let size: UInt64
        /// Where the region starts inside the host mapping.
        public let hostOffset: Int

        public var end: UInt64 { start.rawValue + size }

        public func contains(_ address: GuestAddress, length: UInt64) -> Bool {
            address.rawValue >= start.rawValue
                && length <= size
                && address.rawValue - start.rawValue <= size - length
        }
    }

    public let regions: [Region]
    /// Total bytes of RAM across all regions.
    public let size: UInt64
    // Mutable memory shared with the guest; all access goes through bounds checks.
    private let base: UnsafeMutableRawPointer

    /// Maps `regions` (start, size) as one anonymous, lazily committed mapping.
    ///
    /// - Throws: ``GuestMemoryMapError`` when the host cannot reserve the address space.
    public init(regions ranges: [(start: GuestAddress, size: UInt64)]) throws(GuestMemoryMapError) {
        var regions: [Region] = []
        var offset = 0
        for range in ranges.sorted(by: { $0.start < $1.start }) {
            precondition(range.size > 0 && range.size % 4096 == 0, "guest RAM regions are whole pages")
            if let last = regions.last {
                precondition(range.start.rawValue >= last.end, "guest RAM regions overlap")
            }
            regions.append(Region(start: range.start, size: range.size, hostOffset: offset))
            offset += Int(range.size)
        }
        let total = offset
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        let pointer = mmap(nil, total, PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let pointer, pointer != MAP_FAILED else {
            throw GuestMemoryMapError(size: UInt64(total), errno: errno)
        }
        self.base = pointer
        self.regions = regions
        self.size = UInt64(total)
    }

    deinit {
        munmap(base, Int(size))
    }

    /// Bytes of guest RAM currently backed by host pages (what the guest and
    /// the VMM's boot writes have touched), from mincore(2).
    public func residentBytes() -> UInt64 {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pages = (Int(size) + pageSize - 1) / pageSize
        var vector = [UInt8](repeating: 0, count: pages)
        guard mincore(base, Int(size), &vector) == 0 else { return 0 }
        return UInt64(vector.reduce(0) { $0 + Int($1 & 1) }) * UInt64(pageSize)
    }

    /// The host address of region `index`, for registering it with KVM.
    public func hostAddress(ofRegion index: Int) -> UnsafeMutableRawPointer {
        base + regions[index].hostOffset
    }

    /// The region holding `[address, address + length)`, if one does.
    public func region(containing address: GuestAddress, length: UInt64 = 1) -> Region? {
        regions.first { $0.contains(address, length: length) }
    }

    /// The host bytes backing `[address, address + count)`, checked against guest RAM.
    ///
    /// The buffer stays valid for the lifetime of this `GuestMemory`. Guest
    /// memory is shared with running vCPUs, so treat its contents as untrusted
    /// and possibly changing under you.
    public func checkedBytes(at address: GuestAddress, count: Int) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        guard count >= 0, let region = region(containing: address, length: UInt64(count)) else {
            throw GuestMemoryError(address: address, length: UInt64(max(count, 0)))
        }
        let pointer = base + region.hostOffset + Int(address.rawValue - region.start.rawValue)
        return UnsafeMutableRawBufferPointer(start: pointer, count: count)
    }

    /// Copies `bytes` into guest memory at `address`.
    public func write(_ bytes: some Collection<UInt8>, at address: GuestAddress) throws(GuestMemoryError) {
        let target = try checkedBytes(at: address, count: bytes.count)
        _ = target.initializeMemory(as: UInt8.self, from: bytes)
    }

    /// Copies `count` bytes out of guest memory at `address`.
    public func read(at address: GuestAddress, count: Int) throws(GuestMemoryError) -> [UInt8] {
        let source = try checkedBytes(at: address, count: count)
        return Array(source)
    }

    /// Reads a little-endian integer at `address`.
    public func load<T: FixedWidthInteger>(_ type: T.Type = T.self, at address: GuestAddress) throws(GuestMemoryError) -> T {
        let source = try checkedBytes(at: address, count: MemoryLayout<T>.size)
        return T(littleEndian: source.loadUnaligned(as: T.self))
    }

    /// Writes `value` little-endian at `address`.
    public func store<T: FixedWidthInteger>(_ value: T, at address: GuestAddress) throws(GuestMemoryError) {
        let target = try checkedBytes(at: address, count: MemoryLayout<T>.size)
        target.storeBytes(of: value.littleEndian, as: T.self)
    }

    /// Fills `[address, address + count)` with zeros.
    public func zero(at address: GuestAddress, count: Int) throws(GuestMemoryError) {
        let target = try checkedBytes(at: address, count: count)
        target.initializeMemory(as: UInt8.self, repeating: 0)
    }

    /// The host's page size: what `discard(at:length:)` works in.
    public static let hostPageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Hands the host pages behind `[address, address + length)` back to the
    /// host with `madvise(MADV_DONTNEED)`: the VMM's resident memory drops at
    /// once, and the guest finds zeros there the next time it touches the
    /// range (a private anonymous mapping refills with zero pages; KVM drops
    /// its own mappings of them through its MMU notifier). The range must lie
    /// in one RAM region and start and end on host page boundaries; nothing is
    /// rounded, so a caller never discards more than it named.
    public func discard(at address: GuestAddress, length: UInt64) throws(GuestMemoryDiscardError) {
        guard let region = region(containing: address, length: length) else {
            throw .outsideRAM(address: address, length: length)
        }
        let pointer = base + region.hostOffset + Int(address.rawValue - region.start.rawValue)
        let page = Self.hostPageSize
        guard Int(bitPattern: pointer) % page == 0, length % UInt64(page) == 0 else {
            throw .misaligned(address: address, length: length, pageSize: page)
        }
        guard length > 0 else { return }
        guard madvise(pointer, Int(length), MADV_DONTNEED) == 0 else {
            throw .failed(address: address, length: length, errno: errno)
        }
    }
}

/// Why `GuestMemory.discard(at:length:)` left a range alone.
public enum GuestMemoryDiscardError: Error, Equatable, Sendable, CustomStringConvertible {
    case outsideRAM(address: GuestAddress, length: UInt64)
    case misaligned(address: GuestAddress, length: UInt64, pageSize: Int)
    case failed(address: GuestAddress, length: UInt64, errno: Int32)

    public var description: String {
        switch self {
        case .outsideRAM(let address, let length):
            "cannot discard \(length) bytes at \(address): the range is not inside one guest RAM region"
        case .misaligned(let address, let length, let pageSize):
            "cannot discard \(length) bytes at \(address): start and length must be multiples of the host page size (\(pageSize) bytes)"
        case .failed(let address, let length, let errno):
            "madvise(MADV_DONTNEED) of \(length) bytes at \(address) failed: " + String(cString: strerror(errno))
        }
    }
}

/// The host refused to map guest RAM.
public struct GuestMemoryMapError: Error, Sendable, CustomStringConvertible {
    public var size: UInt64
    public var errno: Int32

    public var description: String {
        let mib = size >> 20
        return "cannot reserve \(mib) MiB of host address space for guest RAM: "
            + String(cString: strerror(errno))
            + " (try a smaller --memory, or check `ulimit -v`)"
    }
}
