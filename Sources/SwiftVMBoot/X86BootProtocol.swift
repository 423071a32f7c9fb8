import SwiftVMMemory

/// Which entry point of an x86_64 kernel swiftvm starts the vCPU at, as the
/// user asks for it (`--boot-protocol`).
public enum X86BootProtocol: String, CaseIterable, Equatable, Sendable, CustomStringConvertible {
    /// Firecracker's rule: a vmlinux that carries a PVH note (XEN_ELFNOTE_PHYS32_ENTRY)
    /// is entered through PVH, any other vmlinux and every bzImage through the
    /// Linux 64-bit boot protocol.
    case auto
    /// The Linux 64-bit boot protocol: long mode, a zero page in RSI.
    case linux64
    /// PVH: 32-bit protected mode without paging, `hvm_start_info` in EBX.
    case pvh

    public var description: String { rawValue }
}

/// The entry swiftvm starts the boot vCPU at.
public struct X86Entry: Equatable, Sendable, CustomStringConvertible {
    public enum Mode: Equatable, Sendable {
        /// Long mode with the boot page tables; RSI holds the zero page.
        case linux64
        /// 32-bit protected mode, paging off; EBX holds `hvm_start_info`.
        case pvh
    }

    public var mode: Mode
    public var address: GuestAddress

    public init(mode: Mode, address: GuestAddress) {
        self.mode = mode
        self.address = address
    }

    public var description: String {
        switch mode {
        case .linux64: "the Linux 64-bit entry at \(hex(address.rawValue))"
        case .pvh: "the PVH 32-bit entry at \(hex(address.rawValue))"
        }
    }
}

/// An x86_64 kernel as swiftvm will boot it: the checked file (an ELF
/// vmlinux or a bzImage) and the entry chosen for it. This is the one set of
/// rules `swiftvm run` loads by and `swiftvm inspect kernel` reports.
public struct X86KernelPlan: Equatable, Sendable {
    public enum Image: Equatable, Sendable {
        case vmlinux(VmlinuxLayout)
        case bzImage(BzImageLayout)
    }

    public var image: Image
    public var entry: X86Entry
    /// The PVH entry the file offers, if any, whichever entry was chosen.
    public var pvhEntry: UInt64?
    /// Why this entry, in a few words, for `inspect kernel`.
    public var reason: String

    /// Checks `file` and chooses its entry under `requested`:
    ///
    /// - a bzImage is always entered at its 64-bit entry (`pvh` is refused);
    /// - a vmlinux with `linux64` at e_entry; with `pvh` at the PVH note's
    ///   entry (refused without a note); with `auto` at the note's entry
    ///   when there is one, else at e_entry.
    public init(_ file: some ImageSource, protocol requested: X86BootProtocol) throws(KernelImageError) {
        let format: KernelFormat
        do throws(ImageReadError) { format = try KernelFormat.probe(file) } catch { throw .readFailed(error) }
        if case .bzImage(let version) = format {
            let layout = try BzImageLayout(file)
            if requested == .pvh { throw .pvhNotForBzImage(protocolVersion: version) }
            image = .bzImage(layout)
            entry = X86Entry(mode: .linux64, address: GuestAddress(layout.entry))
            pvhEntry = nil
            reason = requested == .auto ? "auto: a bzImage is entered at its 64-bit entry" : "--boot-protocol linux64"
            return
        }
        let layout = try VmlinuxLayout(file)
        image = .vmlinux(layout)
        let note = PVHNote.entry(file)
        pvhEntry = note
        if let note, requested != .linux64 {
            guard note < X86Layout.mmioGapEnd.rawValue, layout.segments.contains(where: { $0.contains(note) }) else {
                throw .pvhEntryInvalid(entry: note)
            }
            entry = X86Entry(mode: .pvh, address: GuestAddress(note))
            reason = requested == .auto
                ? "auto: the vmlinux carries a PVH note; --boot-protocol linux64 enters at \(hex(layout.entry.rawValue))"
                : "--boot-protocol pvh"
            return
        }
        if requested == .pvh { throw .pvhNoteMissing }
        entry = X86Entry(mode: .linux64, address: layout.entry)
        if requested == .auto {
            reason = "auto: the vmlinux carries no PVH note"
        } else if let note {
            reason = "--boot-protocol linux64; the vmlinux also has a PVH entry at \(hex(note))"
        } else {
            reason = "--boot-protocol linux64"
        }
    }

    /// The guest-RAM check: every segment, or the bzImage and its
    /// decompression room, inside RAM.
    public func checkFits(in memory: GuestMemory) throws(KernelImageError) {
        switch image {
        case .vmlinux(let layout): try layout.checkFits(in: memory)
        case .bzImage(let layout): try layout.checkFits(in: memory)
        }
    }

    /// Loads `file` (the file this plan was made from) into `memory`.
    public func load(_ file: some ImageSource, into memory: GuestMemory) throws(KernelImageError) -> LoadedX86Kernel {
        switch image {
        case .vmlinux:
            let loaded = try KernelLoader.loadX86Vmlinux(file, into: memory)
            return LoadedX86Kernel(entry: entry, endAddress: loaded.endAddress, bzImage: nil)
        case .bzImage(let layout):
            try layout.load(file, into: memory)
            return LoadedX86Kernel(entry: entry, endAddress: GuestAddress(layout.endAddress), bzImage: layout)
        }
    }
}

/// Where a kernel landed and how to enter it.
public struct LoadedX86Kernel: Equatable, Sendable {
    public var entry: X86Entry
    /// One past the highest byte the kernel occupies (for a bzImage, with the
    /// room its decompressor needs); the initrd goes above it.
    public var endAddress: GuestAddress
    /// For a bzImage: its header, which seeds the zero page.
    public var bzImage: BzImageLayout?

    public init(entry: X86Entry, endAddress: GuestAddress, bzImage: BzImageLayout?) {
        self.entry = entry
        self.endAddress = endAddress
        self.bzImage = bzImage
    }
}

extension KernelLoader {
    /// Checks `file`, chooses its entry, and loads it: ``X86KernelPlan`` in one step.
    public static func loadX86(
        _ file: some ImageSource, protocol requested: X86BootProtocol, into memory: GuestMemory
    ) throws(KernelImageError) -> LoadedX86Kernel {
        try X86KernelPlan(file, protocol: requested).load(file, into: memory)
    }
}
