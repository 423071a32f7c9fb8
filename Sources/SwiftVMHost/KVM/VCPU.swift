import Glibc
internal import CSwiftVM

/// Why `KVM_RUN` returned.
///
/// The buffers of `.io` and `.mmio` point into the vCPU's shared run
/// structure: they are valid until the next `run()` and carry the data of a
/// write, or receive the data of a read.
public enum VCPUExit {
    case io(port: UInt16, isWrite: Bool, data: UnsafeMutableRawBufferPointer, count: Int)
    case mmio(address: UInt64, isWrite: Bool, data: UnsafeMutableRawBufferPointer)
    case halt
    /// A triple fault or other shutdown condition.
    case shutdown
    /// A `KVM_SYSTEM_EVENT_*` (reset, shutdown, crash).
    case systemEvent(type: UInt32)
    /// KVM could not enter the guest; the reason is the hardware's.
    case failEntry(reason: UInt64, cpu: UInt32)
    /// KVM failed internally, usually while emulating an instruction.
    case internalError(suberror: UInt32, data: [UInt64])
    /// An exception KVM could not deliver.
    case exception(number: UInt32, errorCode: UInt32)
    /// `KVM_RUN` was interrupted by a signal or `immediate_exit`.
    case interrupted
    case unknown(reason: UInt32)
}

/// One virtual CPU. Owned and driven by a single thread.
public final class VCPU: @unchecked Sendable {
    public let id: Int
    let fd: FileDescriptor
    // The kernel-shared `struct kvm_run`; only this vCPU's thread touches it,
    // except `immediate_exit`, which `requestExit` sets from another thread.
    let shared: UnsafeMutablePointer<kvm_run>
    private let runSize: Int

    init(id: Int, fd: FileDescriptor, run: UnsafeMutableRawPointer, runSize: Int) {
        self.id = id
        self.fd = fd
        self.shared = run.assumingMemoryBound(to: kvm_run.self)
        self.runSize = runSize
    }

    deinit { munmap(shared, runSize) }

    func ioctl(_ name: String, _ request: UInt, _ argument: UnsafeMutableRawPointer) throws(KVMError) {
        if svm_ioctl_ptr(fd.rawValue, request, argument) < 0 {
            throw .system(SystemError("\(name) (vCPU \(id))", errno: errno))
        }
    }

    /// Enters the guest until the next exit. The corresponding ioctl is `KVM_RUN`.
    public func run() throws(KVMError) -> VCPUExit {
        if svm_ioctl_int(fd.rawValue, SVM_KVM_RUN, 0) < 0 {
            let error = errno
            if error == EINTR || error == EAGAIN { return .interrupted }
            throw .system(SystemError("KVM_RUN (vCPU \(id))", errno: error))
        }
        let raw = UnsafeMutableRawPointer(shared)
        switch Int32(shared.pointee.exit_reason) {
        case KVM_EXIT_IO:
            let size = Int(svm_run_io_size(shared))
            let count = Int(svm_run_io_count(shared))
            let data = UnsafeMutableRawBufferPointer(
                start: raw + Int(svm_run_io_data_offset(shared)), count: size * count)
            return .io(port: svm_run_io_port(shared), isWrite: svm_run_io_is_write(shared) != 0, data: data, count: count)
        case KVM_EXIT_MMIO:
            let length = min(Int(svm_run_mmio_len(shared)), 8)
            let data = UnsafeMutableRawBufferPointer(start: svm_run_mmio_data(shared), count: length)
            return .mmio(address: svm_run_mmio_phys_addr(shared), isWrite: svm_run_mmio_is_write(shared) != 0, data: data)
        case KVM_EXIT_HLT:
            return .halt
        case KVM_EXIT_SHUTDOWN:
            return .shutdown
        case KVM_EXIT_SYSTEM_EVENT:
            return .systemEvent(type: svm_run_system_event_type(shared))
        case KVM_EXIT_FAIL_ENTRY:
            return .failEntry(reason: svm_run_fail_entry_reason(shared), cpu: svm_run_fail_entry_cpu(shared))
        case KVM_EXIT_INTERNAL_ERROR:
            let count = min(svm_run_internal_ndata(shared), 16)
            return .internalError(
                suberror: svm_run_internal_suberror(shared),
                data: (0..<count).map { svm_run_internal_data(shared, $0) })
        case KVM_EXIT_EXCEPTION:
            return .exception(number: svm_run_exception(shared), errorCode: svm_run_exception_error_code(shared))
        case KVM_EXIT_INTR:
            return .interrupted
        default:
            return .unknown(reason: shared.pointee.exit_reason)
        }
    }

    /// Makes the next (or current) `KVM_RUN` return at once. Call from any
    /// thread, then send the kick signal to the vCPU's thread.
    public func requestExit() {
        svm_set_immediate_exit(shared, 1)
    }

    /// Undoes `requestExit` so that `KVM_RUN` enters the guest again. Only the
    /// vCPU's own thread calls this, between runs.
    public func cancelExitRequest() {
        svm_set_immediate_exit(shared, 0)
    }
}
