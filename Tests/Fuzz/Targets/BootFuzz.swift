import SwiftVM
import SwiftVMBoot
import SwiftVMMemory

/// Boot-side targets: kernel image loaders and CPU templates.
enum BootFuzz {
    /// 4 MiB of guest RAM for the loaders; segments beyond it are refused.
    nonisolated(unsafe) static let memory = try! GuestMemory(regions: [(GuestAddress(0), 4 << 20)])

    /// The whole input is a kernel image: its format is detected, then it is
    /// loaded as an x86_64 vmlinux, through each x86 boot protocol (vmlinux,
    /// bzImage, PVH) and as an arm64 Image.
    static func kernelLoader(_ data: UnsafeRawBufferPointer) {
        let image = InMemoryImage(Array(data))
        _ = KernelFormat.detect(image).description
        if let header = try? KernelLoader.elfHeader(image) {
            _ = try? header.programHeaders(in: image)
            _ = try? VmlinuxLayout.loadSegments(image, header: header)
        }
        if let layout = try? VmlinuxLayout(image) { _ = try? layout.checkFits(in: memory) }
        _ = try? KernelLoader.loadX86Vmlinux(image, into: memory)
        // The x86 boot protocols: 64-bit Linux (vmlinux or bzImage) and PVH.
        for bootProtocol in X86BootProtocol.allCases {
            guard let plan = try? X86KernelPlan(image, protocol: bootProtocol) else { continue }
            if (try? plan.checkFits(in: memory)) != nil { _ = try? plan.load(image, into: memory) }
        }
        _ = ELFNotes.owners(image)
        if let header = Arm64ImageHeader(Array(data.prefix(64))) { _ = header }
        _ = try? Arm64ImageLoader.checkedHeader(image)
        _ = try? Arm64ImageLoader.load(image, into: memory)
    }

    /// The input is a CPU template file (Firecracker's JSON); a parsed one is
    /// applied to a few CPUID leaves and MSRs.
    static func cpuTemplate(_ data: UnsafeRawBufferPointer) {
        guard let template = try? CPUTemplateFile.parse(Array(data), source: "fuzz") else { return }
        let entries = [
            CPUIDEntry(function: 0, eax: 0xd, ebx: 0x756e_6547),
            CPUIDEntry(function: 1, eax: 0x906ea, ecx: 0xfffa_3203, edx: 0x178b_fbff),
            CPUIDEntry(function: 7, index: 0, flags: CPUIDEntry.significantIndexFlag, ebx: 0x029c_67af),
            CPUIDEntry(function: 0xd, index: 1, flags: CPUIDEntry.significantIndexFlag, eax: 0xf),
            CPUIDEntry(function: 0x8000_0001, ecx: 0x121, edx: 0x2c10_0800),
        ]
        _ = try? template.apply(to: entries)
        _ = try? template.applyMSRs(to: [0x10: 0, 0x1a0: 0x850089, 0xc000_0080: 0xd01])
    }
}
