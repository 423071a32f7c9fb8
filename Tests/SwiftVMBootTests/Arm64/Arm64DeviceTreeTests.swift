import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

@Suite("Arm64DeviceTree")
struct Arm64DeviceTreeTests {
    static let memorySize: UInt64 = 256 << 20

    static func machine(vcpus: Int, devices: Int, initrd: Bool = true) -> Arm64MachineDescription {
        Arm64MachineDescription(
            memorySize: memorySize, vcpuCount: vcpus,
            bootargs: "keep_bootcon console=ttyS0 reboot=k panic=1",
            initrd: initrd ? (GuestAddress(0x8f00_0000), 0x12_3400) : nil,
            virtioDevices: (0..<devices).map(Arm64Layout.virtio))
    }

    /// dtc's own output; a warning means the tree breaks a rule dtc checks.
    static func decompile(_ machine: Arm64MachineDescription) throws -> String {
        let result = try DTC.decompile(try machine.deviceTree())
        #expect(result.status == 0, "dtc failed: \(result.diagnostics)")
        #expect(!result.diagnostics.contains("Warning"), "dtc warned: \(result.diagnostics)")
        #expect(!result.diagnostics.contains("ERROR"), "dtc errors: \(result.diagnostics)")
        return result.source
    }

    /// dtc prints a string list as `"a", "b"` or, in some versions, `"a\0b"`.
    static func hasStringList(_ source: String, _ property: String, _ items: [String]) -> Bool {
        let quoted = items.map { "\"\($0)\"" }.joined(separator: ", ")
        let joined = "\"" + items.joined(separator: "\\0") + "\""
        return source.contains("\(property) = \(quoted);") || source.contains("\(property) = \(joined);")
    }

    @Test(
        "dtc decodes the tree, without warnings, for 1, 2 and 32 vCPUs and 0, 1 and 8 virtio devices",
        .enabled(if: DTC.isAvailable, DTC.missingReason),
        arguments: [1, 2, 32], [0, 1, 8])
    func decodes(vcpus: Int, devices: Int) throws {
        let source = try Self.decompile(Self.machine(vcpus: vcpus, devices: devices))
        #expect(source.contains("compatible = \"linux,dummy-virt\";"))
        #expect(source.ranges(of: "cpu@").count == vcpus)
        #expect(source.ranges(of: "enable-method = \"psci\";").count == vcpus)
        #expect(source.ranges(of: "virtio_mmio@").count == devices)
        #expect(source.ranges(of: "compatible = \"virtio,mmio\";").count == devices)
        #expect(source.contains("memory@80000000 {"))
        #expect(source.contains("reg = <0x00 0x80000000 0x00 0x10000000>;"))
        #expect(source.contains("psci {"))
        #expect(Self.hasStringList(source, "compatible", ["arm,psci-1.0", "arm,psci-0.2"]))
        #expect(source.contains("method = \"hvc\";"))
        #expect(source.contains("intc@3fff0000 {"))
        #expect(source.contains("compatible = \"arm,gic-v3\";"))
        #expect(source.contains("compatible = \"arm,gic-v3-its\";"))
        #expect(source.contains("msi-controller;"))
        #expect(source.contains("timer {"))
        #expect(source.contains("compatible = \"arm,armv8-timer\";"))
        #expect(Self.hasStringList(source, "compatible", ["arm,pl031", "arm,primecell"]))
        #expect(source.contains("clock-names = \"apb_pclk\";"))
        #expect(source.contains("compatible = \"ns16550a\";"))
        #expect(source.contains("chosen {"))
        #expect(source.contains("bootargs = \"keep_bootcon console=ttyS0 reboot=k panic=1\";"))
        #expect(source.contains("stdout-path = \"/uart@40002000\";"))
        #expect(source.contains("linux,initrd-start = <0x00 0x8f000000>;"))
        #expect(source.contains("linux,initrd-end = <0x00 0x8f123400>;"))
    }

    @Test("the redistributor range grows with the vCPU count and ends at the distributor", arguments: [1, 2, 32])
    func redistributors(vcpus: Int) {
        let (base, size) = Arm64Layout.gicRedistributors(vcpuCount: vcpus)
        #expect(size == UInt64(vcpus) * 0x2_0000)
        #expect(base.rawValue + size == 0x3fff_0000)
        #expect(Arm64Layout.gicITS(vcpuCount: vcpus).rawValue + 0x2_0000 == base.rawValue)
    }

    @Test(
        "the GIC node's reg lists the distributor and the redistributor range",
        .enabled(if: DTC.isAvailable, DTC.missingReason), arguments: [1, 2, 32])
    func gicReg(vcpus: Int) throws {
        let (base, size) = Arm64Layout.gicRedistributors(vcpuCount: vcpus)
        let source = try Self.decompile(Self.machine(vcpus: vcpus, devices: 0))
        let expected = "reg = <0x00 0x3fff0000 0x00 0x10000 0x00 \(hex(base.rawValue)) 0x00 \(hex(size))>;"
        #expect(source.contains(expected))
    }

    @Test("cpu reg is the MPIDR affinity KVM assigns: 16 CPUs per Aff0 cluster")
    func mpidr() {
        #expect(Arm64Layout.mpidr(vcpu: 0) == 0)
        #expect(Arm64Layout.mpidr(vcpu: 15) == 0xf)
        #expect(Arm64Layout.mpidr(vcpu: 16) == 0x100)
        #expect(Arm64Layout.mpidr(vcpu: 31) == 0x10f)
        #expect(Arm64Layout.mpidr(vcpu: 4096) == 0x1_0000)
    }

    @Test("cpu nodes are named and addressed by MPIDR: the 17th CPU is cpu@100", .enabled(if: DTC.isAvailable, DTC.missingReason))
    func cpuNodes() throws {
        let source = try Self.decompile(Self.machine(vcpus: 32, devices: 0))
        #expect(source.contains("cpu@100 {"))
        #expect(source.contains("reg = <0x00 0x10f>;"))
    }

    @Test("virtio nodes: window, SPI edge-rising, dma-coherent", .enabled(if: DTC.isAvailable, DTC.missingReason))
    func virtioNode() throws {
        let source = try Self.decompile(Self.machine(vcpus: 1, devices: 2))
        let node = try #require(source.firstRange(of: "virtio_mmio@40004000 {")).upperBound
        let body = source[node...].prefix(while: { $0 != "}" })
        #expect(body.contains("reg = <0x00 0x40004000 0x00 0x1000>;"))
        #expect(body.contains("interrupts = <0x00 0x03 0x01>;"))
        #expect(body.contains("dma-coherent;"))
    }

    @Test("without an initrd, /chosen has no initrd range", .enabled(if: DTC.isAvailable, DTC.missingReason))
    func noInitrd() throws {
        let source = try Self.decompile(Self.machine(vcpus: 1, devices: 0, initrd: false))
        #expect(!source.contains("linux,initrd"))
        #expect(source.contains("bootargs"))
    }

    @Test("the timer lists its four PPIs level-high; the GIC its maintenance PPI", .enabled(if: DTC.isAvailable, DTC.missingReason))
    func interrupts() throws {
        let source = try Self.decompile(Self.machine(vcpus: 1, devices: 0))
        #expect(source.contains("interrupts = <0x01 0x0d 0x04 0x01 0x0e 0x04 0x01 0x0b 0x04 0x01 0x0a 0x04>;"))
        #expect(source.contains("interrupts = <0x01 0x09 0x04>;"))
    }

    @Test("the blob fits the 2 MiB the boot protocol allows even at the limits")
    func size() throws {
        let blob = try Self.machine(vcpus: Arm64Layout.maxVCPUs, devices: Arm64Layout.maxVirtioDevices).deviceTree()
        #expect(UInt64(blob.count) <= Arm64Layout.fdtMaxSize)
    }

    @Test("bad descriptions are refused with a reason")
    func invalid() {
        var machine = Self.machine(vcpus: 0, devices: 0)
        #expect(throws: Arm64DeviceTreeError.vcpuCount(0)) { try machine.deviceTree() }
        machine = Self.machine(vcpus: 1, devices: 0)
        machine.virtioDevices = [Arm64MMIODevice(base: GuestAddress(0x4000_3000), size: 0x1000, irq: 96)]
        let error = #expect(throws: Arm64DeviceTreeError.self) { try machine.deviceTree() }
        #expect(error == .interruptOutOfRange(device: "virtio device 0", irq: 96))
        #expect(error?.description.contains("only 96 SPIs") == true)
        machine = Self.machine(vcpus: 1, devices: 0)
        machine.initrd = (GuestAddress(0x7000_0000), 0x1000)
        #expect(throws: Arm64DeviceTreeError.initrdOutsideRAM(start: GuestAddress(0x7000_0000), size: 0x1000)) { try machine.deviceTree() }
        machine = Self.machine(vcpus: 1, devices: 0)
        machine.bootargs = "console=ttyS0\0"
        #expect(throws: Arm64DeviceTreeError.fdt(.stringContainsNUL(property: "bootargs"))) { try machine.deviceTree() }
    }
}

@Suite("Arm64Layout")
struct Arm64LayoutTests {
    @Test(
        "the device tree takes the last 2 MiB-aligned 2 MiB of RAM",
        arguments: [
            (UInt64(128 << 20), UInt64(0x8000_0000 + (126 << 20))),
            (UInt64((128 << 20) + 0x1000), UInt64(0x8000_0000 + (126 << 20))),
            (UInt64(2 << 20), UInt64(0x8000_0000)),
            (UInt64(1 << 20), UInt64(0x8000_0000)),
        ])
    func fdtAddress(memory: UInt64, expected: UInt64) {
        let address = Arm64Layout.fdtAddress(memorySize: memory)
        #expect(address.rawValue == expected)
        #expect(address.rawValue % 0x20_0000 == 0)
    }

    @Test("the initrd sits page-aligned right below the device tree, above the kernel")
    func initrd() {
        let memory: UInt64 = 128 << 20
        let fdt = Arm64Layout.fdtAddress(memorySize: memory).rawValue
        let address = Arm64Layout.initrdAddress(size: 0x1234, memorySize: memory, kernelEnd: GuestAddress(0x8200_0000))
        #expect(address?.rawValue == fdt - 0x2000)
        #expect(Arm64Layout.initrdAddress(size: 200 << 20, memorySize: memory, kernelEnd: GuestAddress(0x8200_0000)) == nil)
    }

    @Test("device windows and the GIC stay between 1 GiB - GIC frames and RAM")
    func windows() {
        #expect(Arm64Layout.virtio(0).base.rawValue == 0x4000_3000)
        #expect(Arm64Layout.virtio(0).irq == 2)
        let last = Arm64Layout.virtio(Arm64Layout.maxVirtioDevices - 1)
        #expect(last.irq == Arm64Layout.spiCount - 1)
        #expect(last.base.rawValue + last.size <= Arm64Layout.ramStart.rawValue)
        #expect(Arm64Layout.gicITS(vcpuCount: Arm64Layout.maxVCPUs).rawValue > 0x3000_0000)
    }
}
