import SwiftVMDevices
import SwiftVMMemory

/// The driver's side of one split virtqueue: lays out the descriptor table,
/// the available ring and the used ring in guest memory the way a guest
/// driver would, adds chains, and reads used elements back. Test code only,
/// so it traps on its own mistakes.
final class MockDriverQueue {
    /// A buffer the driver puts in a chain.
    struct Buffer {
        var address: GuestAddress
        var length: UInt32
        var writable: Bool

        static func readable(_ address: GuestAddress, _ length: Int) -> Buffer {
            Buffer(address: address, length: UInt32(length), writable: false)
        }

        static func writable(_ address: GuestAddress, _ length: Int) -> Buffer {
            Buffer(address: address, length: UInt32(length), writable: true)
        }
    }

    struct UsedElement: Equatable {
        var id: UInt32
        var length: UInt32
    }

    let memory: GuestMemory
    let size: UInt16
    let descriptorTable: GuestAddress
    let availableRing: GuestAddress
    let usedRing: GuestAddress
    /// The next free descriptor; chains take consecutive ones, wrapping.
    private(set) var nextDescriptor: UInt16 = 0
    /// The driver's shadow of `avail.idx`.
    private(set) var availIndex: UInt16 = 0
    /// Used elements already collected.
    private var usedSeen: UInt16 = 0
    /// Bump allocator for buffers and indirect tables.
    private var nextData: UInt64

    /// Places the rings from `base` (descriptor table at `base`, available ring
    /// at `base + 0x1000`, used ring at `base + 0x2000`) and buffers from `data`.
    init(memory: GuestMemory, size: UInt16, base: UInt64 = 0x1_0000, data: UInt64 = 0x10_0000) throws {
        self.memory = memory
        self.size = size
        self.descriptorTable = GuestAddress(base)
        self.availableRing = GuestAddress(base + 0x1000)
        self.usedRing = GuestAddress(base + 0x2000)
        self.nextData = data
        try memory.zero(at: descriptorTable, count: 0x3000)
    }

    // MARK: Buffers

    /// Reserves `count` bytes of guest memory (16-byte aligned), filled with `fill`.
    func allocate(_ count: Int, fill: UInt8 = 0) throws -> GuestAddress {
        let address = GuestAddress(nextData)
        nextData += UInt64((count + 15) & ~15)
        try memory.write([UInt8](repeating: fill, count: count), at: address)
        return address
    }

    /// Reserves guest memory holding `bytes`.
    func allocate(bytes: [UInt8]) throws -> GuestAddress {
        let address = try allocate(bytes.count)
        try memory.write(bytes, at: address)
        return address
    }

    // MARK: Descriptors

    /// Writes descriptor `index` of the table at `table`.
    func writeDescriptor(
        _ index: UInt16, in table: GuestAddress? = nil,
        address: GuestAddress, length: UInt32, flags: UInt16, next: UInt16 = 0
    ) throws {
        let entry = GuestAddress((table ?? descriptorTable).rawValue + 16 * UInt64(index))
        try memory.store(address.rawValue, at: entry)
        try memory.store(length, at: GuestAddress(entry.rawValue + 8))
        try memory.store(flags, at: GuestAddress(entry.rawValue + 12))
        try memory.store(next, at: GuestAddress(entry.rawValue + 14))
    }

    private static func flags(_ buffer: Buffer, hasNext: Bool) -> UInt16 {
        (buffer.writable ? SplitQueue.DescriptorFlag.write : 0) | (hasNext ? SplitQueue.DescriptorFlag.next : 0)
    }

    /// Takes `count` consecutive descriptors for the caller to write by hand
    /// (hostile chains); returns the first.
    func reserveDescriptors(_ count: Int) -> UInt16 {
        let first = nextDescriptor
        nextDescriptor = UInt16((Int(nextDescriptor) + count) % Int(size))
        return first
    }

    /// Writes `buffers` as a chain of consecutive descriptors; returns its head.
    @discardableResult
    func addChain(_ buffers: [Buffer]) throws -> UInt16 {
        let head = nextDescriptor
        for (i, buffer) in buffers.enumerated() {
            let index = nextDescriptor
            nextDescriptor = (nextDescriptor + 1) % size
            let last = i == buffers.count - 1
            try writeDescriptor(
                index, address: buffer.address, length: buffer.length,
                flags: Self.flags(buffer, hasNext: !last), next: last ? 0 : nextDescriptor
            )
        }
        return head
    }

    /// Writes `buffers` into an indirect table and a single descriptor
    /// pointing at it; returns that descriptor's index.
    @discardableResult
    func addIndirectChain(_ buffers: [Buffer]) throws -> UInt16 {
        let table = try allocate(16 * buffers.count)
        for (i, buffer) in buffers.enumerated() {
            let last = i == buffers.count - 1
            try writeDescriptor(
                UInt16(i), in: table, address: buffer.address, length: buffer.length,
                flags: Self.flags(buffer, hasNext: !last), next: last ? 0 : UInt16(i + 1)
            )
        }
        return try addIndirectDescriptor(table: table, length: UInt32(16 * buffers.count))
    }

    /// Writes one descriptor with VIRTQ_DESC_F_INDIRECT; returns its index.
    @discardableResult
    func addIndirectDescriptor(table: GuestAddress, length: UInt32, extraFlags: UInt16 = 0) throws -> UInt16 {
        let index = nextDescriptor
        nextDescriptor = (nextDescriptor + 1) % size
        try writeDescriptor(index, address: table, length: length, flags: SplitQueue.DescriptorFlag.indirect | extraFlags)
        return index
    }

    // MARK: Available ring

    /// Puts `head` in the available ring and publishes the new `avail.idx`.
    func makeAvailable(_ head: UInt16) throws {
        try memory.store(head, at: GuestAddress(availableRing.rawValue + 4 + 2 * UInt64(availIndex % size)))
        availIndex &+= 1
        try memory.store(availIndex, at: GuestAddress(availableRing.rawValue + 2))
    }

    /// Overwrites `avail.idx` with any value, as a hostile driver might.
    func setAvailIndex(_ value: UInt16) throws {
        availIndex = value
        try memory.store(value, at: GuestAddress(availableRing.rawValue + 2))
    }

    /// Sets `avail.flags` (VIRTQ_AVAIL_F_NO_INTERRUPT is 1).
    func setAvailFlags(_ flags: UInt16) throws {
        try memory.store(flags, at: availableRing)
    }

    /// Sets `used_event`, the used index after which the driver wants an interrupt.
    func setUsedEvent(_ value: UInt16) throws {
        try memory.store(value, at: GuestAddress(availableRing.rawValue + 4 + 2 * UInt64(size)))
    }

    // MARK: Used ring

    var usedIndex: UInt16 { (try? memory.load(UInt16.self, at: GuestAddress(usedRing.rawValue + 2))) ?? 0 }

    /// `avail_event`, the available index after which the device wants a notification.
    var availEvent: UInt16 {
        (try? memory.load(UInt16.self, at: GuestAddress(usedRing.rawValue + 4 + 8 * UInt64(size)))) ?? 0
    }

    /// The used elements published since the last call.
    func takeUsed() throws -> [UsedElement] {
        var elements: [UsedElement] = []
        let end = usedIndex
        while usedSeen != end {
            let entry = usedRing.rawValue + 4 + 8 * UInt64(usedSeen % size)
            elements.append(UsedElement(
                id: try memory.load(UInt32.self, at: GuestAddress(entry)),
                length: try memory.load(UInt32.self, at: GuestAddress(entry + 4))
            ))
            usedSeen &+= 1
        }
        return elements
    }

    var layout: SplitQueue.Layout {
        SplitQueue.Layout(size: size, descriptorTable: descriptorTable, availableRing: availableRing, usedRing: usedRing)
    }
}
