import SwiftVMHost
import SwiftVMMemory
import SwiftVMBoot

extension Machine {
    /// MSRs every vCPU starts with (what firmware leaves for a 64-bit kernel).
    static let bootMSRs: [(index: UInt32, value: UInt64)] = [
        (0x174, 0), (0x175, 0), (0x176, 0),  // SYSENTER_CS/ESP/EIP
        (0xc000_0081, 0), (0xc000_0082, 0), (0xc000_0083, 0),  // STAR, LSTAR, CSTAR
        (0xc000_0084, 0), (0xc000_0102, 0),  // SYSCALL_MASK, KERNEL_GS_BASE
        (0x10, 0),  // TSC
        (0x1a0, 1),  // MISC_ENABLE: fast string operations
        (0x2ff, (1 << 11) | 6),  // MTRRdefType: MTRRs on, default write-back
    ]

    static func createVCPUs(kvm: KVM, vm: VirtualMachine, config: VMConfig, entry: X86Entry) throws(VMMError) -> [VCPU] {
        var supported: [CPUIDEntry]
        do { supported = try kvm.supportedCPUID() } catch { throw .kvm(error, while: "reading supported CPUID") }
        // The template goes first and topology last, so a template can hide
        // features but never break APIC ids or counts.
        if let template = config.cpuTemplate {
            do { supported = try template.apply(to: supported) } catch {
                throw VMMError(.badInput, "cpu template: \(error)")
            }
        }
        let tscDeadline = kvm.hasTSCDeadlineTimer
        let longMode = longModeEntry(rip: entry.address.rawValue)
        let pvh = pvhEntry(eip: entry.address.rawValue)
        var vcpus: [VCPU] = []
        for index in 0..<config.vcpuCount {
            do {
                let vcpu = try vm.createVCPU(id: index)
                let cpuid = CPUIDNormalizer.normalize(
                    supported, vcpuIndex: index, vcpuCount: config.vcpuCount, tscDeadline: tscDeadline)
                try vcpu.setCPUID(cpuid)
                try vcpu.setMSRs(bootMSRs)
                if let template = config.cpuTemplate, !template.msrModifiers.isEmpty {
                    try applyMSRTemplate(template, to: vcpu)
                }
                try vcpu.resetFPU()
                try vcpu.configureLocalInterrupts()
                switch entry.mode {
                case .linux64: try vcpu.setLongModeEntry(longMode)
                case .pvh: try vcpu.setProtectedModeEntry(pvh)
                }
                vcpus.append(vcpu)
            } catch let error as VMMError {
                throw error
            } catch let error as KVMError {
                throw .kvm(error, while: "setting up vCPU \(index)")
            } catch {
                throw VMMError(.internalError, "setting up vCPU \(index): \(error)")
            }
        }
        return vcpus
    }

    /// Reads the MSRs a template names, forces its bits, and writes them back.
    private static func applyMSRTemplate(_ template: CPUTemplate, to vcpu: VCPU) throws(VMMError) {
        let addresses = template.msrAddresses
        let current: [UInt64]
        do { current = try vcpu.getMSRs(addresses) } catch {
            throw VMMError(.badInput, "cpu template: this host's KVM cannot read an MSR the template names (\(error))")
        }
        let updated: [UInt32: UInt64]
        do { updated = try template.applyMSRs(to: Dictionary(uniqueKeysWithValues: zip(addresses, current))) } catch {
            throw VMMError(.badInput, "cpu template: \(error)")
        }
        do { try vcpu.setMSRs(addresses.compactMap { address in updated[address].map { (address, $0) } }) } catch {
            throw VMMError(.badInput, "cpu template: KVM refused an MSR value the template sets (\(error))")
        }
    }

    /// The segment register KVM loads for GDT descriptor `descriptor` at `selector`.
    static func segment(_ descriptor: UInt64, selector: UInt16) -> SegmentRegister {
        let decoded = SegmentDescriptor(descriptor)
        return SegmentRegister(
            base: decoded.base, limit: decoded.limit, selector: selector, type: decoded.type,
            present: decoded.present, dpl: decoded.dpl, db: decoded.db, s: decoded.s, l: decoded.l,
            g: decoded.g, avl: decoded.avl)
    }

    /// The vCPU state at the PVH entry point: the PVH GDT's 32-bit segments,
    /// paging off, `hvm_start_info` in EBX.
    static func pvhEntry(eip: UInt64) -> X86ProtectedModeEntry {
        X86ProtectedModeEntry(
            eip: eip, ebx: X86Layout.pvhStartInfo.rawValue, gdtBase: X86Layout.gdt.rawValue, gdtLimit: BootGDT.limit,
            idtBase: X86Layout.idt.rawValue, idtLimit: BootGDT.idtLimit,
            code: segment(BootGDT.pvhCode, selector: BootGDT.codeSelector),
            data: segment(BootGDT.pvhData, selector: BootGDT.dataSelector),
            tss: segment(BootGDT.pvhTSS, selector: BootGDT.tssSelector))
    }

    /// The vCPU state at the 64-bit entry point: the boot GDT's segments, the
    /// boot page tables, the zero page in RSI.
    static func longModeEntry(rip: UInt64) -> X86LongModeEntry {
        return X86LongModeEntry(
            rip: rip, rsp: X86Layout.bootStack.rawValue, rsi: X86Layout.zeroPage.rawValue,
            pml4: X86Layout.pml4.rawValue, gdtBase: X86Layout.gdt.rawValue, gdtLimit: BootGDT.limit,
            idtBase: X86Layout.idt.rawValue, idtLimit: BootGDT.idtLimit,
            code: segment(BootGDT.code, selector: BootGDT.codeSelector),
            data: segment(BootGDT.data, selector: BootGDT.dataSelector),
            tss: segment(BootGDT.tss, selector: BootGDT.tssSelector))
    }
}
