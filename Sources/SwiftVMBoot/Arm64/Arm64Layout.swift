import SwiftVMMemory

/// The aarch64 guest physical layout, Firecracker's in outline.
///
/// | address | use |
/// | --- | --- |
/// | below 0x3fff0000 | GIC ITS, then one 128 KiB redistributor frame pair per vCPU |
/// | 0x3fff0000 | GICv3 distributor (64 KiB), ending at 1 GiB |
/// | 0x40000000 | boot timer window (4 KiB) |
/// | 0x40001000 | PL031 RTC |
/// | 0x40002000 | 16550 UART |
/// | 0x40003000 | virtio-mmio windows, 4 KiB each, up to 2 GiB |
/// | 0x80000000 | RAM; the kernel Image at its start + text_offset |
/// | RAM end - 2 MiB | the device tree (at most 2 MiB, in its own 2 MiB block) |
///
/// Interrupts are SPI numbers as the device tree writes them (INTID - 32);
/// KVM's irqfd GSI for an SPI is the same number.
public enum Arm64Layout {
    /// RAM starts at 2 GiB (Arm's "Principles of ARM Memory Maps", DEN0001C;
    /// Firecracker's DRAM_MEM_START).
    public static let ramStart = GuestAddress(0x8000_0000)
    /// The most RAM the layout describes: up to 1 TiB of physical address space.
    public static let maxRAMSize: UInt64 = 0xff_8000_0000

    /// Device windows start at 1 GiB; the GIC sits just below.
    public static let mmioStart = GuestAddress(0x4000_0000)
    /// One MMIO device window (a virtio-mmio transport needs 0x200 bytes).
    public static let deviceWindowSize: UInt64 = 0x1000
    public static let bootTimer = GuestAddress(0x4000_0000)
    public static let rtc = GuestAddress(0x4000_1000)
    public static let serial = GuestAddress(0x4000_2000)
    public static let firstVirtio = GuestAddress(0x4000_3000)

    /// GICv3 frame sizes: KVM_VGIC_V3_DIST_SIZE, KVM_VGIC_V3_REDIST_SIZE and
    /// KVM_VGIC_V3_ITS_SIZE in arch/arm64/include/uapi/asm/kvm.h.
    public static let gicDistributorSize: UInt64 = 0x1_0000
    public static let gicRedistributorSizePerVCPU: UInt64 = 0x2_0000
    public static let gicITSSize: UInt64 = 0x2_0000

    /// The distributor ends where the device windows begin.
    public static let gicDistributor = GuestAddress(mmioStart.rawValue - gicDistributorSize)

    /// The redistributors, one frame pair per vCPU, end at the distributor.
    public static func gicRedistributors(vcpuCount: Int) -> (base: GuestAddress, size: UInt64) {
        let size = UInt64(vcpuCount) * gicRedistributorSizePerVCPU
        return (GuestAddress(gicDistributor.rawValue - size), size)
    }

    /// The ITS sits below the redistributors.
    public static func gicITS(vcpuCount: Int) -> GuestAddress {
        GuestAddress(gicRedistributors(vcpuCount: vcpuCount).base.rawValue - gicITSSize)
    }

    /// KVM's arm64 limit (KVM_MAX_VCPUS); the GIC frames for this many still
    /// fit below 1 GiB.
    public static let maxVCPUs = 512

    /// Interrupt lines the vGIC gets (KVM_DEV_ARM_VGIC_GRP_NR_IRQS): a
    /// multiple of 32, counting the 32 SGIs and PPIs, so 96 SPIs.
    public static let gicInterruptCount: UInt32 = 128
    public static var spiCount: UInt32 { gicInterruptCount - 32 }

    public static let serialIRQ: UInt32 = 0
    public static let rtcIRQ: UInt32 = 1
    public static let firstVirtioIRQ: UInt32 = 2
    /// How many virtio-mmio devices the SPIs leave room for.
    public static var maxVirtioDevices: Int { Int(spiCount - firstVirtioIRQ) }

    /// Window and SPI of virtio-mmio device `index` (0-based).
    public static func virtio(_ index: Int) -> Arm64MMIODevice {
        Arm64MMIODevice(
            base: GuestAddress(firstVirtio.rawValue + UInt64(index) * deviceWindowSize),
            size: deviceWindowSize, irq: firstVirtioIRQ + UInt32(index))
    }

    /// The device tree may be at most 2 MiB (Documentation/arch/arm64/booting.rst).
    public static let fdtMaxSize: UInt64 = 0x20_0000
    /// The kernel Image goes `text_offset` bytes above a 2 MiB-aligned base (booting.rst).
    public static let kernelAlignment: UInt64 = 0x20_0000

    /// Where the device tree goes: the last 2 MiB-aligned 2 MiB block of RAM,
    /// so the kernel's early block mapping of it covers nothing else; the
    /// start of RAM when there is less than that.
    public static func fdtAddress(memorySize: UInt64) -> GuestAddress {
        let end = ramStart.rawValue + memorySize
        guard memorySize >= fdtMaxSize else { return ramStart }
        let block = (end - fdtMaxSize) & ~(kernelAlignment - 1)
        return GuestAddress(max(block, ramStart.rawValue))
    }

    /// Where an initrd of `size` bytes goes: page-aligned, just below the
    /// device tree. Nil when it does not fit above `kernelEnd`.
    public static func initrdAddress(size: UInt64, memorySize: UInt64, kernelEnd: GuestAddress) -> GuestAddress? {
        let limit = fdtAddress(memorySize: memorySize).rawValue
        let pages = (size + 0xfff) & ~UInt64(0xfff)
        guard pages <= limit, limit - pages >= kernelEnd.rawValue else { return nil }
        return GuestAddress(limit - pages)
    }

    /// The MPIDR_EL1 affinity KVM gives vCPU `index` by default: Aff0 holds
    /// the low 4 bits (16 CPUs per cluster, the GICv3 SGI target-list width),
    /// Aff1 the next 8, Aff2 the 8 above (arch/arm64/kvm/sys_regs.c, reset_mpidr).
    public static func mpidr(vcpu index: Int) -> UInt64 {
        let id = UInt64(index)
        return (id & 0xf) | ((id >> 4) & 0xff) << 8 | ((id >> 12) & 0xff) << 16
    }
}

/// A memory-mapped device the guest finds through the device tree.
public struct Arm64MMIODevice: Equatable, Sendable {
    public var base: GuestAddress
    public var size: UInt64
    /// The SPI number (INTID - 32), as the device tree's `interrupts` cell holds it.
    public var irq: UInt32

    public init(base: GuestAddress, size: UInt64, irq: UInt32) {
        self.base = base
        self.size = size
        self.irq = irq
    }
}
