import Atomics
import Synchronization
import SwiftVMMemory

// The ring indices are loaded and stored as native UInt16 atomics straight
// on guest memory, which is little-endian; so must the host be. Both hosts
// swiftvm runs on (x86_64, aarch64 Linux) are.
#if !_endian(little)
#error("SplitQueue's atomic ring indices assume a little-endian host")
#endif

/// The device side of a split virtqueue (virtio 1.2 §2.7) in guest memory.
///
/// Layout, all little-endian, for a queue of `size` entries:
///
///     descriptor table (align 16): size × { addr u64, len u32, flags u16, next u16 }
///     available ring   (align 2):  flags u16, idx u16, ring[size] u16, used_event u16
///     used ring        (align 4):  flags u16, idx u16, ring[size] { id u32, len u32 }, avail_event u16
///
/// Everything the driver wrote is untrusted. A malformed chain (a loop, a
/// chain longer than the queue, a descriptor index out of range, a buffer
/// outside guest RAM, a readable buffer after a writable one, a bad indirect
/// table) is logged and handed back with a used length of 0, and the queue
/// moves on. A broken ring (an `avail.idx` more than `size` ahead, a head
/// index out of range) cannot be recovered: the queue records ``failure`` and
/// stops, and the transport sets DEVICE_NEEDS_RESET.
///
/// Memory ordering (§2.7.13 and the notification rules of §2.7.7, §2.7.10).
/// The 16-bit fields both sides poll (`avail.flags`, `avail.idx`,
/// `used_event`, `used.idx`, `avail_event`) are accessed with atomic loads
/// and stores (`UnsafeAtomic<UInt16>` over the guest bytes, after a bounds
/// and 2-byte alignment check); ring entries, descriptors and buffers are
/// plain bounds-checked accesses ordered by those atomics:
/// - `avail.idx` is loaded with acquire, so the ring entries and descriptors
///   it publishes are read no earlier than the index;
/// - `used.idx` is stored with release, so the used element (and the data
///   written into the buffers) is visible before the index that publishes it;
/// - between storing `used.idx` and loading `used_event` / `avail.flags`, and
///   between storing `avail_event` and re-loading `avail.idx`, a sequentially
///   consistent fence: each side stores one location and then loads the
///   other's, a store-load order that acquire and release do not give (x86
///   needs an `mfence` here). The driver puts a full barrier in the mirror
///   position (Linux's `virtio_mb()`), so one side always sees the other's
///   store and no notification is lost. The loads and stores next to the
///   fence only feed that decision, so they are relaxed.
/// The device never writes `used.flags`: it does not use
/// VIRTQ_USED_F_NO_NOTIFY and leaves the field as the driver zeroed it.
public final class SplitQueue: Sendable {
    /// Where the driver put the queue, as the transport's registers describe it.
    public struct Layout: Sendable, Hashable {
        public var size: UInt16
        public var descriptorTable: GuestAddress
        public var availableRing: GuestAddress
        public var usedRing: GuestAddress

        public init(size: UInt16, descriptorTable: GuestAddress, availableRing: GuestAddress, usedRing: GuestAddress) {
            self.size = size
            self.descriptorTable = descriptorTable
            self.availableRing = availableRing
            self.usedRing = usedRing
        }

        public var descriptorTableBytes: UInt64 { 16 * UInt64(size) }
        public var availableRingBytes: UInt64 { 6 + 2 * UInt64(size) }
        public var usedRingBytes: UInt64 { 6 + 8 * UInt64(size) }
    }

    /// Why a layout cannot be used.
    public enum LayoutError: Error, Equatable, CustomStringConvertible {
        case invalidSize(UInt16)
        case misaligned(part: String, address: GuestAddress, alignment: UInt64)
        case outsideMemory(part: String, address: GuestAddress, length: UInt64)

        public var description: String {
            switch self {
            case .invalidSize(let size):
                "queue size \(size) is not a power of two between 1 and 32768"
            case .misaligned(let part, let address, let alignment):
                "\(part) at \(address) is not \(alignment)-byte aligned"
            case .outsideMemory(let part, let address, let length):
                "\(part) at \(address) (\(length) bytes) is outside guest RAM"
            }
        }
    }

    /// Descriptor flags (§2.7.5).
    public enum DescriptorFlag {
        public static let next: UInt16 = 1
        public static let write: UInt16 = 2
        public static let indirect: UInt16 = 4
    }

    /// VIRTQ_AVAIL_F_NO_INTERRUPT: the driver asks not to be interrupted (§2.7.7).
    public static let availNoInterrupt: UInt16 = 1
    /// The largest queue size the split layout allows (§2.7).
    public static let maximumSize: UInt16 = 32768

    public let size: UInt16
    public let layout: Layout
    public let eventIndex: Bool
    public let indirectDescriptors: Bool
    /// Names the queue in log lines, e.g. "virtio-blk queue 0".
    public let label: String
    private let memory: GuestMemory
    private let state = Mutex(State())

    private struct State {
        /// The next available-ring slot the device reads (free-running).
        var nextAvail: UInt16 = 0
        /// The used index the device publishes next (free-running).
        var nextUsed: UInt16 = 0
        /// `nextUsed` when the device last decided whether to interrupt.
        var usedAtLastSignal: UInt16 = 0
        var failure: String?
        var enabled = true
    }

    /// Checks `layout` against the rules of §2.7 and guest RAM.
    public static func validate(_ layout: Layout, memory: GuestMemory) throws(LayoutError) {
        guard layout.size > 0, layout.size <= maximumSize, layout.size & (layout.size - 1) == 0 else {
            throw .invalidSize(layout.size)
        }
        let parts: [(String, GuestAddress, UInt64, UInt64)] = [
            ("descriptor table", layout.descriptorTable, 16, layout.descriptorTableBytes),
            ("available ring", layout.availableRing, 2, layout.availableRingBytes),
            ("used ring", layout.usedRing, 4, layout.usedRingBytes),
        ]
        for (part, address, alignment, length) in parts {
            guard address.rawValue % alignment == 0 else {
                throw .misaligned(part: part, address: address, alignment: alignment)
            }
            guard memory.region(containing: address, length: length) != nil else {
                throw .outsideMemory(part: part, address: address, length: length)
            }
        }
    }

    /// - Parameters:
    ///   - eventIndex: VIRTIO_F_EVENT_IDX was negotiated.
    ///   - indirectDescriptors: VIRTIO_F_INDIRECT_DESC was negotiated; without
    ///     it an indirect descriptor makes the chain malformed.
    ///   - label: names the queue in log lines.
    public convenience init(
        memory: GuestMemory, layout: Layout, eventIndex: Bool, indirectDescriptors: Bool, label: String = "virtqueue"
    ) throws(LayoutError) {
        try Self.validate(layout, memory: memory)
        self.init(
            memory: memory, unvalidated: layout, eventIndex: eventIndex, indirectDescriptors: indirectDescriptors,
            label: label)
    }

    /// A queue over `layout` as given, without ``validate(_:memory:)``. Every
    /// ring access is still checked on its own and fails the queue when it
    /// falls outside guest RAM or is misaligned; tests use this to reach those
    /// checks.
    package init(
        memory: GuestMemory, unvalidated layout: Layout, eventIndex: Bool, indirectDescriptors: Bool,
        label: String = "virtqueue"
    ) {
        self.label = label
        self.memory = memory
        self.layout = layout
        self.size = layout.size
        self.eventIndex = eventIndex
        self.indirectDescriptors = indirectDescriptors
    }

    /// Why the queue stopped, if it did; the device then needs a reset.
    public var failure: String? { state.withLock { $0.failure } }

    /// Stops the queue for good: no further ring reads or writes. The
    /// transport calls it on reset, so a request still in flight on the event
    /// loop cannot write to rings the driver has taken back.
    public func disable() { state.withLock { $0.enabled = false } }

    // MARK: - Available ring

    /// The next well-formed chain the driver made available, or nil when there
    /// is none (or the queue stopped). Malformed chains met on the way are
    /// returned to the driver with a used length of 0.
    public func popAvailable() -> DescriptorChain? {
        state.withLock { s -> DescriptorChain? in
            // Each pass consumes one ring entry and the driver can publish at
            // most `size` at a time, so this ends unless the guest keeps
            // feeding it, which it can do with valid requests as well.
            while s.enabled, s.failure == nil {
                guard let available = loadAvailIndex(&s) else { return nil }
                if available == s.nextAvail {
                    guard eventIndex else { return nil }
                    // Ask to be notified for the next entry, then look again
                    // in case the driver added one before it saw the request.
                    let wanted = s.nextAvail.littleEndian
                    guard withIndex(at: availEventAddress, &s, { $0.store(wanted, ordering: .relaxed) }) != nil else {
                        return nil
                    }
                    // Store-load: the driver must see avail_event, or this
                    // load must see its new avail.idx (§2.7.10).
                    Atomics.atomicMemoryFence(ordering: .sequentiallyConsistent)
                    guard let again = loadAvailIndex(&s), again != s.nextAvail else { return nil }
                    continue
                }
                let slot = layout.availableRing.rawValue + 4 + 2 * UInt64(s.nextAvail % size)
                guard let head: UInt16 = load(at: slot, &s) else { return nil }
                s.nextAvail &+= 1
                guard head < size else {
                    fail("available ring names descriptor \(head), queue size is \(size)", &s)
                    return nil
                }
                switch walk(head: head) {
                case .success(let buffers):
                    return DescriptorChain(head: head, buffers: buffers)
                case .failure(let problem):
                    Log.warning("\(label): dropping request \(head): \(problem.reason)")
                    publishUsed(head: head, length: 0, &s)
                }
            }
            return nil
        }
    }

    /// Loads `avail.idx` (acquire: the entries and descriptors it publishes
    /// are read after it) and checks the driver is not more than a ring ahead.
    private func loadAvailIndex(_ s: inout State) -> UInt16? {
        guard let raw = withIndex(at: layout.availableRing.rawValue + 2, &s, { $0.load(ordering: .acquiring) }) else {
            return nil
        }
        let index = UInt16(littleEndian: raw)
        let outstanding = index &- s.nextAvail
        guard outstanding <= size else {
            fail("avail.idx \(index) is \(outstanding) entries ahead of the device (queue size \(size))", &s)
            return nil
        }
        return index
    }

    private var availEventAddress: UInt64 { layout.usedRing.rawValue + 4 + 8 * UInt64(size) }
    private var usedEventAddress: UInt64 { layout.availableRing.rawValue + 4 + 2 * UInt64(size) }

    // MARK: - Descriptor chains

    private struct Malformed: Error { var reason: String }

    private struct Descriptor {
        var address: UInt64
        var length: UInt32
        var flags: UInt16
        var next: UInt16
    }

    /// Follows the chain from `head`, flattening at most one indirect table.
    private func walk(head: UInt16) -> Result<[GuestBuffer], Malformed> {
        var buffers: [GuestBuffer] = []
        var table = layout.descriptorTable
        var tableCount = UInt32(size)
        var index = UInt32(head)
        var visited: UInt32 = 0
        var inIndirect = false
        var sawWritable = false
        while true {
            // A chain visits each descriptor of a table at most once; more
            // means a loop (§2.7.5.3: no chain is longer than the queue).
            visited += 1
            guard visited <= tableCount else {
                return .failure(Malformed(reason: "chain is longer than its table of \(tableCount) descriptors (a loop?)"))
            }
            guard index < tableCount else {
                return .failure(Malformed(reason: "descriptor index \(index) is outside a table of \(tableCount)"))
            }
            let descriptor: Descriptor
            do {
                descriptor = try readDescriptor(table: table, index: index)
            } catch {
                return .failure(Malformed(reason: "descriptor \(index) is unreadable: \(error)"))
            }
            if descriptor.flags & DescriptorFlag.indirect != 0 {
                guard indirectDescriptors else {
                    return .failure(Malformed(reason: "indirect descriptor without VIRTIO_F_INDIRECT_DESC"))
                }
                guard !inIndirect else {
                    return .failure(Malformed(reason: "indirect descriptor inside an indirect table"))
                }
                guard descriptor.flags & DescriptorFlag.next == 0 else {
                    return .failure(Malformed(reason: "indirect descriptor also has VIRTQ_DESC_F_NEXT"))
                }
                let count = descriptor.length / 16
                guard descriptor.length % 16 == 0, count > 0, count <= UInt32(size) else {
                    return .failure(Malformed(reason: "indirect table length \(descriptor.length) is not 16 to \(16 * UInt32(size)) in steps of 16"))
                }
                let address = GuestAddress(descriptor.address)
                guard memory.region(containing: address, length: UInt64(descriptor.length)) != nil else {
                    return .failure(Malformed(reason: "indirect table at \(address) (\(descriptor.length) bytes) is outside guest RAM"))
                }
                table = address
                tableCount = count
                index = 0
                visited = 0
                inIndirect = true
                continue
            }
            let address = GuestAddress(descriptor.address)
            guard address.adding(UInt64(descriptor.length)) != nil else {
                return .failure(Malformed(reason: "buffer at \(address) + \(descriptor.length) bytes overflows the address space"))
            }
            guard memory.region(containing: address, length: UInt64(descriptor.length)) != nil else {
                return .failure(Malformed(reason: "buffer at \(address) (\(descriptor.length) bytes) is outside guest RAM"))
            }
            let writable = descriptor.flags & DescriptorFlag.write != 0
            guard writable || !sawWritable else {
                return .failure(Malformed(reason: "device-readable buffer after a device-writable one"))
            }
            sawWritable = sawWritable || writable
            buffers.append(GuestBuffer(address: address, length: descriptor.length, isWritable: writable))
            guard descriptor.flags & DescriptorFlag.next != 0 else { return .success(buffers) }
            index = UInt32(descriptor.next)
        }
    }

    /// Copies descriptor `index` out of guest memory once, so the guest cannot
    /// change it between the checks and the use.
    private func readDescriptor(table: GuestAddress, index: UInt32) throws(GuestMemoryError) -> Descriptor {
        let address = GuestAddress(table.rawValue &+ 16 * UInt64(index))
        let bytes = try memory.checkedBytes(at: address, count: 16)
        return Descriptor(
            address: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            length: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
            flags: UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt16.self)),
            next: UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
        )
    }

    // MARK: - Used ring

    /// Hands chain `head` back to the driver with `length` bytes written into
    /// its writable buffers.
    public func addUsed(head: UInt16, length: UInt32) {
        state.withLock { s in
            guard s.enabled, s.failure == nil else { return }
            publishUsed(head: head, length: length, &s)
        }
    }

    private func publishUsed(head: UInt16, length: UInt32, _ s: inout State) {
        let element = layout.usedRing.rawValue + 4 + 8 * UInt64(s.nextUsed % size)
        guard store(UInt32(head), at: element, &s), store(length, at: element + 4, &s) else { return }
        s.nextUsed &+= 1
        // Release: the element and the buffer contents come before the index.
        let published = s.nextUsed.littleEndian
        _ = withIndex(at: layout.usedRing.rawValue + 2, &s) { $0.store(published, ordering: .releasing) }
    }

    /// Whether the driver wants an interrupt for the used elements added since
    /// the last call: with VIRTIO_F_EVENT_IDX when the used index passed
    /// `used_event` (the vring_need_event rule, §2.7.10), otherwise unless
    /// the driver set VIRTQ_AVAIL_F_NO_INTERRUPT.
    public func needsNotification() -> Bool {
        state.withLock { s in
            guard s.enabled, s.failure == nil else { return false }
            let old = s.usedAtLastSignal
            let new = s.nextUsed
            s.usedAtLastSignal = new
            guard new != old else { return false }
            // Store-load: the used.idx stored in publishUsed against the
            // driver's used_event / flags, which it stores before re-reading
            // used.idx (§2.7.7, §2.7.10).
            Atomics.atomicMemoryFence(ordering: .sequentiallyConsistent)
            if eventIndex {
                guard let raw = withIndex(at: usedEventAddress, &s, { $0.load(ordering: .relaxed) }) else {
                    return false
                }
                let usedEvent = UInt16(littleEndian: raw)
                return new &- usedEvent &- 1 < new &- old
            }
            guard let raw = withIndex(at: layout.availableRing.rawValue, &s, { $0.load(ordering: .relaxed) }) else {
                return false
            }
            return UInt16(littleEndian: raw) & Self.availNoInterrupt == 0
        }
    }

    // MARK: - Ring access

    /// Runs `body` on the 16-bit field at `address` as an atomic, or fails the
    /// queue when the field is outside guest RAM or not 2-byte aligned (an
    /// atomic must be naturally aligned; a misaligned one could tear or trap).
    private func withIndex<R>(at address: UInt64, _ s: inout State, _ body: (UnsafeAtomic<UInt16>) -> R) -> R? {
        let bytes: UnsafeMutableRawBufferPointer
        do {
            bytes = try memory.checkedBytes(at: GuestAddress(address), count: 2)
        } catch {
            fail("ring index access failed: \(error)", &s)
            return nil
        }
        // Guest RAM is mapped page-aligned, so the host pointer is aligned
        // exactly when the guest address is.
        guard let base = bytes.baseAddress, Int(bitPattern: base) % 2 == 0 else {
            fail("ring index at \(GuestAddress(address)) is not 2-byte aligned", &s)
            return nil
        }
        // UInt16's atomic representation has UInt16's size and alignment;
        // the binding lasts only for this access.
        return base.withMemoryRebound(to: UInt16.AtomicRepresentation.self, capacity: 1) { pointer in
            body(UnsafeAtomic(at: pointer))
        }
    }

    private func load<T: FixedWidthInteger>(at address: UInt64, _ s: inout State) -> T? {
        do {
            return try memory.load(T.self, at: GuestAddress(address))
        } catch {
            fail("ring read failed: \(error)", &s)
            return nil
        }
    }

    private func store<T: FixedWidthInteger>(_ value: T, at address: UInt64, _ s: inout State) -> Bool {
        do {
            try memory.store(value, at: GuestAddress(address))
            return true
        } catch {
            fail("ring write failed: \(error)", &s)
            return false
        }
    }

    private func fail(_ reason: String, _ s: inout State) {
        guard s.failure == nil else { return }
        Log.warning("\(label): stopping: \(reason)")
        s.failure = reason
    }
}
