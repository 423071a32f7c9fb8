import Glibc
internal import CSwiftVM

/// A KVM virtual machine: memory slots, the in-kernel interrupt controllers,
/// interrupt and notification routing, and its vCPUs.
public final class VirtualMachine: Sendable {
    let fd: FileDescriptor
    public let kvm: KVM

    init(fd: FileDescriptor, kvm: KVM) {
        self.fd = fd
        self.kvm = kvm
    }

    private func ioctl(_ name: String, _ request: UInt, _ argument: UnsafeMutableRawPointer) throws(KVMError) {
        if svm_ioctl_ptr(fd.rawValue, request, argument) < 0 {
            throw .system(SystemError(name, errno: errno))
        }
    }

    /// Places the three pages KVM needs for real-mode emulation (Intel). The
    /// corresponding ioctl is `KVM_SET_TSS_ADDR`.
    public func setTSSAddress(_ address: UInt64) throws(KVMError) {
        if svm_ioctl_int(fd.rawValue, SVM_KVM_SET_TSS_ADDR, UInt(address)) < 0 {
            throw .system(SystemError("KVM_SET_TSS_ADDR", errno: errno))
        }
    }

    /// Creates the in-kernel PIC pair, IOAPIC and per-vCPU LAPICs. The
    /// corresponding ioctl is `KVM_CREATE_IRQCHIP`.
    public func createIRQChip() throws(KVMError) {
        if svm_ioctl_int(fd.rawValue, SVM_KVM_CREATE_IRQCHIP, 0) < 0 {
            throw .system(SystemError("KVM_CREATE_IRQCHIP", errno: errno))
        }
    }

    /// Creates the in-kernel i8254 PIT; the PC speaker port is a dummy. The
    /// corresponding ioctl is `KVM_CREATE_PIT2`.
    public func createPIT() throws(KVMError) {
        var config = kvm_pit_config()
        config.flags = UInt32(KVM_PIT_SPEAKER_DUMMY)
        try ioctl("KVM_CREATE_PIT2", SVM_KVM_CREATE_PIT2, &config)
    }

    /// Maps `size` bytes of host memory at `host` into guest-physical space at
    /// `guestAddress`, as memory slot `slot`. The corresponding ioctl is
    /// `KVM_SET_USER_MEMORY_REGION`.
    public func setMemoryRegion(slot: UInt32, guestAddress: UInt64, size: UInt64, host: UnsafeMutableRawPointer) throws(KVMError) {
        var region = kvm_userspace_memory_region()
        region.slot = slot
        region.flags = 0
        region.guest_phys_addr = guestAddress
        region.memory_size = size
        region.userspace_addr = UInt64(UInt(bitPattern: host))
        try ioctl("KVM_SET_USER_MEMORY_REGION", SVM_KVM_SET_USER_MEMORY_REGION, &region)
    }

    /// Makes every signal of `eventfd` inject an edge on `gsi`. The
    /// corresponding ioctl is `KVM_IRQFD`.
    public func registerIRQFD(_ eventfd: EventFD, gsi: UInt32) throws(KVMError) {
        var irqfd = kvm_irqfd()
        irqfd.fd = UInt32(bitPattern: eventfd.rawValue)
        irqfd.gsi = gsi
        try ioctl("KVM_IRQFD", SVM_KVM_IRQFD, &irqfd)
    }

    /// Makes guest writes of `length` bytes to MMIO `address` signal `eventfd`
    /// in the kernel instead of exiting to the VMM. The corresponding ioctl is
    /// `KVM_IOEVENTFD`.
    public func registerIOEventFD(_ eventfd: EventFD, mmioAddress: UInt64, length: UInt32, matching value: UInt64? = nil) throws(KVMError) {
        var ioeventfd = kvm_ioeventfd()
        ioeventfd.addr = mmioAddress
        ioeventfd.len = length
        ioeventfd.fd = eventfd.rawValue
        if let value {
            ioeventfd.datamatch = value
            ioeventfd.flags = UInt32(1 << kvm_ioeventfd_flag_nr_datamatch)
        }
        try ioctl("KVM_IOEVENTFD", SVM_KVM_IOEVENTFD, &ioeventfd)
    }

    /// Creates vCPU `id` and maps its shared run structure. The corresponding
    /// ioctl is `KVM_CREATE_VCPU`.
    public func createVCPU(id: Int) throws(KVMError) -> VCPU {
        let raw = svm_ioctl_int(fd.rawValue, SVM_KVM_CREATE_VCPU, UInt(id))
        guard raw >= 0 else { throw .system(SystemError("KVM_CREATE_VCPU \(id)", errno: errno)) }
        let vcpuFD = FileDescriptor(owning: raw)
        let mapping = mmap(nil, kvm.vcpuMapSize, PROT_READ | PROT_WRITE, MAP_SHARED, raw, 0)
        guard let mapping, mapping != MAP_FAILED else {
            throw .system(SystemError("mmap kvm_run of vCPU \(id)", errno: errno))
        }
        return VCPU(id: id, fd: vcpuFD, run: mapping, runSize: kvm.vcpuMapSize)
    }
}
