/// Turns the CPUID KVM supports on this host (`KVM_GET_SUPPORTED_CPUID`) into
/// what one vCPU reports: its identity, the machine's topology, and no host
/// power-management features the guest cannot drive.
///
/// The topology is one socket with one vCPU per core and no SMT, so every
/// vCPU's APIC id equals its index. Bit layouts follow the Intel SDM, Vol. 2A,
/// CPUID instruction reference (leaves 01H, 04H, 06H, 0BH, 1FH).
public enum CPUIDNormalizer {
    /// Largest machine the topology encoding below is meant for.
    public static let vcpuCountRange = 1...32

    /// The CPUID for vCPU `vcpuIndex` of `vcpuCount`.
    ///
    /// - Parameter tscDeadline: the host has `KVM_CAP_TSC_DEADLINE_TIMER`;
    ///   KVM does not list the bit in its supported CPUID even when it
    ///   emulates the timer, so the VMM has to say so.
    public static func normalize(
        _ supported: [CPUIDEntry], vcpuIndex: Int, vcpuCount: Int, tscDeadline: Bool
    ) -> [CPUIDEntry] {
        precondition(vcpuCountRange.contains(vcpuCount), "vCPU count \(vcpuCount) outside \(vcpuCountRange)")
        precondition((0..<vcpuCount).contains(vcpuIndex), "vCPU index \(vcpuIndex) outside 0..<\(vcpuCount)")
        let topology = Topology(index: UInt32(vcpuIndex), count: UInt32(vcpuCount))

        var entries = supported
        // Both topology leaves get SMT and core levels plus the invalid level
        // that ends the guest's enumeration; KVM may list fewer subleaves.
        for leaf in topologyLeaves where entries.contains(where: { $0.function == leaf }) {
            insertMissingSubleaves(of: leaf, 0...2, into: &entries)
        }

        for position in entries.indices {
            switch entries[position].function {
            case 0x1: normalizeFeatures(&entries[position], topology, tscDeadline: tscDeadline)
            case 0x4: normalizeCache(&entries[position], topology)
            case 0x6: normalizePowerManagement(&entries[position])
            case let leaf where topologyLeaves.contains(leaf): normalizeTopology(&entries[position], topology)
            // Leaf 0xA (architectural perfmon) stays as KVM reports it: KVM
            // already limits it to the vPMU it emulates.
            default: break
            }
        }
        return entries
    }

    /// Extended topology (0BH) and its V2 (1FH), which Linux prefers when present.
    static let topologyLeaves: [UInt32] = [0xB, 0x1F]

    struct Topology {
        var index: UInt32
        var count: UInt32

        /// Bits of the x2APIC id that number the cores: enough for `count` ids.
        var coreIDBits: UInt32 {
            var bits: UInt32 = 0
            while (1 << bits) < count { bits += 1 }
            return bits
        }
    }

    /// Leaf 01H: identity and feature bits.
    static func normalizeFeatures(_ entry: inout CPUIDEntry, _ topology: Topology, tscDeadline: Bool) {
        // EBX[31:24] initial APIC id; Linux falls back to it without leaf 0BH.
        entry.setField(31, 24, of: .ebx, to: topology.index)
        // EBX[23:16] addressable logical processor ids in the package.
        entry.setField(23, 16, of: .ebx, to: topology.count)
        // EBX[15:8] CLFLUSH line size in 8-byte units: 64-byte lines.
        entry.setField(15, 8, of: .ebx, to: 8)
        // EDX[28] HTT: EBX[23:16] is valid; meaningless for a lone vCPU.
        entry.setBit(28, of: .edx, to: topology.count > 1)
        // ECX[31] hypervisor present, so the guest looks for KVM's paravirt leaves.
        entry.setBit(31, of: .ecx, to: true)
        // ECX[24] TSC-deadline mode of the local APIC, emulated by KVM when it has the capability.
        entry.setBit(24, of: .ecx, to: tscDeadline)
    }

    /// Leaf 04H: deterministic cache parameters, one subleaf per cache.
    static func normalizeCache(_ entry: inout CPUIDEntry, _ topology: Topology) {
        entry.flags |= CPUIDEntry.significantIndexFlag
        // EAX[4:0] cache type 0 marks the end of the list; leave it all zero.
        guard entry.field(4, 0, of: .eax) != 0 else { return }
        // EAX[31:26] addressable core ids in the package - 1: one core per vCPU.
        entry.setField(31, 26, of: .eax, to: topology.count - 1)
        // EAX[25:14] logical processors sharing this cache - 1. Without SMT,
        // L1 and L2 (EAX[7:5] level 1, 2) belong to one vCPU; L3 and beyond to all.
        let level = entry.field(7, 5, of: .eax)
        entry.setField(25, 14, of: .eax, to: level >= 3 ? topology.count - 1 : 0)
    }

    /// Leaf 06H: thermal and power management.
    static func normalizePowerManagement(_ entry: inout CPUIDEntry) {
        // EAX[1] Turbo Boost and ECX[3] energy-performance bias advertise host
        // MSRs (IA32_MISC_ENABLE turbo control, IA32_ENERGY_PERF_BIAS) that
        // KVM does not give the guest; Firecracker clears both for that reason.
        entry.setBit(1, of: .eax, to: false)
        entry.setBit(3, of: .ecx, to: false)
    }

    /// Leaves 0BH and 1FH: subleaf 0 the SMT level, 1 the core level, the rest invalid.
    static func normalizeTopology(_ entry: inout CPUIDEntry, _ topology: Topology) {
        entry.flags |= CPUIDEntry.significantIndexFlag
        switch entry.index {
        case 0:
            // One thread per core: no x2APIC id bits for SMT, one processor at this level.
            entry.eax = 0
            entry.ebx = 1
            entry.ecx = 0 | (levelTypeSMT << 8)
        case 1:
            // Shifting out the core bits leaves the package id; all vCPUs are in it.
            entry.eax = topology.coreIDBits
            entry.ebx = topology.count
            entry.ecx = 1 | (levelTypeCore << 8)
        default:
            // ECX[15:8] type 0 (invalid) ends the enumeration; ECX[7:0] echoes the subleaf.
            entry.eax = 0
            entry.ebx = 0
            entry.ecx = entry.index & 0xff
        }
        // EDX is the full x2APIC id at every subleaf.
        entry.edx = topology.index
    }

    static let levelTypeSMT: UInt32 = 1
    static let levelTypeCore: UInt32 = 2

    /// Adds empty indexed entries for the `subleaves` of `leaf` that are
    /// missing, right after the leaf's last entry so the list stays grouped.
    static func insertMissingSubleaves(of leaf: UInt32, _ subleaves: ClosedRange<UInt32>, into entries: inout [CPUIDEntry]) {
        let missing = subleaves.filter { subleaf in
            !entries.contains { $0.function == leaf && $0.index == subleaf }
        }
        guard let last = entries.lastIndex(where: { $0.function == leaf }) else { return }
        let added = missing.map { CPUIDEntry(function: leaf, index: $0, flags: CPUIDEntry.significantIndexFlag) }
        entries.insert(contentsOf: added, at: last + 1)
    }
}
