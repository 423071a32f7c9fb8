
#if arch(arm64)
// The arm64 KVM constants swiftvm needs that the C shim does not export.
// The ioctl request macros (_IOW/_IOR) cannot be imported into Swift, and the
// arm64 values live in <asm/kvm.h>, so each is written out here with the
// header it comes from. The ioctl numbers were checked against this x86_64
// host's <linux/kvm.h>: the generic _IOC encoding is the same on arm64.

/// arm64 KVM UAPI values, each with its source.
enum Arm64KVM {
    // MARK: ioctl numbers, asm-generic/ioctl.h: dir << 30 | size << 16 | type << 8 | nr

    private static let kvmio: UInt = 0xae  // KVMIO, linux/kvm.h
    private static let write: UInt = 1  // _IOC_WRITE
    private static let read: UInt = 2  // _IOC_READ

    private static func request(_ direction: UInt, _ number: UInt, size: UInt) -> UInt {
        direction << 30 | size << 16 | kvmio << 8 | number
    }

    /// KVM_ARM_VCPU_INIT = _IOW(KVMIO, 0xae, struct kvm_vcpu_init) = 0x4020aeae.
    static let vcpuInit = request(write, 0xae, size: UInt(vcpuInitSize))
    /// KVM_ARM_PREFERRED_TARGET = _IOR(KVMIO, 0xaf, struct kvm_vcpu_init) = 0x8020aeaf.
    static let preferredTarget = request(read, 0xaf, size: UInt(vcpuInitSize))
    /// KVM_SET_ONE_REG = _IOW(KVMIO, 0xac, struct kvm_one_reg) = 0x4010aeac.
    static let setOneReg = request(write, 0xac, size: 16)
    /// KVM_CREATE_DEVICE = _IOWR(KVMIO, 0xe0, struct kvm_create_device) = 0xc00caee0.
    static let createDevice = request(read | write, 0xe0, size: 12)
    /// KVM_SET_DEVICE_ATTR = _IOW(KVMIO, 0xe1, struct kvm_device_attr) = 0x4018aee1.
    static let setDeviceAttr = request(write, 0xe1, size: 24)

    // MARK: vCPU init, arch/arm64/include/uapi/asm/kvm.h

    /// struct kvm_vcpu_init { __u32 target; __u32 features[7]; }: 32 bytes.
    static let vcpuInitSize = 32
    static let vcpuFeatureWords = 7
    /// KVM_ARM_VCPU_POWER_OFF: the vCPU starts off and waits for PSCI CPU_ON.
    static let featurePowerOff: UInt32 = 0
    /// KVM_ARM_VCPU_PSCI_0_2: KVM answers PSCI 0.2+ calls (2 on arm64; 32-bit arm used 1).
    static let featurePSCI02: UInt32 = 2

    // MARK: register ids for KVM_SET_ONE_REG

    /// KVM_REG_ARM64, linux/kvm.h.
    static let regARM64: UInt64 = 0x6000_0000_0000_0000
    /// KVM_REG_SIZE_U64, linux/kvm.h.
    static let regSizeU64: UInt64 = 0x0030_0000_0000_0000
    /// KVM_REG_ARM_CORE = 0x0010 << KVM_REG_ARM_COPROC_SHIFT (16), asm/kvm.h.
    static let regARMCore: UInt64 = 0x0010 << 16

    /// KVM_REG_ARM_CORE_REG(name) is offsetof(struct kvm_regs, name) / 4;
    /// struct kvm_regs begins with struct user_pt_regs { __u64 regs[31];
    /// __u64 sp; __u64 pc; __u64 pstate; } (asm/ptrace.h).
    static func coreRegister(byteOffset: Int) -> UInt64 {
        regARM64 | regSizeU64 | regARMCore | UInt64(byteOffset / 4)
    }

    /// General-purpose register Xn.
    static func x(_ n: Int) -> UInt64 { coreRegister(byteOffset: n * 8) }
    static let pc = coreRegister(byteOffset: 32 * 8)
    static let pstate = coreRegister(byteOffset: 33 * 8)

    /// PSR_MODE_EL1h (0x5) with PSR_D_BIT (0x200), PSR_A_BIT (0x100),
    /// PSR_I_BIT (0x80) and PSR_F_BIT (0x40) set, from asm/ptrace.h:
    /// EL1 on SP_EL1 with every exception masked, as booting.rst requires.
    static let bootPSTATE: UInt64 = 0x3c5

    // MARK: vGIC, linux/kvm.h (device types) and asm/kvm.h (groups, attributes)

    /// KVM_DEV_TYPE_ARM_VGIC_V3 in enum kvm_device_type.
    static let deviceTypeVGICv3: UInt32 = 7
    /// KVM_DEV_TYPE_ARM_VGIC_ITS in enum kvm_device_type.
    static let deviceTypeVGICITS: UInt32 = 8
    /// KVM_DEV_ARM_VGIC_GRP_ADDR.
    static let vgicGroupAddress: UInt32 = 0
    /// KVM_DEV_ARM_VGIC_GRP_NR_IRQS.
    static let vgicGroupInterruptCount: UInt32 = 3
    /// KVM_DEV_ARM_VGIC_GRP_CTRL.
    static let vgicGroupControl: UInt32 = 4
    /// KVM_DEV_ARM_VGIC_CTRL_INIT.
    static let vgicControlInit: UInt64 = 0
    /// KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST, KVM_VGIC_ITS_ADDR_TYPE.
    static let addressTypeDistributor: UInt64 = 2
    static let addressTypeRedistributor: UInt64 = 3
    static let addressTypeITS: UInt64 = 4
}
#endif
