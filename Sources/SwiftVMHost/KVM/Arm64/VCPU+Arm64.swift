#if arch(arm64)
import Glibc
internal import CSwiftVM

/// The CPU model and features a vCPU is initialised with (`struct kvm_vcpu_init`).
public struct Arm64VCPUInit: Equatable, Sendable {
    /// A KVM_ARM_TARGET_* value; take it from ``VirtualMachine/preferredArm64Target()``.
    public var target: UInt32
    /// Feature bitmap words; bit n of word n / 32 is feature n.
    public var features: [UInt32]

    /// `features` has up to seven words (`__u32 features[7]`); missing ones are zero.
    public init(target: UInt32, features: [UInt32] = Array(repeating: 0, count: 7)) {
        self.target = target
        self.features = features
    }

    /// The eight 32-bit words of `struct kvm_vcpu_init`.
    var words: [UInt32] {
        [target] + (features + Array(repeating: 0, count: Arm64KVM.vcpuFeatureWords)).prefix(Arm64KVM.vcpuFeatureWords)
    }

    mutating func enable(_ feature: UInt32) {
        while features.count < Arm64KVM.vcpuFeatureWords { features.append(0) }
        features[Int(feature / 32)] |= 1 << (feature % 32)
    }
}

extension VirtualMachine {
    /// The CPU target KVM recommends for this host. The corresponding ioctl
    /// is `KVM_ARM_PREFERRED_TARGET` (on the VM).
    public func preferredArm64Target() throws(KVMError) -> Arm64VCPUInit {
        var words = [UInt32](repeating: 0, count: 1 + Arm64KVM.vcpuFeatureWords)
        let result = words.withUnsafeMutableBytes { svm_ioctl_ptr(fd.rawValue, Arm64KVM.preferredTarget, $0.baseAddress) }
        guard result >= 0 else { throw .system(SystemError("KVM_ARM_PREFERRED_TARGET", errno: errno)) }
        return Arm64VCPUInit(target: words[0], features: Array(words[1...]))
    }
}

extension VCPU {
    /// Initialises the vCPU as `target` with PSCI 0.2 (so the guest can
    /// start and stop CPUs through HVC calls). Secondary vCPUs start powered
    /// off and wait for the boot CPU's PSCI CPU_ON. The corresponding ioctl
    /// is `KVM_ARM_VCPU_INIT`; it must precede the first `KVM_RUN`.
    public func initArm64(_ target: Arm64VCPUInit, poweredOff: Bool) throws(KVMError) {
        var request = target
        request.enable(Arm64KVM.featurePSCI02)
        if poweredOff { request.enable(Arm64KVM.featurePowerOff) }
        var words = request.words
        let result = words.withUnsafeMutableBytes { svm_ioctl_ptr(fd.rawValue, Arm64KVM.vcpuInit, $0.baseAddress) }
        if result < 0 { throw .system(SystemError("KVM_ARM_VCPU_INIT (vCPU \(id))", errno: errno)) }
    }

    /// Writes one 64-bit register. The corresponding ioctl is `KVM_SET_ONE_REG`.
    func setOneRegister(_ id: UInt64, _ value: UInt64, name: String) throws(KVMError) {
        var storage = value
        try withUnsafeMutablePointer(to: &storage) { (pointer) throws(KVMError) in
            var register = kvm_one_reg()
            register.id = id
            register.addr = UInt64(UInt(bitPattern: pointer))
            try ioctl("KVM_SET_ONE_REG \(name)", Arm64KVM.setOneReg, &register)
        }
    }

    /// The boot CPU's state at the kernel's first instruction
    /// (Documentation/arch/arm64/booting.rst): PC at the Image, X0 holding the
    /// device tree's physical address, X1-X3 zero, EL1h with D, A, I and F
    /// masked. The MMU and caches are already off after `KVM_ARM_VCPU_INIT`.
    public func setArm64BootRegisters(entry: UInt64, deviceTree: UInt64) throws(KVMError) {
        try setOneRegister(Arm64KVM.pstate, Arm64KVM.bootPSTATE, name: "PSTATE")
        try setOneRegister(Arm64KVM.pc, entry, name: "PC")
        try setOneRegister(Arm64KVM.x(0), deviceTree, name: "X0")
        for n in 1...3 { try setOneRegister(Arm64KVM.x(n), 0, name: "X\(n)") }
    }
}
#endif
