import Testing
@testable import SwiftVMBoot
import SwiftVMTestSupport

/// A CPUID list shaped like KVM_GET_SUPPORTED_CPUID on a 16-thread Intel host.
private func hostCPUID(withLeaf1F: Bool = false) -> [CPUIDEntry] {
    let indexed = CPUIDEntry.significantIndexFlag
    var entries = [
        CPUIDEntry(function: 0x0, eax: 0x1f, ebx: 0x756e_6547, ecx: 0x6c65_746e, edx: 0x4965_6e69),
        // Host APIC id 5, 16 logical processors, HTT on, no hypervisor bit.
        CPUIDEntry(function: 0x1, eax: 0x906ea, ebx: 0x0510_0800, ecx: 0x77fa_fbff, edx: 0xbfeb_fbff),
        // L1d, L1i, L2, L3, then the type-0 terminator.
        CPUIDEntry(function: 0x4, index: 0, flags: indexed, eax: 0x1c00_4121),
        CPUIDEntry(function: 0x4, index: 1, flags: indexed, eax: 0x1c00_4122),
        CPUIDEntry(function: 0x4, index: 2, flags: indexed, eax: 0x1c00_4143),
        CPUIDEntry(function: 0x4, index: 3, flags: indexed, eax: 0x1c03_c163),
        CPUIDEntry(function: 0x4, index: 4, flags: indexed),
        // Turbo (EAX[1]) and ARAT (EAX[2]); hardware feedback (ECX[0]) and EPB (ECX[3]).
        CPUIDEntry(function: 0x6, eax: 0x6, ecx: 0x9),
        CPUIDEntry(function: 0xA, eax: 0x0804_8302, edx: 0x603),
        // Host topology: 2 threads per core, 16 threads; KVM lists two subleaves.
        CPUIDEntry(function: 0xB, index: 0, flags: indexed, eax: 1, ebx: 2, ecx: 0x100, edx: 5),
        CPUIDEntry(function: 0xB, index: 1, flags: indexed, eax: 4, ebx: 16, ecx: 0x201, edx: 5),
    ]
    if withLeaf1F {
        entries += [
            CPUIDEntry(function: 0x1F, index: 0, flags: indexed, eax: 1, ebx: 2, ecx: 0x100, edx: 5),
            CPUIDEntry(function: 0x1F, index: 1, flags: indexed, eax: 4, ebx: 16, ecx: 0x201, edx: 5),
            CPUIDEntry(function: 0x1F, index: 2, flags: indexed, eax: 5, ebx: 16, ecx: 0x502, edx: 5),
            CPUIDEntry(function: 0x1F, index: 3, flags: indexed, ecx: 3, edx: 5),
        ]
    }
    entries.append(CPUIDEntry(function: 0x8000_0000, eax: 0x8000_0008))
    return entries
}

private func entry(_ entries: [CPUIDEntry], _ leaf: UInt32, _ subleaf: UInt32 = 0) throws -> CPUIDEntry {
    try #require(entries.first { $0.function == leaf && $0.index == subleaf })
}

@Suite("CPUID normalization")
struct CPUIDNormalizerTests {
    @Test("leaf 1 carries the vCPU's APIC id and the machine's size", arguments: [(0, 4), (3, 4), (31, 32)])
    func leaf1Identity(index: Int, count: Int) throws {
        let cpuid = CPUIDNormalizer.normalize(hostCPUID(), vcpuIndex: index, vcpuCount: count, tscDeadline: true)
        let leaf1 = try entry(cpuid, 0x1)
        #expect(leaf1.field(31, 24, of: .ebx) == UInt32(index))
        #expect(leaf1.field(23, 16, of: .ebx) == UInt32(count))
        #expect(leaf1.field(15, 8, of: .ebx) == 8)
        #expect(leaf1.bit(28, of: .edx), "HTT with several vCPUs")
        #expect(leaf1.bit(31, of: .ecx), "hypervisor present")
        // Everything else comes from the host unchanged.
        #expect(leaf1.eax == 0x906ea)
        #expect(leaf1.ecx & ~(1 << 31 | 1 << 24) == 0x77fa_fbff & ~(1 << 31 | 1 << 24))
    }

    @Test("a single vCPU does not claim HTT")
    func singleVCPU() throws {
        let cpuid = CPUIDNormalizer.normalize(hostCPUID(), vcpuIndex: 0, vcpuCount: 1, tscDeadline: false)
        let leaf1 = try entry(cpuid, 0x1)
        #expect(!leaf1.bit(28, of: .edx))
        #expect(leaf1.field(23, 16, of: .ebx) == 1)
        #expect(leaf1.field(31, 24, of: .ebx) == 0)
        let core = try entry(cpuid, 0xB, 1)
        #expect(core.eax == 0 && core.ebx == 1)
    }

    @Test("TSC-deadline follows the host capability", arguments: [true, false])
    func tscDeadline(enabled: Bool) throws {
        let cpuid = CPUIDNormalizer.normalize(hostCPUID(), vcpuIndex: 0, vcpuCount: 2, tscDeadline: enabled)
        #expect(try entry(cpuid, 0x1).bit(24, of: .ecx) == enabled)
    }

    @Test("leaf 0xB describes one thread per core and all vCPUs in one package")
    func extendedTopology() throws {
        let cpuid = CPUIDNormalizer.normalize(hostCPUID(), vcpuIndex: 3, vcpuCount: 4, tscDeadline: true)
        let smt = try entry(cpuid, 0xB, 0)
        #expect([smt.eax, smt.ebx, smt.ecx, smt.edx] == [0, 1, 0x100, 3])
        let core = try entry(cpuid, 0xB, 1)
        #expect([core.eax, core.ebx, core.ecx, core.edx] == [2, 4, 0x201, 3])
        // KVM listed no subleaf 2; the invalid level that ends enumeration is added.
        let end = try entry(cpuid, 0xB, 2)
        #expect([end.eax, end.ebx, end.ecx, end.edx] == [0, 0, 2, 3])
        #expect(end.hasSignificantIndex)
        #expect(cpuid.filter { $0.function == 0xB }.map(\.index) == [0, 1, 2])
    }

    @Test("the core level shifts out enough bits for every APIC id",
          arguments: [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4), (32, 5)] as [(Int, UInt32)])
    func coreIDBits(count: Int, bits: UInt32) throws {
        let cpuid = CPUIDNormalizer.normalize(hostCPUID(), vcpuIndex: count - 1, vcpuCount: count, tscDeadline: true)
        #expect(try entry(cpuid, 0xB, 1).eax == bits)
    }

    @Test("leaf 0x1F, when the host has it, matches leaf 0xB and drops the die level")
    func leaf1F() throws {
        let cpuid = CPUIDNormalizer.normalize(hostCPUID(withLeaf1F: true), vcpuIndex: 2, vcpuCount: 4, tscDeadline: true)
        for subleaf: UInt32 in 0...2 {
            let v1 = try entry(cpuid, 0xB, subleaf)
            let v2 = try entry(cpuid, 0x1F, subleaf)
            #expect([v1.eax, v1.ebx, v1.ecx, v1.edx] == [v2.eax, v2.ebx, v2.ecx, v2.edx])
        }
        let beyond = try entry(cpuid, 0x1F, 3)
        #expect([beyond.eax, beyond.ebx, beyond.ecx, beyond.edx] == [0, 0, 3, 2])
    }

    @Test("leaf 0x1F is not invented when the host lacks it")
    func noLeaf1F() {
        let cpuid = CPUIDNormalizer.normalize(hostCPUID(), vcpuIndex: 0, vcpuCount: 2, tscDeadline: true)
        #expect(!cpuid.contains { $0.function == 0x1F })
    }

    @Test("leaf 4: L1 and L2 are private, the last level is shared by all vCPUs", arguments: [1, 4, 32])
    func cacheSharing(count: Int) throws {
        let cpuid = CPUIDNormalizer.normalize(hostCPUID(), vcpuIndex: 0, vcpuCount: count, tscDeadline: true)
        for subleaf: UInt32 in 0...3 {
            let cache = try entry(cpuid, 0x4, subleaf)
            #expect(cache.field(31, 26, of: .eax) == UInt32(count - 1), "cores in package, subleaf \(subleaf)")
            let sharing = cache.field(25, 14, of: .eax)
            #expect(sharing == (subleaf == 3 ? UInt32(count - 1) : 0), "sharing, subleaf \(subleaf)")
            // Type, level and the other low fields stay the host's.
            #expect(cache.eax & 0x3fff == hostCPUID()[2 + Int(subleaf)].eax & 0x3fff)
        }
        #expect(try entry(cpuid, 0x4, 4).eax == 0, "the terminator stays empty")
    }

    @Test("leaf 6 hides turbo and energy-performance bias, keeps ARAT")
    func powerManagement() throws {
        let cpuid = CPUIDNormalizer.normalize(hostCPUID(), vcpuIndex: 0, vcpuCount: 2, tscDeadline: true)
        let leaf6 = try entry(cpuid, 0x6)
        #expect(leaf6.eax == 0x4)
        #expect(leaf6.ecx == 0x1)
    }

    @Test("leaves without a rule pass through", arguments: [0x0, 0xA, 0x8000_0000] as [UInt32])
    func passThrough(leaf: UInt32) throws {
        let cpuid = CPUIDNormalizer.normalize(hostCPUID(), vcpuIndex: 1, vcpuCount: 2, tscDeadline: true)
        #expect(try entry(cpuid, leaf) == entry(hostCPUID(), leaf))
    }
}
