import SwiftVMDevices
import Glibc
import Synchronization
import SwiftVMHost
import SwiftVMMemory

/// A drive backed by a file (or block device) whose reads, writes and flushes
/// go through io_uring: the `Async` io engine.
///
/// The file is opened, checked and locked exactly as for the `Sync` engine
/// (``FileBlockBackend`` does it), so both engines report the same errors.
///
/// ``VirtioBlock`` drives it as an ``AsyncBlockBackend``: a queue pass queues
/// one ring entry per request (a vectored read or write over the request's
/// guest segments, or an fsync) and submits them together without waiting;
/// the kernel signals an eventfd registered with the ring when completions
/// are posted, and the event loop reaps them and completes the requests. The
/// ring has as many entries as the virtqueue, so every request the guest can
/// post fits in flight at once.
///
/// The synchronous ``BlockBackend`` calls (one request submitted and waited
/// for) remain for callers outside the device; they must not be mixed with
/// operations in flight.
///
/// Sendable by hand: the ring is used only while `state` is held, and the
/// iovec arrays handed to the kernel are freed only once their completion
/// has been reaped (or the ring is gone).
final class IOUringBlockBackend: AsyncBlockBackend, @unchecked Sendable {
    /// Submission slots per ring: one per descriptor of the virtqueue.
    static let ringEntries: UInt32 = UInt32(VirtioBlock.queueSize)

    let file: FileBlockBackend
    private let ring: IOUring
    private let completions: EventFD
    private let state = Mutex(Flight())

    private struct Flight {
        /// The iovec arrays of the operations in flight, by tag.
        var iovecs: [UInt64: Vectors] = [:]
    }

    /// An iovec array the kernel reads; owned by `state`.
    private struct Vectors: @unchecked Sendable {
        let pointer: UnsafeMutableBufferPointer<iovec>
        func deallocate() { pointer.deallocate() }
    }

    var size: UInt64 { file.size }
    let maxInFlight: Int
    var completionDescriptor: Int32? { completions.rawValue }

    /// Does the I/O for the already opened and locked `file` through `ring`,
    /// which has room for `entries` submissions.
    init(file: FileBlockBackend, ring: IOUring, entries: UInt32 = ringEntries) throws(SystemError) {
        self.file = file
        self.ring = ring
        self.maxInFlight = Int(entries)
        self.completions = try EventFD(nonBlocking: true)
        try ring.registerEventFD(completions.rawValue)
    }

    deinit {
        // Nothing may still write into guest memory or the file once the
        // ring and the file close: let what is in flight finish.
        if !waitForIdle(timeoutNanoseconds: 10_000_000_000) {
            Log.warning("drive: io_uring operations still running at close")
        }
    }

    // MARK: - AsyncBlockBackend

    func enqueue(_ operation: BlockOperation, tag: UInt64) -> Bool {
        state.withLock { s in
            guard s.iovecs.count < maxInFlight else { return false }
            let vectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: max(1, operation.segments.count))
            for (i, segment) in operation.segments.enumerated() {
                vectors[i] = iovec(iov_base: segment.baseAddress, iov_len: segment.count)
            }
            let kind: IOUring.VectoredOperation = switch operation.kind {
            case .read: .readv
            case .write: .writev
            case .flush: .fsync
            }
            guard ring.queue(
                kind, fd: file.fd, iovecs: UnsafePointer(vectors.baseAddress), count: operation.segments.count,
                offset: operation.offset, tag: tag
            ) else {
                vectors.deallocate()
                return false
            }
            s.iovecs[tag] = Vectors(pointer: vectors)
            return true
        }
    }

    func submitQueued() {
        state.withLock { _ in
            do {
                try ring.submit()
            } catch {
                Log.warning("drive: \(error)")
            }
        }
    }

    func reap(_ body: (UInt64, Int) -> Void) {
        _ = completions.drain()
        var ready: [(UInt64, Int)] = []
        state.withLock { s in
            // Entries left queued by a submission the kernel put off.
            _ = try? ring.submit()
            ring.reapCompletions { tag, result in
                s.iovecs.removeValue(forKey: tag)?.deallocate()
                ready.append((tag, Int(result)))
            }
        }
        for (tag, result) in ready { body(tag, result) }
    }

    func waitForIdle(timeoutNanoseconds: UInt64) -> Bool {
        let deadline = RateLimiter.monotonicNanoseconds() &+ timeoutNanoseconds
        while true {
            // Peeking at the completion ring needs no system call.
            let idle = state.withLock { s in
                ring.reapCompletions { tag, _ in s.iovecs.removeValue(forKey: tag)?.deallocate() }
                return s.iovecs.isEmpty
            }
            if idle { return true }
            if RateLimiter.monotonicNanoseconds() >= deadline { return false }
            var pause = timespec(tv_sec: 0, tv_nsec: 50_000)
            nanosleep(&pause, nil)
        }
    }

    // MARK: - BlockBackend (one request at a time)

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        let got = try state.withLock { _ throws(SystemError) in try ring.read(file.fd, into: buffer, at: offset) }
        if got < buffer.count { throw SystemError("io_uring read: short read at \(offset)", errno: EIO) }
    }

    func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try state.withLock { _ throws(SystemError) in try ring.write(file.fd, from: buffer, at: offset) }
    }

    func flush() throws {
        try state.withLock { _ throws(SystemError) in try ring.fsync(file.fd) }
    }
}
