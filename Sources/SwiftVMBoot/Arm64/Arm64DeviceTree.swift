import SwiftVMMemory

/// Everything the aarch64 guest learns from its device tree: RAM, CPUs,
/// the interrupt controller, and where each device sits.
///
/// The defaults follow ``Arm64Layout``; a VMM normally sets only the sizes,
/// the command line, the initrd and the number of virtio devices.
public struct Arm64MachineDescription: Sendable {
    public var memoryStart: GuestAddress = Arm64Layout.ramStart
    public var memorySize: UInt64
    public var vcpuCount: Int
    /// The kernel command line, `/chosen/bootargs`.
    public var bootargs: String
    /// Where the loader put the initrd; `/chosen/linux,initrd-start` and `-end`.
    public var initrd: (start: GuestAddress, size: UInt64)?
    public var virtioDevices: [Arm64MMIODevice]
    public var serial = Arm64MMIODevice(base: Arm64Layout.serial, size: Arm64Layout.deviceWindowSize, irq: Arm64Layout.serialIRQ)
    public var rtc = Arm64MMIODevice(base: Arm64Layout.rtc, size: Arm64Layout.deviceWindowSize, irq: Arm64Layout.rtcIRQ)
    public var gicDistributor: GuestAddress = Arm64Layout.gicDistributor
    /// The first redistributor frame; there is one 128 KiB frame pair per vCPU.
    /// `init` places it (and the ITS) for `vcpuCount`: change them together.
    public var gicRedistributors: GuestAddress
    public var gicITS: GuestAddress

    public init(
        memorySize: UInt64, vcpuCount: Int, bootargs: String,
        initrd: (start: GuestAddress, size: UInt64)? = nil, virtioDevices: [Arm64MMIODevice] = []
    ) {
        self.memorySize = memorySize
        self.vcpuCount = vcpuCount
        self.bootargs = bootargs
        self.initrd = initrd
        self.virtioDevices = virtioDevices
        self.gicRedistributors = Arm64Layout.gicRedistributors(vcpuCount: vcpuCount).base
        self.gicITS = Arm64Layout.gicITS(vcpuCount: vcpuCount)
    }

    /// The flattened device tree blob for this machine.
    public func deviceTree() throws(Arm64DeviceTreeError) -> [UInt8] {
        try validate()
        do throws(FDTError) {
            var builder = Arm64DeviceTreeBuilder(machine: self)
            return try builder.build()
        } catch {
            throw .fdt(error)
        }
    }

    func validate() throws(Arm64DeviceTreeError) {
        guard (1...Arm64Layout.maxVCPUs).contains(vcpuCount) else { throw .vcpuCount(vcpuCount) }
        guard memorySize > 0, memorySize <= Arm64Layout.maxRAMSize else { throw .memorySize(memorySize) }
        let named = [("serial port", serial), ("RTC", rtc)] + virtioDevices.enumerated().map { ("virtio device \($0.offset)", $0.element) }
        for (name, device) in named where device.irq >= Arm64Layout.spiCount {
            throw .interruptOutOfRange(device: name, irq: device.irq)
        }
        if let initrd {
            let ramEnd = memoryStart.rawValue + memorySize
            let (end, overflow) = initrd.start.rawValue.addingReportingOverflow(initrd.size)
            guard initrd.start >= memoryStart, !overflow, end <= ramEnd else {
                throw .initrdOutsideRAM(start: initrd.start, size: initrd.size)
            }
        }
    }
}

/// Why an aarch64 device tree could not be built.
public enum Arm64DeviceTreeError: Error, Equatable, Sendable, CustomStringConvertible {
    case vcpuCount(Int)
    case memorySize(UInt64)
    /// `irq` is not below the vGIC's SPI count.
    case interruptOutOfRange(device: String, irq: UInt32)
    case initrdOutsideRAM(start: GuestAddress, size: UInt64)
    /// The writer refused a node or property (for instance a NUL in the command line).
    case fdt(FDTError)

    public var description: String {
        switch self {
        case .vcpuCount(let count):
            "an aarch64 guest needs 1 to \(Arm64Layout.maxVCPUs) vCPUs, not \(count)"
        case .memorySize(let size):
            "an aarch64 guest needs between 1 byte and \(describeByteCount(Arm64Layout.maxRAMSize)) of RAM, not \(describeByteCount(size))"
        case .interruptOutOfRange(let device, let irq):
            "the \(device) uses SPI \(irq), but the interrupt controller has only \(Arm64Layout.spiCount) SPIs (0 to \(Arm64Layout.spiCount - 1))"
        case .initrdOutsideRAM(let start, let size):
            "the initrd at \(start) (\(describeByteCount(size))) is not inside guest RAM"
        case .fdt(let error):
            error.description
        }
    }
}

/// Writes the nodes of an ``Arm64MachineDescription`` in order.
struct Arm64DeviceTreeBuilder {
    let machine: Arm64MachineDescription
    var fdt = FDTWriter()
    let gicPhandle: UInt32
    let clockPhandle: UInt32

    // The GIC binding's first `interrupts` cell (arm,gic-v3.yaml) and the
    // trigger flags of include/dt-bindings/interrupt-controller/irq.h.
    static let spi: UInt32 = 0
    static let ppi: UInt32 = 1
    static let edgeRising: UInt32 = 1
    static let levelHigh: UInt32 = 4

    /// The APB clock the PL031 names; 24 MHz, as Firecracker and QEMU's virt use.
    static let apbClockHz: UInt32 = 24_000_000
    /// The 8250's input clock: the PC's 1.8432 MHz crystal, which makes divisor 1 = 115200 baud.
    static let uartClockHz: UInt32 = 1_843_200

    init(machine: Arm64MachineDescription) {
        self.machine = machine
        gicPhandle = fdt.allocatePhandle()
        clockPhandle = fdt.allocatePhandle()
    }

    static func unitAddress(_ address: UInt64) -> String { String(address, radix: 16) }

    var serialPath: String { "/uart@" + Self.unitAddress(machine.serial.base.rawValue) }

    mutating func build() throws(FDTError) -> [UInt8] {
        try fdt.beginNode("")
        try fdt.property("compatible", string: "linux,dummy-virt")
        try fdt.property("#address-cells", u32: 2)
        try fdt.property("#size-cells", u32: 2)
        try fdt.property("interrupt-parent", u32: gicPhandle)
        try cpus()
        try memory()
        try psci()
        try gic()
        try timer()
        try clock()
        try uart()
        try rtc()
        for device in machine.virtioDevices.sorted(by: { $0.base < $1.base }) {
            try virtio(device)
        }
        try chosen()
        try fdt.endNode()
        return try fdt.finish()
    }

    /// Documentation/devicetree/bindings/arm/cpus.yaml: with #address-cells 2,
    /// `reg` is the MPIDR affinity (Aff3 in the high cell, Aff2..Aff0 low).
    mutating func cpus() throws(FDTError) {
        try fdt.beginNode("cpus")
        try fdt.property("#address-cells", u32: 2)
        try fdt.property("#size-cells", u32: 0)
        for index in 0..<machine.vcpuCount {
            let mpidr = Arm64Layout.mpidr(vcpu: index)
            try fdt.beginNode("cpu@" + Self.unitAddress(mpidr))
            try fdt.property("device_type", string: "cpu")
            try fdt.property("compatible", string: "arm,arm-v8")
            try fdt.property("enable-method", string: "psci")
            try fdt.property("reg", u64: mpidr)
            try fdt.endNode()
        }
        try fdt.endNode()
    }

    mutating func memory() throws(FDTError) {
        try fdt.beginNode("memory@" + Self.unitAddress(machine.memoryStart.rawValue))
        try fdt.property("device_type", string: "memory")
        try fdt.property("reg", u64Array: [machine.memoryStart.rawValue, machine.memorySize])
        try fdt.endNode()
    }

    /// KVM implements PSCI through HVC when a vCPU has the PSCI 0.2 feature;
    /// newer hosts answer PSCI_VERSION with 1.x, older ones with 0.2.
    mutating func psci() throws(FDTError) {
        try fdt.beginNode("psci")
        try fdt.property("compatible", strings: ["arm,psci-1.0", "arm,psci-0.2"])
        try fdt.property("method", string: "hvc")
        try fdt.endNode()
    }

    /// arm,gic-v3.yaml: `reg` is the distributor then the redistributor
    /// range; the ITS is a child, so the node carries #address-cells,
    /// #size-cells and an empty `ranges`.
    mutating func gic() throws(FDTError) {
        let distributor = machine.gicDistributor.rawValue
        let redistributorSize = UInt64(machine.vcpuCount) * Arm64Layout.gicRedistributorSizePerVCPU
        try fdt.beginNode("intc@" + Self.unitAddress(distributor))
        try fdt.property("compatible", string: "arm,gic-v3")
        try fdt.property("interrupt-controller")
        try fdt.property("#interrupt-cells", u32: 3)
        try fdt.property("#address-cells", u32: 2)
        try fdt.property("#size-cells", u32: 2)
        try fdt.property("ranges")
        try fdt.property("reg", u64Array: [
            distributor, Arm64Layout.gicDistributorSize,
            machine.gicRedistributors.rawValue, redistributorSize,
        ])
        // The virtual interface maintenance interrupt: PPI 9.
        try fdt.property("interrupts", u32Array: [Self.ppi, 9, Self.levelHigh])
        try fdt.property("phandle", u32: gicPhandle)

        let its = machine.gicITS.rawValue
        try fdt.beginNode("its@" + Self.unitAddress(its))
        try fdt.property("compatible", string: "arm,gic-v3-its")
        try fdt.property("msi-controller")
        try fdt.property("#msi-cells", u32: 1)
        try fdt.property("reg", u64Array: [its, Arm64Layout.gicITSSize])
        try fdt.endNode()
        try fdt.endNode()
    }

    /// arm,arch_timer.yaml: secure physical, non-secure physical, virtual
    /// and hypervisor timer PPIs (INTIDs 29, 30, 27, 26), in that order.
    mutating func timer() throws(FDTError) {
        try fdt.beginNode("timer")
        try fdt.property("compatible", string: "arm,armv8-timer")
        try fdt.property("always-on")
        try fdt.property("interrupts", u32Array: [13, 14, 11, 10].flatMap { [Self.ppi, $0, Self.levelHigh] })
        try fdt.endNode()
    }

    /// The fixed clock the PL031 (an AMBA PrimeCell) must name as `apb_pclk`.
    mutating func clock() throws(FDTError) {
        try fdt.beginNode("apb-pclk")
        try fdt.property("compatible", string: "fixed-clock")
        try fdt.property("#clock-cells", u32: 0)
        try fdt.property("clock-frequency", u32: Self.apbClockHz)
        try fdt.property("clock-output-names", string: "clk24mhz")
        try fdt.property("phandle", u32: clockPhandle)
        try fdt.endNode()
    }

    mutating func uart() throws(FDTError) {
        let serial = machine.serial
        try fdt.beginNode("uart@" + Self.unitAddress(serial.base.rawValue))
        try fdt.property("compatible", string: "ns16550a")
        try fdt.property("reg", u64Array: [serial.base.rawValue, serial.size])
        try fdt.property("interrupts", u32Array: [Self.spi, serial.irq, Self.edgeRising])
        try fdt.property("clock-frequency", u32: Self.uartClockHz)
        try fdt.endNode()
    }

    /// arm,pl031.yaml; the PrimeCell ID registers are read through `apb_pclk`.
    mutating func rtc() throws(FDTError) {
        let rtc = machine.rtc
        try fdt.beginNode("rtc@" + Self.unitAddress(rtc.base.rawValue))
        try fdt.property("compatible", strings: ["arm,pl031", "arm,primecell"])
        try fdt.property("reg", u64Array: [rtc.base.rawValue, rtc.size])
        try fdt.property("interrupts", u32Array: [Self.spi, rtc.irq, Self.levelHigh])
        try fdt.property("clocks", u32: clockPhandle)
        try fdt.property("clock-names", string: "apb_pclk")
        try fdt.endNode()
    }

    /// virtio,mmio binding; `dma-coherent` because guest RAM is ordinary
    /// cacheable memory shared with the VMM, with no non-coherent DMA in between.
    mutating func virtio(_ device: Arm64MMIODevice) throws(FDTError) {
        try fdt.beginNode("virtio_mmio@" + Self.unitAddress(device.base.rawValue))
        try fdt.property("compatible", string: "virtio,mmio")
        try fdt.property("reg", u64Array: [device.base.rawValue, device.size])
        try fdt.property("interrupts", u32Array: [Self.spi, device.irq, Self.edgeRising])
        try fdt.property("dma-coherent")
        try fdt.endNode()
    }

    mutating func chosen() throws(FDTError) {
        try fdt.beginNode("chosen")
        try fdt.property("bootargs", string: machine.bootargs)
        try fdt.property("stdout-path", string: serialPath)
        if let initrd = machine.initrd {
            try fdt.property("linux,initrd-start", u64: initrd.start.rawValue)
            try fdt.property("linux,initrd-end", u64: initrd.start.rawValue + initrd.size)
        }
        try fdt.endNode()
    }
}
