import Glibc
internal import CSwiftVM
import SwiftVMBoot

/// A segment register as KVM loads it (`struct kvm_segment`).
public struct SegmentRegister: Equatable, Sendable {
    public var base: UInt64
    public var limit: UInt32
    public var selector: UInt16
    public var type: UInt8
    public var present: Bool
    public var dpl: UInt8
    public var db: Bool
    public var s: Bool
    public var l: Bool
    public var g: Bool
    public var avl: Bool

    public init(
        base: UInt64, limit: UInt32, selector: UInt16, type: UInt8, present: Bool,
        dpl: UInt8, db: Bool, s: Bool, l: Bool, g: Bool, avl: Bool
    ) {
        self.base = base; self.limit = limit; self.selector = selector; self.type = type
        self.present = present; self.dpl = dpl; self.db = db; self.s = s; self.l = l; self.g = g; self.avl = avl
    }

    var kvm: kvm_segment {
        var segment = kvm_segment()
        segment.base = base
        segment.limit = limit
        segment.selector = selector
        segment.type = type
        segment.present = present ? 1 : 0
        segment.dpl = dpl
        segment.db = db ? 1 : 0
        segment.s = s ? 1 : 0
        segment.l = l ? 1 : 0
        segment.g = g ? 1 : 0
        segment.avl = avl ? 1 : 0
        segment.unusable = present ? 0 : 1
        return segment
    }
}

/// The register state of a vCPU entering a 64-bit Linux kernel (boot protocol, 64-bit entry).
public struct X86LongModeEntry: Sendable {
    public var rip: UInt64
    public var rsp: UInt64
    /// RSI carries the zero page address.
    public var rsi: UInt64
    public var pml4: UInt64
    public var gdtBase: UInt64
    public var gdtLimit: UInt16
    public var idtBase: UInt64
    public var idtLimit: UInt16
    public var code: SegmentRegister
    public var data: SegmentRegister
    public var tss: SegmentRegister

    public init(
        rip: UInt64, rsp: UInt64, rsi: UInt64, pml4: UInt64, gdtBase: UInt64, gdtLimit: UInt16,
        idtBase: UInt64, idtLimit: UInt16, code: SegmentRegister, data: SegmentRegister, tss: SegmentRegister
    ) {
        self.rip = rip; self.rsp = rsp; self.rsi = rsi; self.pml4 = pml4
        self.gdtBase = gdtBase; self.gdtLimit = gdtLimit; self.idtBase = idtBase; self.idtLimit = idtLimit
        self.code = code; self.data = data; self.tss = tss
    }
}

/// The register state of a vCPU entering a kernel through PVH (Xen's
/// `XEN_ELFNOTE_PHYS32_ENTRY`): 32-bit protected mode, no paging.
public struct X86ProtectedModeEntry: Sendable {
    public var eip: UInt64
    /// EBX carries the physical address of `hvm_start_info`.
    public var ebx: UInt64
    public var gdtBase: UInt64
    public var gdtLimit: UInt16
    public var idtBase: UInt64
    public var idtLimit: UInt16
    public var code: SegmentRegister
    public var data: SegmentRegister
    public var tss: SegmentRegister

    public init(
        eip: UInt64, ebx: UInt64, gdtBase: UInt64, gdtLimit: UInt16, idtBase: UInt64, idtLimit: UInt16,
        code: SegmentRegister, data: SegmentRegister, tss: SegmentRegister
    ) {
        self.eip = eip; self.ebx = ebx; self.gdtBase = gdtBase; self.gdtLimit = gdtLimit
        self.idtBase = idtBase; self.idtLimit = idtLimit; self.code = code; self.data = data; self.tss = tss
    }
}

/// What a crash report shows about a vCPU.
public struct VCPUSnapshot: Sendable {
    public var rip: UInt64
    public var rsp: UInt64
    public var rflags: UInt64
    public var cr0: UInt64
    public var cr3: UInt64
    public var cr4: UInt64
    public var efer: UInt64
    public var csSelector: UInt16
    public var csBase: UInt64
    /// The guest-physical address of RIP, when the guest's page tables map it.
    public var ripPhysical: UInt64?
    /// KVM's multiprocessing state (`KVM_MP_STATE_*`): 0 runnable, 2 waiting
    /// for INIT/SIPI, 3 halted; nil when KVM did not say.
    public var mpState: UInt32? = nil

    /// The vCPU's state in words when it is not simply running guest code.
    public var mpStateDescription: String? {
        switch mpState {
        case 1, 2: "not started: waiting for INIT/SIPI"
        case 3: "halted: waiting for an interrupt"
        case 4: "starting: SIPI received"
        default: nil
        }
    }

    /// The CPU mode in words: real mode, or the privilege level.
    public var modeDescription: String {
        if cr0 & 1 == 0 { return "real mode" }
        let cpl = csSelector & 3
        return cpl == 0 ? "kernel mode" : "user mode, CPL \(cpl)"
    }
}

extension VCPU {
    /// Sets the CPUID the guest sees. The corresponding ioctl is `KVM_SET_CPUID2`.
    public func setCPUID(_ entries: [CPUIDEntry]) throws(KVMError) {
        let buffer = CPUIDBuffer(entries: entries)
        try ioctl("KVM_SET_CPUID2", SVM_KVM_SET_CPUID2, buffer.pointer)
    }

    /// Writes model-specific registers. The corresponding ioctl is `KVM_SET_MSRS`.
    public func setMSRs(_ values: [(index: UInt32, value: UInt64)]) throws(KVMError) {
        try withMSRBuffer(values) { (pointer) throws(KVMError) in
            let written = svm_ioctl_ptr(fd.rawValue, SVM_KVM_SET_MSRS, pointer)
            if written < 0 { throw .system(SystemError("KVM_SET_MSRS (vCPU \(id))", errno: errno)) }
            if written < values.count {
                let failed = values[Int(written)].index
                throw .system(SystemError("KVM_SET_MSRS: MSR 0x\(String(failed, radix: 16)) (vCPU \(id))", errno: EINVAL))
            }
        }
    }

    /// Reads model-specific registers. The corresponding ioctl is `KVM_GET_MSRS`.
    public func getMSRs(_ indices: [UInt32]) throws(KVMError) -> [UInt64] {
        var result: [UInt64] = []
        try withMSRBuffer(indices.map { ($0, 0) }) { (pointer) throws(KVMError) in
            let read = svm_ioctl_ptr(fd.rawValue, SVM_KVM_GET_MSRS, pointer)
            if read < 0 { throw .system(SystemError("KVM_GET_MSRS (vCPU \(id))", errno: errno)) }
            if read < indices.count {
                let failed = indices[Int(read)]
                throw .system(SystemError("KVM_GET_MSRS: MSR 0x\(String(failed, radix: 16)) (vCPU \(id))", errno: EINVAL))
            }
            let entries = (pointer + Int(svm_sizeof_kvm_msrs())).assumingMemoryBound(to: kvm_msr_entry.self)
            result = (0..<indices.count).map { entries[$0].data }
        }
        return result
    }

    private func withMSRBuffer(
        _ values: [(index: UInt32, value: UInt64)], _ body: (UnsafeMutableRawPointer) throws(KVMError) -> Void
    ) throws(KVMError) {
        let size = Int(svm_sizeof_kvm_msrs()) + values.count * MemoryLayout<kvm_msr_entry>.stride
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { pointer.deallocate() }
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        pointer.assumingMemoryBound(to: kvm_msrs.self).pointee.nmsrs = UInt32(values.count)
        let entries = (pointer + Int(svm_sizeof_kvm_msrs())).assumingMemoryBound(to: kvm_msr_entry.self)
        for (i, value) in values.enumerated() {
            entries[i].index = value.index
            entries[i].data = value.value
        }
        try body(pointer)
    }

    /// Puts the x87 FPU and SSE control registers in their power-on state.
    /// The corresponding ioctl is `KVM_SET_FPU`.
    public func resetFPU() throws(KVMError) {
        var fpu = kvm_fpu()
        fpu.fcw = 0x37f  // all x87 exceptions masked, 64-bit precision
        fpu.mxcsr = 0x1f80  // all SSE exceptions masked
        try ioctl("KVM_SET_FPU", SVM_KVM_SET_FPU, &fpu)
    }

    /// Routes the LAPIC's LINT0 as ExtINT (the 8259 PIC's output) and LINT1 as
    /// NMI, as PC firmware leaves them. The corresponding ioctls are
    /// `KVM_GET_LAPIC` and `KVM_SET_LAPIC`.
    public func configureLocalInterrupts() throws(KVMError) {
        var lapic = kvm_lapic_state()
        try ioctl("KVM_GET_LAPIC", SVM_KVM_GET_LAPIC, &lapic)
        withUnsafeMutableBytes(of: &lapic.regs) { regs in
            func setDeliveryMode(_ offset: Int, _ mode: UInt32) {
                let old = regs.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
                regs.storeBytes(of: (old & ~0x700) | (mode << 8), toByteOffset: offset, as: UInt32.self)
            }
            setDeliveryMode(0x350, 0x7)  // LVT LINT0: ExtINT
            setDeliveryMode(0x360, 0x4)  // LVT LINT1: NMI
        }
        try ioctl("KVM_SET_LAPIC", SVM_KVM_SET_LAPIC, &lapic)
    }

    /// Loads the 64-bit entry state: long mode with paging, flat segments from
    /// the boot GDT, the boot page tables, and RIP/RSP/RSI. The corresponding
    /// ioctls are `KVM_GET_SREGS`, `KVM_SET_SREGS` and `KVM_SET_REGS`.
    public func setLongModeEntry(_ entry: X86LongModeEntry) throws(KVMError) {
        var sregs = kvm_sregs()
        try ioctl("KVM_GET_SREGS", SVM_KVM_GET_SREGS, &sregs)
        sregs.gdt.base = entry.gdtBase
        sregs.gdt.limit = entry.gdtLimit
        sregs.idt.base = entry.idtBase
        sregs.idt.limit = entry.idtLimit
        sregs.cs = entry.code.kvm
        let data = entry.data.kvm
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
        sregs.ss = data
        sregs.tr = entry.tss.kvm
        // PE | ET | PG, with caching enabled (KVM's reset value has CD and NW set).
        sregs.cr0 = (sregs.cr0 & ~UInt64(0x6000_0000)) | 0x1 | 0x10 | 0x8000_0000
        sregs.cr3 = entry.pml4
        sregs.cr4 |= 0x20  // PAE
        sregs.efer |= 0x100 | 0x400  // LME | LMA
        try ioctl("KVM_SET_SREGS", SVM_KVM_SET_SREGS, &sregs)

        var regs = kvm_regs()
        regs.rflags = 0x2  // bit 1 is reserved and always set
        regs.rip = entry.rip
        regs.rsp = entry.rsp
        regs.rbp = entry.rsp
        regs.rsi = entry.rsi
        try ioctl("KVM_SET_REGS", SVM_KVM_SET_REGS, &regs)
    }

    /// Loads the PVH entry state: 32-bit protected mode with paging off
    /// (CR0 = PE | ET, CR4 = 0, EFER = 0), flat 4 GiB segments from the PVH
    /// boot GDT, a busy 32-bit TSS, interrupts off, EIP at the entry and EBX
    /// at `hvm_start_info`. The corresponding ioctls are `KVM_GET_SREGS`,
    /// `KVM_SET_SREGS` and `KVM_SET_REGS`.
    public func setProtectedModeEntry(_ entry: X86ProtectedModeEntry) throws(KVMError) {
        var sregs = kvm_sregs()
        try ioctl("KVM_GET_SREGS", SVM_KVM_GET_SREGS, &sregs)
        sregs.gdt.base = entry.gdtBase
        sregs.gdt.limit = entry.gdtLimit
        sregs.idt.base = entry.idtBase
        sregs.idt.limit = entry.idtLimit
        sregs.cs = entry.code.kvm
        let data = entry.data.kvm
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
        sregs.ss = data
        sregs.tr = entry.tss.kvm
        sregs.cr0 = 0x1 | 0x10  // PE | ET: caching on, paging off
        sregs.cr3 = 0
        sregs.cr4 = 0
        sregs.efer = 0
        try ioctl("KVM_SET_SREGS", SVM_KVM_SET_SREGS, &sregs)

        var regs = kvm_regs()
        regs.rflags = 0x2  // bit 1 is reserved and always set; IF clear
        regs.rip = entry.eip
        regs.rbx = entry.ebx
        try ioctl("KVM_SET_REGS", SVM_KVM_SET_REGS, &regs)
    }

    /// The registers a crash report needs, and RIP translated through the guest's page tables.
    public func snapshot() throws(KVMError) -> VCPUSnapshot {
        var regs = kvm_regs()
        var sregs = kvm_sregs()
        try ioctl("KVM_GET_REGS", SVM_KVM_GET_REGS, &regs)
        try ioctl("KVM_GET_SREGS", SVM_KVM_GET_SREGS, &sregs)
        let linear = sregs.cr0 & 1 == 0 || sregs.efer & 0x400 == 0 ? sregs.cs.base &+ regs.rip : regs.rip
        var mpState = kvm_mp_state()
        let haveMPState = svm_ioctl_ptr(fd.rawValue, SVM_KVM_GET_MP_STATE, &mpState) == 0
        return VCPUSnapshot(
            rip: regs.rip, rsp: regs.rsp, rflags: regs.rflags, cr0: sregs.cr0, cr3: sregs.cr3, cr4: sregs.cr4,
            efer: sregs.efer, csSelector: sregs.cs.selector, csBase: sregs.cs.base,
            ripPhysical: translate(linear), mpState: haveMPState ? mpState.mp_state : nil)
    }

    /// The guest-physical address of a guest-linear address under the vCPU's
    /// current paging mode. The corresponding ioctl is `KVM_TRANSLATE`.
    public func translate(_ linear: UInt64) -> UInt64? {
        var translation = kvm_translation()
        translation.linear_address = linear
        guard svm_ioctl_ptr(fd.rawValue, SVM_KVM_TRANSLATE, &translation) == 0, translation.valid != 0 else {
            return nil
        }
        return translation.physical_address
    }
}
