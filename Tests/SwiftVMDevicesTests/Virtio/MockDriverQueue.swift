// Atomics is a dependency of SwiftVMDevices, not (yet) declared for this
// test target; the driver needs it to pair with the device's atomics.
import Atomics
import SwiftVMDevices
import SwiftVMMemory
import Testing

/// The driver's side of one split virtqueue: lays out the descriptor table,
/// the available ring and the used ring in guest memory the way a guest
/// driver would, adds chains, and reads used elements back. Test code only,
/// so it traps on its own mistakes.
///
/// The fields the device polls are accessed atomically, with the orderings
/// of Linux's virtio_ring driver, so a driver on another thread is a fair
/// partner for the device: `avail.idx` is stored with release and `used.idx`
/// loaded with acquire; ``kickNeeded(since:)`` and ``enableInterrupts()`` put
/// a full fence between their store and load (virtio 1.2 §2.7.10).
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

    /// Puts `head` in the available ring and publishes the new `avail.idx`
    /// (release: the entry and its descriptors come first).
    func makeAvailable(_ head: UInt16) throws {
        try memory.store(head, at: GuestAddress(availableRing.rawValue + 4 + 2 * UInt64(availIndex % size)))
        availIndex &+= 1
        let published = availIndex
        try ringField(GuestAddress(availableRing.rawValue + 2)) { $0.store(published.littleEndian, ordering: .releasing) }
    }

    /// Overwrites `avail.idx` with any value, as a hostile driver might.
    func setAvailIndex(_ value: UInt16) throws {
        availIndex = value
        try ringField(GuestAddress(availableRing.rawValue + 2)) { $0.store(value.littleEndian, ordering: .releasing) }
    }

    /// Sets `avail.flags` (VIRTQ_AVAIL_F_NO_INTERRUPT is 1).
    func setAvailFlags(_ flags: UInt16) throws {
        try ringField(availableRing) { $0.store(flags.littleEndian, ordering: .relaxed) }
    }

    /// Sets `used_event`, the used index after which the driver wants an interrupt.
    func setUsedEvent(_ value: UInt16) throws {
        try ringField(usedEventAddress) { $0.store(value.littleEndian, ordering: .relaxed) }
    }

    /// Whether the device asked to be notified of the entries published since
    /// `avail.idx` was `old` (VIRTIO_F_EVENT_IDX; Linux's virtqueue_kick_prepare).
    func kickNeeded(since old: UInt16) -> Bool {
        // Store-load: our avail.idx against the device's avail_event.
        Atomics.atomicMemoryFence(ordering: .sequentiallyConsistent)
        return Self.needEvent(availEvent, new: availIndex, old: old)
    }

    /// Asks for an interrupt on the next used element; true if one arrived
    /// meanwhile, so the driver must look again rather than wait (Linux's
    /// virtqueue_enable_cb_prepare and virtqueue_poll).
    func enableInterrupts() throws -> Bool {
        try setUsedEvent(usedSeen)
        // Store-load: our used_event against the device's used.idx.
        Atomics.atomicMemoryFence(ordering: .sequentiallyConsistent)
        return usedIndex != usedSeen
    }

    /// vring_need_event: `event` lies in `(old, new]`, modulo 2^16.
    static func needEvent(_ event: UInt16, new: UInt16, old: UInt16) -> Bool {
        new &- event &- 1 < new &- old
    }

    private var usedEventAddress: GuestAddress { GuestAddress(availableRing.rawValue + 4 + 2 * UInt64(size)) }

    // MARK: Used ring

    /// `used.idx` (acquire: the used elements and replies come after it).
    var usedIndex: UInt16 {
        (try? ringField(GuestAddress(usedRing.rawValue + 2)) { UInt16(littleEndian: $0.load(ordering: .acquiring)) }) ?? 0
    }

    /// `avail_event`, the available index after which the device wants a notification.
    var availEvent: UInt16 {
        let address = GuestAddress(usedRing.rawValue + 4 + 8 * UInt64(size))
        return (try? ringField(address) { UInt16(littleEndian: $0.load(ordering: .relaxed)) }) ?? 0
    }

    /// Runs `body` on the 16-bit ring field at `address` as an atomic.
    private func ringField<R>(_ address: GuestAddress, _ body: (UnsafeAtomic<UInt16>) -> R) throws -> R {
        let bytes = try memory.checkedBytes(at: address, count: 2)
        let base = try #require(bytes.baseAddress)
        try #require(Int(bitPattern: base) % 2 == 0, "ring field at \(address) is misaligned")
        return base.withMemoryRebound(to: UInt16.AtomicRepresentation.self, capacity: 1) { body(UnsafeAtomic(at: $0)) }
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
