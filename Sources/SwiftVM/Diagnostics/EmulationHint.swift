
/// Names the instruction at a guest's RIP when it is one that a KVM without
/// hardware virtualization (an emulating backend such as kvm_pvm) cannot
/// run, and says what to change on the guest side.
///
/// Such a KVM runs guests through its instruction emulator, which stops
/// with `KVM_EXIT_INTERNAL_ERROR` (suberror 1) on these instructions, or
/// (for a hypercall it does not implement) re-executes it forever. The
/// fixes are the ones a Linux 6.1 guest needs on such a host.
public struct EmulationHint: Equatable, Sendable {
    /// The instruction, as a disassembler spells it (`int3`, `popcnt`, `xsave`, ...).
    public var mnemonic: String
    /// What in a Linux guest runs it and how to get past it.
    public var fix: String

    /// Decodes the instruction that starts `bytes` (legacy and REX prefixes
    /// included); nil when it is not one of the known ones.
    public static func decode(_ bytes: [UInt8]) -> EmulationHint? {
        var index = 0
        var repz = false
        var rexW = false
        // Legacy prefixes, then at most one REX prefix right before the opcode.
        while index < bytes.count, index < 14 {
            let byte = bytes[index]
            if [0x66, 0x67, 0xf0, 0xf2, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65].contains(byte) {
                index += 1
            } else if byte == 0xf3 {
                repz = true
                index += 1
            } else {
                break
            }
        }
        if index < bytes.count, bytes[index] & 0xf0 == 0x40 {
            rexW = bytes[index] & 0x08 != 0
            index += 1
        }
        guard index < bytes.count else { return nil }
        let opcode = bytes[index]
        let next = index + 1 < bytes.count ? bytes[index + 1] : nil
        let third = index + 2 < bytes.count ? bytes[index + 2] : nil

        switch opcode {
        case 0xcc:
            return EmulationHint(mnemonic: "int3", fix: Fix.int3)
        case 0xcd:
            let vector = next.map { " 0x" + String($0, radix: 16) } ?? ""
            return EmulationHint(mnemonic: "int" + vector, fix: Fix.softwareInterrupt)
        case 0x9b:
            return EmulationHint(mnemonic: "fwait", fix: Fix.fwait)
        case 0x0f:
            guard let next else { return nil }
            return decodeTwoByte(next, modrm: third, repz: repz, rexW: rexW)
        default:
            return nil
        }
    }

    private static func decodeTwoByte(_ opcode: UInt8, modrm: UInt8?, repz: Bool, rexW: Bool) -> EmulationHint? {
        let reg = modrm.map { ($0 >> 3) & 7 }
        let isMemory = modrm.map { $0 >> 6 != 3 } ?? false
        switch (opcode, modrm) {
        case (0xb8, _) where repz:
            return EmulationHint(mnemonic: "popcnt", fix: Fix.popcnt)
        case (0x01, 0xca?):
            return EmulationHint(mnemonic: "clac", fix: Fix.smap)
        case (0x01, 0xcb?):
            return EmulationHint(mnemonic: "stac", fix: Fix.smap)
        case (0x01, 0xd0?):
            return EmulationHint(mnemonic: "xgetbv", fix: Fix.xsave)
        case (0x01, 0xd1?):
            return EmulationHint(mnemonic: "xsetbv", fix: Fix.xsave)
        case (0x01, 0xc1?):
            return EmulationHint(mnemonic: "vmcall", fix: Fix.hypercall)
        case (0x01, 0xd9?):
            return EmulationHint(mnemonic: "vmmcall", fix: Fix.hypercall)
        case (0xc7, _) where isMemory && reg == 1 && rexW:
            return EmulationHint(mnemonic: "cmpxchg16b", fix: Fix.cx16)
        case (0xc7, _) where isMemory && reg == 3:
            return EmulationHint(mnemonic: "xrstors", fix: Fix.xsave)
        case (0xc7, _) where isMemory && reg == 4:
            return EmulationHint(mnemonic: "xsavec", fix: Fix.xsave)
        case (0xc7, _) where isMemory && reg == 5:
            return EmulationHint(mnemonic: "xsaves", fix: Fix.xsave)
        case (0xae, _) where isMemory && reg == 4:
            return EmulationHint(mnemonic: "xsave", fix: Fix.xsave)
        case (0xae, _) where isMemory && reg == 5:
            return EmulationHint(mnemonic: "xrstor", fix: Fix.xsave)
        case (0xae, _) where isMemory && reg == 6:
            return EmulationHint(mnemonic: "xsaveopt", fix: Fix.xsave)
        default:
            return nil
        }
    }

    /// The guest-side ways past each instruction, for Linux 6.1 guests.
    enum Fix {
        static let testKernel = "scripts/build-kernel.sh --test-kernel"
        static let int3 = "Linux runs an int3 self-test on every boot (alternative_instructions), and no "
            + "command-line option skips it: boot the test kernel (\(testKernel)) on this host, "
            + "or a stock kernel on a host with VMX/SVM"
        static let softwareInterrupt = "the guest raised a software interrupt, which this KVM cannot "
            + "emulate; Linux guests do not do this in normal operation"
        static let fwait = "Linux runs FWAIT at every task exit (fpu__drop): boot the test kernel "
            + "(\(testKernel)) on this host"
        static let popcnt = "hide POPCNT from the kernel: add clearcpuid=popcnt to the command line"
        static let smap = "hide SMAP from the kernel: add clearcpuid=smap to the command line"
        static let cx16 = "hide CMPXCHG16B: --cpu-template GuestConfigs/cpu-templates/no-cx16-no-xsave.json"
        static let xsave = "hide XSAVE: --cpu-template GuestConfigs/cpu-templates/no-cx16-no-xsave.json "
            + "and noxsave on the command line"
        static let hypercall = "a KVM hypercall this KVM may not implement (it can re-execute it forever, "
            + "or fault patching it); in Linux, ptp_kvm's clock-pairing call does this (add "
            + "initcall_blacklist=ptp_kvm_init), and so do paravirtual spinlocks' kvm_kick_cpu (add nopvspin)"
    }
}
