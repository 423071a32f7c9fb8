import SwiftVMHost
import SwiftVMMemory
import SwiftVMBoot

extension Machine {
    /// Maps guest RAM and writes everything the chosen entry expects into it:
    /// the kernel, the initrd, the command line, the MP table and ACPI
    /// tables, and for the Linux 64-bit entry page tables, GDT and zero page,
    /// for PVH a 32-bit GDT and `hvm_start_info`. Needs no KVM.
    /// Returns guest RAM, where the kernel landed, and the kernel file (still
    /// open, for the pre-flight to read its notes without opening it again).
    static func loadGuest(_ config: VMConfig) throws(VMMError) -> (GuestMemory, LoadedX86Kernel, FileImage) {
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
        let kernel: LoadedX86Kernel
        do { kernel = try KernelLoader.loadX86(kernelFile, protocol: config.bootProtocol, into: memory) } catch {
            throw VMMError(.badKernel(path: config.kernelPath), "kernel \(config.kernelPath): \(error)")
        }
        var initrd: ZeroPage.Initrd?
        if let initrdFile, let path = config.initrdPath {
            initrd = try loadInitrd(initrdFile, path: path, kernelEnd: kernel.endAddress, memory: memory)
        }
        do {
            try commandLine.write(to: memory, at: X86Layout.commandLine)
            if kernel.entry.mode == .linux64 {
                try BootPageTables.write(to: memory)
                try BootGDT.write(to: memory)
            } else {
                try BootGDT.writePVH(to: memory)
            }
            try MPTable(cpuCount: config.vcpuCount).write(to: memory)
            var rsdp: GuestAddress?
            if config.acpi {
                let tables = try ACPITables(vcpuCount: config.vcpuCount, virtioDevices: config.virtioSlots.map(\.window))
                try tables.write(to: memory)
                rsdp = tables.rsdpAddress
            }
            switch kernel.entry.mode {
            case .linux64:
                var zeroPage = ZeroPage(
                    e820: E820Map.x86(ramSize: ramSize), commandLineSize: UInt32(commandLine.size),
                    initrd: initrd, acpiRSDP: rsdp)
                if let bzImage = kernel.bzImage {
                    zeroPage.setupHeader = bzImage.setupHeader
                    zeroPage.code32Start = UInt32(truncatingIfNeeded: bzImage.loadAddress)
                }
                try zeroPage.write(to: memory)
            case .pvh:
                // The same memory map as the zero page's e820; the initrd is the first module.
                let modules = initrd.map { [PVHStartInfo.Module(address: $0.address, size: $0.size)] } ?? []
                try PVHStartInfo(memoryMap: E820Map.x86(ramSize: ramSize), modules: modules, acpiRSDP: rsdp)
                    .write(to: memory)
            }
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
