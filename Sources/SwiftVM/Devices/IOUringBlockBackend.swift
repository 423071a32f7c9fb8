import SwiftVMDevices
import Glibc
import Synchronization
import SwiftVMHost

/// A drive backed by a file (or block device) whose reads, writes and flushes
/// go through io_uring: the `Async` io engine.
///
/// The file is opened, checked and locked exactly as for the `Sync` engine
/// (``FileBlockBackend`` does it), so both engines report the same errors.
///
/// ``VirtioBlock`` calls its backend synchronously from the event-loop thread,
/// so each request here is submitted and then waited for before the call
/// returns. That gives the drive io_uring's submission path (each request
/// reaches the kernel as a ring entry, not a pread/pwrite call) but does not
/// yet overlap requests: one is in flight at a time, and the event loop is
/// blocked while it is, as with the Sync engine. Overlapping needs a completion-based device path, as the
/// note on ``BlockBackend`` sketches: the device would submit each parsed
/// request with its guest segments as the iovecs and return to the event
/// loop, the ring's completion queue would be registered with the loop
/// (`io_uring_register_eventfd`), and the completion step (status byte, used
/// element, interrupt) would run when the loop sees the completion. The ring
/// would then need as many entries as the queue has descriptors.
///
/// Sendable by hand: the ring is used only while `serial` is held, and the
/// buffers it is given are waited on before the lock is released.
final class IOUringBlockBackend: BlockBackend, @unchecked Sendable {
    /// Submission slots per ring: one request is in flight at a time.
    static let ringEntries: UInt32 = 16

    let file: FileBlockBackend
    private let ring: IOUring
    private let serial = Mutex(())

    var size: UInt64 { file.size }

    /// Does the I/O for the already opened and locked `file` through `ring`.
    init(file: FileBlockBackend, ring: IOUring) {
        self.file = file
        self.ring = ring
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        let got = try serial.withLock { _ throws(SystemError) in try ring.read(file.fd, into: buffer, at: offset) }
        if got < buffer.count { throw SystemError("io_uring read: short read at \(offset)", errno: EIO) }
    }

    func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try serial.withLock { _ throws(SystemError) in try ring.write(file.fd, from: buffer, at: offset) }
    }

    func flush() throws {
        try serial.withLock { _ throws(SystemError) in try ring.fsync(file.fd) }
    }
}
