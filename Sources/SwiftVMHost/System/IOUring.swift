import Glibc
internal import CSwiftVM

/// One io_uring instance (liburing): a submission and a completion queue
/// shared with the kernel, torn down when the object goes away.
///
/// Two ways to use it, not to be mixed on one ring:
/// - ``read(_:into:at:)``, ``write(_:from:at:)`` and ``fsync(_:)`` queue one
///   entry, submit it and wait for its completion, so one request is in flight;
/// - ``queue(_:fd:iovecs:count:offset:tag:)``, ``submit()`` and
///   ``reapCompletions(_:)`` keep many in flight: entries are queued, handed
///   to the kernel together, and their completions collected later, in any
///   order, with an eventfd (``registerEventFD(_:)``) telling an event loop
///   when some are ready.
///
/// A ring is used from one thread at a time; wrap it in a `Mutex` to share it.
public final class IOUring {
    private let ring: OpaquePointer
    private var nextTag: UInt64 = 1

    /// The largest transfer one entry asks for: the length field of an SQE is
    /// 32 bits, and a longer buffer is split like a short transfer.
    static let maxTransfer = 1 << 30

    /// Sets up a ring with room for `entries` submissions. The corresponding
    /// call is `io_uring_queue_init`; it fails with ENOSYS on a kernel without
    /// io_uring, EPERM where `kernel.io_uring_disabled` forbids it, ENOMEM
    /// under a small RLIMIT_MEMLOCK on kernels before 5.12, and EINVAL for an
    /// entry count outside 1...32768.
    public init(entries: UInt32) throws(SystemError) {
        var error: Int32 = 0
        guard let ring = svm_uring_queue_init(entries, &error) else {
            throw SystemError("io_uring_queue_init", errno: -error)
        }
        self.ring = ring
    }

    deinit { svm_uring_queue_exit(ring) }

    /// Reads `buffer.count` bytes of `fd` at `offset` (IORING_OP_READ),
    /// resubmitting short reads for the remainder; returns fewer bytes only
    /// when the file ends first.
    public func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(SystemError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < buffer.count {
            let count = UInt32(min(buffer.count - done, Self.maxTransfer))
            let position = offset + UInt64(done)
            let got = try perform("io_uring read") { sqe in
                svm_uring_prep_read(sqe, fd.rawValue, base + done, count, position)
            }
            if got == 0 { break }
            done += Int(got)
        }
        return done
    }

    /// Writes all of `buffer` to `fd` at `offset` (IORING_OP_WRITE),
    /// resubmitting short writes for the remainder.
    public func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(SystemError) {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let count = UInt32(min(buffer.count - done, Self.maxTransfer))
            let position = offset + UInt64(done)
            let put = try perform("io_uring write") { sqe in
                svm_uring_prep_write(sqe, fd.rawValue, base + done, count, position)
            }
            // A write that stores nothing would never finish.
            if put == 0 { throw SystemError("io_uring write: no progress at \(position)", errno: EIO) }
            done += Int(put)
        }
    }

    /// Flushes `fd`'s data and metadata to its storage (IORING_OP_FSYNC).
    public func fsync(_ fd: FileDescriptor) throws(SystemError) {
        _ = try perform("io_uring fsync") { sqe in svm_uring_prep_fsync(sqe, fd.rawValue) }
    }

    /// Queues one entry filled in by `prepare`, submits it, waits for its
    /// completion and returns the completion's result; a negative result is
    /// thrown as its errno. An interrupted wait is resumed, and an operation
    /// that completes with EINTR is submitted again: reads and writes at a
    /// fixed offset, and fsync, can be repeated safely.
    private func perform(_ operation: String, _ prepare: (OpaquePointer) -> Void) throws(SystemError) -> Int32 {
        while true {
            // The queue is empty between operations, so a slot is always free.
            guard let sqe = svm_uring_get_sqe(ring) else { throw SystemError("\(operation): submission queue full", errno: EBUSY) }
            prepare(sqe)
            let tag = nextTag
            nextTag &+= 1
            svm_uring_sqe_set_data(sqe, tag)

            var submitted = svm_uring_submit_and_wait(ring, 1)
            while submitted == -EINTR { submitted = svm_uring_submit_and_wait(ring, 0) }
            if submitted < 0 { throw SystemError("\(operation): io_uring_submit_and_wait", errno: -submitted) }

            let result = try completion(of: tag, operation)
            if result == -EINTR { continue }
            if result < 0 { throw SystemError(operation, errno: -result) }
            return result
        }
    }

    /// Waits for the completion tagged `tag`, consumes it and returns its result.
    private func completion(of tag: UInt64, _ operation: String) throws(SystemError) -> Int32 {
        var cqe: OpaquePointer?
        var status = svm_uring_peek_cqe(ring, &cqe)
        while status == -EAGAIN || status == -EINTR { status = svm_uring_wait_cqe(ring, &cqe) }
        guard status == 0, let cqe else { throw SystemError("\(operation): io_uring_wait_cqe", errno: -status) }
        let result = svm_uring_cqe_res(cqe)
        let answered = svm_uring_cqe_user_data(cqe)
        svm_uring_cqe_seen(ring, cqe)
        // Only one entry is ever in flight, so any other completion is a bug.
        guard answered == tag else { throw SystemError("\(operation): completion for entry \(answered), expected \(tag)", errno: EIO) }
        return result
    }

    // MARK: - Many operations in flight

    /// What a queued entry does.
    public enum VectoredOperation: Sendable {
        case readv, writev, fsync
    }

    /// Queues one entry without submitting it; its completion carries `tag`.
    /// The iovecs must stay valid until that completion is reaped. Returns
    /// false when the submission queue is full.
    public func queue(
        _ operation: VectoredOperation, fd: FileDescriptor, iovecs: UnsafePointer<Glibc.iovec>?, count: Int, offset: UInt64,
        tag: UInt64
    ) -> Bool {
        guard let sqe = svm_uring_get_sqe(ring) else { return false }
        switch operation {
        case .readv: svm_uring_prep_readv(sqe, fd.rawValue, iovecs, UInt32(count), offset)
        case .writev: svm_uring_prep_writev(sqe, fd.rawValue, iovecs, UInt32(count), offset)
        case .fsync: svm_uring_prep_fsync(sqe, fd.rawValue)
        }
        svm_uring_sqe_set_data(sqe, tag)
        return true
    }

    /// Hands every queued entry to the kernel without waiting; returns how
    /// many it took. An interrupted call is repeated; EAGAIN and EBUSY (the
    /// kernel is short of resources or completions must be reaped first)
    /// leave the entries queued for the next call.
    @discardableResult
    public func submit() throws(SystemError) -> Int {
        while true {
            let result = svm_uring_submit(ring)
            if result >= 0 { return Int(result) }
            if result == -EINTR { continue }
            if result == -EAGAIN || result == -EBUSY { return 0 }
            throw SystemError("io_uring_submit", errno: -result)
        }
    }

    /// Hands `body` every completion ready now (its tag and result: bytes
    /// moved or a negative errno) and consumes it; never waits. Returns how
    /// many there were.
    @discardableResult
    public func reapCompletions(_ body: (UInt64, Int32) -> Void) -> Int {
        var count = 0
        while true {
            var cqe: OpaquePointer?
            guard svm_uring_peek_cqe(ring, &cqe) == 0, let cqe else { return count }
            let tag = svm_uring_cqe_user_data(cqe)
            let result = svm_uring_cqe_res(cqe)
            svm_uring_cqe_seen(ring, cqe)
            body(tag, result)
            count += 1
        }
    }

    /// Has the kernel signal the eventfd `fd` each time it posts a
    /// completion (IORING_REGISTER_EVENTFD).
    public func registerEventFD(_ fd: Int32) throws(SystemError) {
        let result = svm_uring_register_eventfd(ring, fd)
        if result < 0 { throw SystemError("io_uring_register_eventfd", errno: -result) }
    }
}
