/// Dispatches accesses by address to the device whose range holds them.
///
/// A bus is filled while the machine is assembled and never changes after the
/// vCPUs start, so lookups take no lock.
public struct Bus: Sendable {
    public struct Entry: Sendable {
        public let base: UInt64
        public let size: UInt64
        public let device: any BusDevice
    }

    public enum InsertError: Error, Equatable, CustomStringConvertible {
        case overlap(base: UInt64, size: UInt64)
        case empty

        public var description: String {
            switch self {
            case .overlap(let base, let size):
                "bus range 0x\(String(base, radix: 16)) (+0x\(String(size, radix: 16))) overlaps a device already there"
            case .empty:
                "bus ranges must not be empty"
            }
        }
    }

    /// Entries sorted by base address.
    public private(set) var entries: [Entry] = []

    public init() {}

    /// Places `device` at `[base, base + size)`.
    public mutating func insert(_ device: any BusDevice, base: UInt64, size: UInt64) throws(InsertError) {
        guard size > 0, base.addingReportingOverflow(size - 1).overflow == false else { throw .empty }
        let end = base + (size - 1)
        for entry in entries where base <= entry.base + (entry.size - 1) && entry.base <= end {
            throw .overlap(base: base, size: size)
        }
        let index = entries.firstIndex { $0.base > base } ?? entries.endIndex
        entries.insert(Entry(base: base, size: size, device: device), at: index)
    }

    /// The device covering `address` and the offset of `address` inside it.
    public func resolve(_ address: UInt64) -> (device: any BusDevice, offset: UInt64)? {
        // Binary search for the last entry whose base is <= address.
        var low = 0
        var high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].base <= address { low = mid + 1 } else { high = mid }
        }
        guard low > 0 else { return nil }
        let entry = entries[low - 1]
        let offset = address - entry.base
        return offset < entry.size ? (entry.device, offset) : nil
    }

    /// Reads from the device at `address`; unclaimed addresses read as all ones,
    /// like an empty ISA or PCI slot. Returns false when no device claimed it.
    @discardableResult
    public func read(_ address: UInt64, into data: UnsafeMutableRawBufferPointer) -> Bool {
        guard let (device, offset) = resolve(address) else {
            data.initializeMemory(as: UInt8.self, repeating: 0xff)
            return false
        }
        device.read(offset: offset, into: data)
        return true
    }

    /// Writes to the device at `address`. Returns false when no device claimed it.
    @discardableResult
    public func write(_ address: UInt64, from data: UnsafeRawBufferPointer) -> Bool {
        guard let (device, offset) = resolve(address) else { return false }
        device.write(offset: offset, from: data)
        return true
    }
}
