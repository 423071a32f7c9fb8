import Synchronization

/// Where a virtio block device keeps its bytes. The VMM implements it over a
/// host file (pread/pwrite/fdatasync); tests use ``InMemoryBlockBackend``.
///
/// Calls are synchronous and run on the event-loop thread. The device never
/// asks for bytes beyond ``size``.
///
/// An asynchronous (io_uring) backend fits the same device: ``VirtioBlock``
/// parses a chain into a request (kind, byte offset, data segments in guest
/// memory, status byte location) before it performs it, and completing a
/// request is a separate step (write the status byte, add the used element,
/// interrupt if the driver wants it). An async variant would submit the
/// parsed request with the guest segments as its iovecs and run the
/// completion step from the event loop when the completion queue reports it;
/// the queue and notifier are already safe to use from there.
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
