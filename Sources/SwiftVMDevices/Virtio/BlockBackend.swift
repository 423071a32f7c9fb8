import Synchronization

/// Where a virtio block device keeps its bytes. The VMM implements it over a
/// host file (pread/pwrite/fdatasync); tests use ``InMemoryBlockBackend``.
///
/// Calls are synchronous and run on the event-loop thread. The device never
/// asks for bytes beyond ``size``. A backend that can keep several requests
/// in flight also conforms to ``AsyncBlockBackend``, and the device then uses
/// that interface instead of these calls.
public protocol BlockBackend: Sendable {
    /// Bytes of storage; the device exposes `size / 512` sectors.
    var size: UInt64 { get }
    /// Fills `buffer` with the bytes at `offset`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
    /// Stores `buffer` at `offset`.
    func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws
    /// Makes every completed write durable.
    func flush() throws
}

/// One read, write or flush handed to an ``AsyncBlockBackend``.
///
/// The segments point into guest RAM, which stays mapped for the VM's life;
/// the device keeps the request they belong to until its completion, and
/// waits for every operation in flight before a reset returns.
public struct BlockOperation {
    public enum Kind: Sendable, Equatable { case read, write, flush }
    public var kind: Kind
    /// Byte offset on the disk (reads and writes).
    public var offset: UInt64
    /// Where the data goes (reads) or comes from (writes), in order.
    public var segments: [UnsafeMutableRawBufferPointer]

    public init(kind: Kind, offset: UInt64 = 0, segments: [UnsafeMutableRawBufferPointer] = []) {
        self.kind = kind
        self.offset = offset
        self.segments = segments
    }

    /// Bytes the operation moves.
    public var length: Int { segments.reduce(0) { $0 + $1.count } }
}

/// A backend that starts operations and reports their completions later
/// (io_uring), so the device keeps many requests of a queue in flight.
///
/// ``VirtioBlock`` calls ``enqueue(_:tag:)`` and ``submitQueued()`` and
/// ``reap(_:)`` on the event-loop thread; ``waitForIdle(timeoutNanoseconds:)``
/// may come from a vCPU thread (a device reset) at the same time, so
/// implementations lock their state. Completions may arrive in any order;
/// the device orders what must be ordered (a flush is started only once
/// the writes before it completed).
public protocol AsyncBlockBackend: BlockBackend {
    /// Operations the backend can hold in flight at once.
    var maxInFlight: Int { get }
    /// A descriptor that is readable while completions wait to be reaped
    /// (an eventfd), for the event loop; nil when the owner polls ``reap(_:)``.
    var completionDescriptor: Int32? { get }
    /// Queues `operation`, to start no later than the next ``submitQueued()``;
    /// its completion carries `tag`. Returns false when no room is left.
    func enqueue(_ operation: BlockOperation, tag: UInt64) -> Bool
    /// Starts everything queued, without waiting for it.
    func submitQueued()
    /// Hands `body` each completion ready now: its tag and the bytes moved,
    /// or a negative errno. Never waits.
    func reap(_ body: (UInt64, Int) -> Void)
    /// Waits until nothing is in flight, at most `timeoutNanoseconds`, and
    /// drops the completions it sees (their requests were abandoned).
    /// Returns false when operations were still running at the deadline.
    /// Must not need a system call beyond a sleep: it runs on vCPU threads.
    func waitForIdle(timeoutNanoseconds: UInt64) -> Bool
}

/// A block backend held in host memory, for tests and throwaway disks.
public final class InMemoryBlockBackend: BlockBackend {
    /// An access the device should never make: beyond the end of the disk.
    public struct OutOfRange: Error, Equatable {
        public var offset: UInt64
        public var count: Int
    }

    public let size: UInt64
    private let storage: Mutex<[UInt8]>
    private let flushes = Atomic<Int>(0)

    /// A disk of `size` zero bytes.
    public convenience init(size: Int) {
        self.init(bytes: [UInt8](repeating: 0, count: size))
    }

    /// A disk holding `bytes`.
    public init(bytes: [UInt8]) {
        self.size = UInt64(bytes.count)
        self.storage = Mutex(bytes)
    }

    /// A copy of the disk's contents.
    public var bytes: [UInt8] { storage.withLock { $0 } }

    /// How many times the device asked for a flush.
    public var flushCount: Int { flushes.load(ordering: .relaxed) }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        let range = try checked(offset, buffer.count)
        storage.withLock { bytes in
            bytes.withUnsafeBytes { source in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[range]))
            }
        }
    }

    public func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        let range = try checked(offset, buffer.count)
        storage.withLock { bytes in
            bytes.withUnsafeMutableBytes { target in
                UnsafeMutableRawBufferPointer(rebasing: target[range]).copyMemory(from: buffer)
            }
        }
    }

    public func flush() throws {
        flushes.add(1, ordering: .relaxed)
    }

    private func checked(_ offset: UInt64, _ count: Int) throws(OutOfRange) -> Range<Int> {
        guard offset <= size, UInt64(count) <= size - offset else { throw OutOfRange(offset: offset, count: count) }
        return Int(offset)..<(Int(offset) + count)
    }
}
