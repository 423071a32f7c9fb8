import Glibc
internal import CSwiftVM
import SwiftVMBoot

/// The `/dev/kvm` system handle.
public final class KVM: Sendable {
    public static let defaultPath = "/dev/kvm"
    static let expectedAPIVersion: Int32 = 12

    let fd: FileDescriptor
    /// Size of the shared `struct kvm_run` mapping of each vCPU.
    public let vcpuMapSize: Int

    /// Opens `/dev/kvm` and checks the API version and every capability swiftvm relies on.
    public init(path: String = KVM.defaultPath) throws(KVMError) {
        // O_NONBLOCK: a FIFO or a terminal given by mistake must not hold
        // the open; KVM's own descriptors ignore the flag.
        let raw = Glibc.open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        if raw < 0 {
            switch errno {
            case ENOENT, ENODEV, ENXIO: throw .deviceMissing(path: path)
            case EACCES, EPERM: throw .permissionDenied(path: path)
            case EISDIR: throw .notKVMDevice(path: path, kind: "a directory")
            default: throw .system(SystemError("open \(path)", errno: errno))
            }
        }
        fd = FileDescriptor(owning: raw)
        var info = stat()
        if fstat(raw, &info) == 0, info.st_mode & S_IFMT != S_IFCHR {
            throw .notKVMDevice(path: path, kind: FileType.describe(info.st_mode & S_IFMT))
        }
        let version = svm_ioctl_int(raw, SVM_KVM_GET_API_VERSION, 0)
        if version < 0 && errno == ENOTTY {
            throw .notKVMDevice(path: path, kind: "a character device that does not answer KVM's ioctls")
        }
        guard version == KVM.expectedAPIVersion else { throw .unsupportedAPIVersion(version) }
        for (capability, name, purpose) in KVM.requiredCapabilities {
            if svm_ioctl_int(raw, SVM_KVM_CHECK_EXTENSION, UInt(capability)) <= 0 {
                throw .missingCapability(name: name, purpose: purpose)
            }
        }
        let size = svm_ioctl_int(raw, SVM_KVM_GET_VCPU_MMAP_SIZE, 0)
        guard size > 0 else { throw .system(SystemError("KVM_GET_VCPU_MMAP_SIZE", errno: errno)) }
        vcpuMapSize = Int(size)
    }

    static let requiredCapabilities: [(Int32, String, String)] = [
        (KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "guest RAM"),
        (KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", "the in-kernel interrupt controllers"),
        (KVM_CAP_PIT2, "KVM_CAP_PIT2", "the in-kernel timer (PIT)"),
        (KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", "x86 real-mode support"),
        (KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", "setting the guest's CPUID"),
        (KVM_CAP_IRQFD, "KVM_CAP_IRQFD", "delivering device interrupts"),
        (KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD", "device notifications"),
        (KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", "stopping vCPUs cleanly"),
    ]

    /// The API version the kernel reports.
    public var apiVersion: Int32 { svm_ioctl_int(fd.rawValue, SVM_KVM_GET_API_VERSION, 0) }

    /// `KVM_CHECK_EXTENSION`: 0 when absent, otherwise a capability-specific value.
    public func checkExtension(_ capability: Int32) -> Int32 {
        max(0, svm_ioctl_int(fd.rawValue, SVM_KVM_CHECK_EXTENSION, UInt(capability)))
    }

    /// Whether the host can give guests the TSC-deadline LAPIC timer.
    public var hasTSCDeadlineTimer: Bool { checkExtension(KVM_CAP_TSC_DEADLINE_TIMER) > 0 }

    /// The most vCPUs KVM recommends per VM.
    public var recommendedVCPUs: Int { Int(checkExtension(KVM_CAP_NR_VCPUS)) }

    /// The CPUID entries KVM can present to a guest. The corresponding ioctl is `KVM_GET_SUPPORTED_CPUID`.
    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        var capacity = 128
        while true {
            let buffer = CPUIDBuffer(capacity: capacity)
            let result = svm_ioctl_ptr(fd.rawValue, SVM_KVM_GET_SUPPORTED_CPUID, buffer.pointer)
            if result == 0 { return buffer.entries }
            if errno == E2BIG && capacity < 4096 {
                capacity *= 2
                continue
            }
            throw .system(SystemError("KVM_GET_SUPPORTED_CPUID", errno: errno))
        }
    }

    /// Creates a VM. The corresponding ioctl is `KVM_CREATE_VM`.
    public func createVM() throws(KVMError) -> VirtualMachine {
        let raw = svm_ioctl_int(fd.rawValue, SVM_KVM_CREATE_VM, 0)
        guard raw >= 0 else { throw .system(SystemError("KVM_CREATE_VM", errno: errno)) }
        return VirtualMachine(fd: FileDescriptor(owning: raw), kvm: self)
    }
}

/// A `struct kvm_cpuid2` with room for `capacity` entries, in a raw buffer
/// because the struct ends in a flexible array.
struct CPUIDBuffer: ~Copyable {
    let pointer: UnsafeMutableRawPointer
    let capacity: Int
    static let entrySize = MemoryLayout<kvm_cpuid_entry2>.stride

    init(capacity: Int) {
        self.capacity = capacity
        let size = Int(svm_sizeof_kvm_cpuid2()) + capacity * CPUIDBuffer.entrySize
        pointer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        pointer.assumingMemoryBound(to: kvm_cpuid2.self).pointee.nent = UInt32(capacity)
    }

    init(entries: [CPUIDEntry]) {
        self.init(capacity: entries.count)
        let base = pointer + Int(svm_sizeof_kvm_cpuid2())
        for (i, entry) in entries.enumerated() {
            var raw = kvm_cpuid_entry2()
            raw.function = entry.function
            raw.index = entry.index
            raw.flags = entry.flags
            raw.eax = entry.eax
            raw.ebx = entry.ebx
            raw.ecx = entry.ecx
            raw.edx = entry.edx
            (base + i * CPUIDBuffer.entrySize).storeBytes(of: raw, as: kvm_cpuid_entry2.self)
        }
    }

    var entries: [CPUIDEntry] {
        let count = Int(pointer.assumingMemoryBound(to: kvm_cpuid2.self).pointee.nent)
        let base = pointer + Int(svm_sizeof_kvm_cpuid2())
        return (0..<min(count, capacity)).map { i in
            let raw = (base + i * CPUIDBuffer.entrySize).load(as: kvm_cpuid_entry2.self)
            return CPUIDEntry(
                function: raw.function, index: raw.index, flags: raw.flags,
                eax: raw.eax, ebx: raw.ebx, ecx: raw.ecx, edx: raw.edx)
        }
    }

    deinit { pointer.deallocate() }
}
