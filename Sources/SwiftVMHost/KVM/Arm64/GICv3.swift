#if arch(arm64)
import Glibc
internal import CSwiftVM

/// The in-kernel GICv3 (and its ITS) of an arm64 VM. Keeping this object
/// keeps the device file descriptors open.
public final class GICv3: Sendable {
    let distributor: FileDescriptor
    let its: FileDescriptor?

    init(distributor: FileDescriptor, its: FileDescriptor?) {
        self.distributor = distributor
        self.its = its
    }
}

extension VirtualMachine {
    /// Creates the in-kernel GICv3 at the addresses the device tree
    /// describes, then its ITS when `its` is given, and initialises both
    /// (Documentation/virt/kvm/devices/arm-vgic-v3.rst and arm-vgic-its.rst).
    ///
    /// Call it after every vCPU exists: `KVM_DEV_ARM_VGIC_CTRL_INIT` sizes the
    /// redistributors by the vCPU count. `interruptCount` counts SGIs and PPIs
    /// too, so it is a multiple of 32 above 32. The corresponding ioctls are
    /// `KVM_CREATE_DEVICE` and `KVM_SET_DEVICE_ATTR`.
    public func createGICv3(
        distributor: UInt64, redistributors: UInt64, its: UInt64?, interruptCount: UInt32
    ) throws(KVMError) -> GICv3 {
        let gic = try createDevice(type: Arm64KVM.deviceTypeVGICv3, name: "GICv3")
        try setAddress(gic, Arm64KVM.addressTypeDistributor, distributor, what: "GICv3 distributor")
        try setAddress(gic, Arm64KVM.addressTypeRedistributor, redistributors, what: "GICv3 redistributors")
        var count = interruptCount
        try setAttribute(gic, group: Arm64KVM.vgicGroupInterruptCount, attribute: 0, value: &count, what: "GICv3 interrupt count")
        try initialise(gic, what: "GICv3")

        var itsDevice: FileDescriptor?
        if let its {
            let device = try createDevice(type: Arm64KVM.deviceTypeVGICITS, name: "GICv3 ITS")
            try setAddress(device, Arm64KVM.addressTypeITS, its, what: "GICv3 ITS")
            try initialise(device, what: "GICv3 ITS")
            itsDevice = device
        }
        return GICv3(distributor: gic, its: itsDevice)
    }

    private func createDevice(type: UInt32, name: String) throws(KVMError) -> FileDescriptor {
        var request = kvm_create_device()
        request.type = type
        if svm_ioctl_ptr(fd.rawValue, Arm64KVM.createDevice, &request) < 0 {
            throw .system(SystemError("KVM_CREATE_DEVICE \(name)", errno: errno))
        }
        return FileDescriptor(owning: Int32(bitPattern: request.fd))
    }

    private func setAddress(_ device: FileDescriptor, _ type: UInt64, _ address: UInt64, what: String) throws(KVMError) {
        var value = address
        try setAttribute(device, group: Arm64KVM.vgicGroupAddress, attribute: type, value: &value, what: "\(what) address")
    }

    private func initialise(_ device: FileDescriptor, what: String) throws(KVMError) {
        var attribute = kvm_device_attr()
        attribute.group = Arm64KVM.vgicGroupControl
        attribute.attr = Arm64KVM.vgicControlInit
        if svm_ioctl_ptr(device.rawValue, Arm64KVM.setDeviceAttr, &attribute) < 0 {
            throw .system(SystemError("KVM_SET_DEVICE_ATTR \(what) init", errno: errno))
        }
    }

    /// Sets an attribute whose value KVM reads from `value`.
    private func setAttribute<T>(
        _ device: FileDescriptor, group: UInt32, attribute: UInt64, value: inout T, what: String
    ) throws(KVMError) {
        let result = withUnsafeMutablePointer(to: &value) { pointer in
            var request = kvm_device_attr()
            request.group = group
            request.attr = attribute
            request.addr = UInt64(UInt(bitPattern: pointer))
            return svm_ioctl_ptr(device.rawValue, Arm64KVM.setDeviceAttr, &request)
        }
        if result < 0 { throw .system(SystemError("KVM_SET_DEVICE_ATTR \(what)", errno: errno)) }
    }
}
#endif
