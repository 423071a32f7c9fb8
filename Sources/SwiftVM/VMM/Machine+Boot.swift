import SwiftVMHost
import SwiftVMMemory
import SwiftVMBoot

extension Machine {
    /// Maps guest RAM and writes everything the Linux 64-bit boot protocol
    /// expects into it: the kernel, the initrd, the command line, page tables,
    /// GDT, MP table, ACPI tables and zero page. Needs no KVM.
    /// Returns guest RAM, where the kernel landed, and the kernel file (still
    /// open, for the pre-flight to read its notes without opening it again).
    static func loadGuest(_ config: VMConfig) throws(VMMError) -> (GuestMemory, LoadedKernel, FileImage) {
        let commandLine: KernelCommandLine
        do { commandLine = try KernelCommandLine(config.guestCommandLine) } catch {
            throw VMMError(.usage, error.description)
        }
        let kernelFile = try FileImage(path: config.kernelPath, role: "kernel", accepting: .regularFile)
        let initrdFile = try config.initrdPath.map { (path) throws(VMMError) in
            try FileImage(path: path, role: "initrd", accepting: .regularFile)
        }

        let ramSize = UInt64(config.memoryMiB) << 20
        let memory: GuestMemory
        do { memory = try GuestMemory(regions: X86Layout.ramRegions(size: ramSize)) } catch {
            throw VMMError(.hostResource, error.description)
        }
        let kernel: LoadedKernel
        do { kernel = try KernelLoader.loadX86Vmlinux(kernelFile, into: memory) } catch {
            throw VMMError(.badKernel(path: config.kernelPath), "kernel \(config.kernelPath): \(error)")
        }
        var initrd: ZeroPage.Initrd?
        if let initrdFile, let path = config.initrdPath {
            initrd = try loadInitrd(initrdFile, path: path, kernelEnd: kernel.endAddress, memory: memory)
        }
        do {
            try commandLine.write(to: memory, at: X86Layout.commandLine)
            try BootPageTables.write(to: memory)
            try BootGDT.write(to: memory)
            try MPTable(cpuCount: config.vcpuCount).write(to: memory)
            var rsdp: GuestAddress?
            if config.acpi {
                let tables = try ACPITables(vcpuCount: config.vcpuCount, virtioDevices: config.virtioSlots.map(\.window))
                try tables.write(to: memory)
                rsdp = tables.rsdpAddress
            }
            let zeroPage = ZeroPage(
                e820: E820Map.x86(ramSize: ramSize), commandLineSize: UInt32(commandLine.size),
                initrd: initrd, acpiRSDP: rsdp)
            try zeroPage.write(to: memory)
        } catch { throw VMMError(.internalError, "writing boot structures: \(error)") }
        return (memory, kernel, kernelFile)
    }

    private static func loadInitrd(
        _ image: FileImage, path: String, kernelEnd: GuestAddress, memory: GuestMemory
    ) throws(VMMError) -> ZeroPage.Initrd {
        let address: GuestAddress
        do { address = try InitrdPlacement.address(initrdSize: image.size, kernelEnd: kernelEnd, memory: memory) } catch {
            // An empty file is an unusable input; one that does not fit the
            // RAM given is fixed with --memory, a usage matter.
            let kind: VMMError.Kind = error == .empty ? .badInitrd(path: path) : .usage
            throw VMMError(kind, "initrd \(path): \(error)")
        }
        do {
            let target = try memory.checkedBytes(at: address, count: Int(image.size))
            try image.read(at: 0, into: target)
        } catch let error as ImageReadError {
            throw VMMError(.badInitrd(path: path), "initrd \(path): \(error)")
        } catch {
            throw VMMError(.internalError, "initrd \(path): \(error)")
        }
        return ZeroPage.Initrd(address: address, size: image.size)
    }
}
