import SwiftVMMemory

/// Why a kernel image could not be loaded. Each message says what the file
/// is and what to pass instead.
public enum KernelImageError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case bzImage(protocolVersion: UInt16)
    case arm64Image
    case peImage
    case compressed(format: String)
    /// Not a format swiftvm recognises; `leadingBytes` are the first few bytes.
    case unknownFormat(leadingBytes: [UInt8])
    /// EI_CLASS is 32-bit (1) or invalid.
    case unsupportedELFClass(class: Int, machine: UInt16)
    case bigEndianELF(machine: UInt16)
    case wrongMachine(machine: UInt16)
    /// e_type is neither ET_EXEC nor ET_DYN (e.g. a relocatable object).
    case notExecutable(type: UInt16)
    case badProgramHeaderSize(UInt16)
    /// The file ends inside the 64-byte ELF header.
    case truncatedHeader(fileSize: UInt64)
    /// Program header `index` needs bytes up to `end`; the file has `fileSize`.
    case truncatedProgramHeader(index: Int, end: UInt64, fileSize: UInt64)
    /// Segment `index`'s contents need bytes up to `end`; the file has `fileSize`.
    case truncatedSegment(index: Int, end: UInt64, fileSize: UInt64)
    case fileSizeExceedsMemorySize(index: Int, fileSize: UInt64, memorySize: UInt64)
    /// p_offset + p_filesz or p_paddr + p_memsz overflows 64 bits.
    case addressOverflow(index: Int)
    case noLoadableSegments
    /// The segment starts below 1 MiB, where the boot structures live.
    case segmentBelowHighMemory(index: Int, start: UInt64)
    /// [start, end) is not inside one region of guest RAM.
    case segmentOutsideRAM(index: Int, start: UInt64, end: UInt64, ramSize: UInt64)
    case entryOutsideSegments(entry: UInt64)
    case readFailed(ImageReadError)
    /// A bzImage older than boot protocol 2.12, which has no xloadflags.
    case bzImageProtocolTooOld(protocolVersion: UInt16)
    /// A bzImage whose xloadflags lack XLF_KERNEL_64: no 64-bit entry point.
    case bzImageNo64BitEntry(protocolVersion: UInt16)
    /// The file ends before the setup header or the protected-mode code does.
    case bzImageTruncated(protocolVersion: UInt16, needed: UInt64, fileSize: UInt64)
    /// [start, end), the kernel and the room init_size asks for, is not one stretch of RAM.
    case bzImageOutsideRAM(start: UInt64, end: UInt64, ramSize: UInt64)
    /// `--boot-protocol pvh` for an ELF without a XEN_ELFNOTE_PHYS32_ENTRY note.
    case pvhNoteMissing
    /// `--boot-protocol pvh` for a bzImage, which has no PVH entry.
    case pvhNotForBzImage(protocolVersion: UInt16)
    /// The PVH note's entry is not below 4 GiB inside a loaded segment.
    case pvhEntryInvalid(entry: UInt64)

    static let vmlinuxAdvice =
        "swiftvm boots x86_64 guests from the uncompressed ELF `vmlinux` at the top of the kernel build tree (make vmlinux)"
    static let rebuildAdvice = "rebuild the kernel or copy `vmlinux` again"

    public var description: String {
        switch self {
        case .empty:
            return "the kernel file is empty; " + Self.vmlinuxAdvice
        case .bzImage(let version):
            return "this is a bzImage (Linux boot protocol \(KernelFormat.protocolString(version))),"
                + " a compressed kernel with a real-mode setup stub; " + Self.vmlinuxAdvice
        case .arm64Image:
            return "this is an arm64 kernel Image, which cannot run in an x86_64 guest;"
                + " pass the ELF `vmlinux` from an x86_64 kernel build (make ARCH=x86_64 vmlinux)"
        case .peImage:
            return "this is a PE/COFF (EFI) executable, which needs firmware swiftvm does not provide; "
                + Self.vmlinuxAdvice
        case .compressed(let format):
            return "this file is \(format)-compressed; decompress it first (\(Self.decompressCommand(format)))"
                + " and pass the result if it is the ELF `vmlinux`; " + Self.vmlinuxAdvice
        case .unknownFormat(let bytes):
            let shown = bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
            return "the kernel file is not a format swiftvm recognises (it starts with \(shown)); " + Self.vmlinuxAdvice
        case .unsupportedELFClass(let bits, let machine):
            let what = bits == 0 ? "an ELF with an invalid class" : "a \(bits)-bit ELF"
            return "this is \(what) for \(ELFMachine.name(machine)) (e_machine \(machine));"
                + " swiftvm boots 64-bit kernels: pass a `vmlinux` built for x86_64 (make ARCH=x86_64 vmlinux)"
        case .bigEndianELF(let machine):
            return "this is a big-endian ELF for \(ELFMachine.name(machine)) (e_machine \(machine));"
                + " pass a little-endian x86_64 `vmlinux` (make ARCH=x86_64 vmlinux)"
        case .wrongMachine(let machine):
            return "this is an ELF for \(ELFMachine.name(machine)) (e_machine \(machine)), not x86_64 (e_machine 62);"
                + " pass a `vmlinux` built for x86_64 (make ARCH=x86_64 vmlinux)"
        case .notExecutable(let type):
            let what = type == 1 ? "a relocatable object file" : type == 4 ? "a core dump" : "not an executable"
            return "this ELF is \(what) (e_type \(type)), not a linked kernel; pass the linked `vmlinux` from the top of the kernel build tree"
        case .badProgramHeaderSize(let size):
            return "the ELF header says program headers are \(size) bytes (e_phentsize), but ELF64 program headers are 56;"
                + " the file is damaged: " + Self.rebuildAdvice
        case .truncatedHeader(let fileSize):
            return "the ELF file is truncated: the ELF header needs bytes up to \(ELF64Header.size) but the file has \(fileSize); "
                + Self.rebuildAdvice
        case .truncatedProgramHeader(let index, let end, let fileSize):
            return "the ELF file is truncated: program header \(index) needs bytes up to \(end) but the file has \(fileSize); "
                + Self.rebuildAdvice
        case .truncatedSegment(let index, let end, let fileSize):
            return "the ELF file is truncated: segment \(index) needs bytes up to \(end) but the file has \(fileSize); "
                + Self.rebuildAdvice
        case .fileSizeExceedsMemorySize(let index, let fileSize, let memorySize):
            return "segment \(index) is damaged: p_filesz (\(fileSize)) is larger than p_memsz (\(memorySize)); "
                + Self.rebuildAdvice
        case .addressOverflow(let index):
            return "segment \(index) is damaged: its file or memory range runs past the end of the 64-bit address space; "
                + Self.rebuildAdvice
        case .noLoadableSegments:
            return "the ELF has no PT_LOAD segments, so there is nothing to load (a debug-info-only file looks like this); "
                + Self.vmlinuxAdvice
        case .segmentBelowHighMemory(let index, let start):
            return "segment \(index) loads at \(hex(start)), below 1 MiB, where swiftvm keeps the zero page and boot tables;"
                + " an x86_64 `vmlinux` loads at CONFIG_PHYSICAL_START (16 MiB by default): pass a Linux x86_64 `vmlinux`"
        case .segmentOutsideRAM(let index, let start, let end, let ramSize):
            let range = "segment \(index) [\(hex(start)), \(hex(end)))"
            let gapStart = X86Layout.mmioGapStart.rawValue
            if end > gapStart, start < X86Layout.mmioGapEnd.rawValue {
                return "\(range) overlaps the MMIO gap [\(hex(gapStart)), \(hex(X86Layout.mmioGapEnd.rawValue))), where there is no RAM;"
                    + " build the kernel to load below 3 GiB (CONFIG_PHYSICAL_START)"
            }
            // RAM above 4 GiB is what did not fit below the gap, so discount the gap.
            let ramEnd = end > gapStart ? end - (X86Layout.mmioGapEnd.rawValue - gapStart) : end
            let needed = (ramEnd + (1 << 20) - 1) >> 20
            return "\(range) does not fit in guest RAM (\(describeByteCount(ramSize)));"
                + " give the guest more --memory (at least \(needed) MiB, plus room for the kernel to run)"
        case .entryOutsideSegments(let entry):
            return "the ELF entry point \(hex(entry)) is not inside any loaded segment; the file is not a bootable kernel: "
                + Self.vmlinuxAdvice
        case .readFailed(let error):
            return "cannot read the kernel file: \(error)"
        case .bzImageProtocolTooOld(let version):
            return "this bzImage uses Linux boot protocol \(KernelFormat.protocolString(version)), but swiftvm needs 2.12 or later"
                + " (Linux 3.8 and newer), whose xloadflags can announce a 64-bit entry point;"
                + " boot a newer kernel, or pass this kernel's ELF `vmlinux`"
        case .bzImageNo64BitEntry(let version):
            return "this bzImage (Linux boot protocol \(KernelFormat.protocolString(version))) has no 64-bit entry point"
                + " (XLF_KERNEL_64 is clear in xloadflags): it is a 32-bit kernel, and swiftvm enters kernels in 64-bit mode;"
                + " build the kernel for x86_64 (make ARCH=x86_64 bzImage) or pass an x86_64 `vmlinux`"
        case .bzImageTruncated(let version, let needed, let fileSize):
            return "this bzImage (Linux boot protocol \(KernelFormat.protocolString(version))) is truncated:"
                + " its setup header and code need bytes up to \(needed) but the file has \(fileSize); "
                + "copy `arch/x86/boot/bzImage` again or rebuild the kernel"
        case .bzImageOutsideRAM(let start, let end, let ramSize):
            let needed = (end + (1 << 20) - 1) >> 20
            if end > X86Layout.mmioGapStart.rawValue {
                return "the bzImage needs [\(hex(start)), \(hex(end))) for itself and its decompressed kernel (init_size),"
                    + " which runs into the MMIO gap at \(hex(X86Layout.mmioGapStart.rawValue)); the kernel is too large to boot"
            }
            return "the bzImage needs [\(hex(start)), \(hex(end))) for itself and its decompressed kernel (init_size),"
                + " more than guest RAM (\(describeByteCount(ramSize))) holds;"
                + " give the guest more --memory (at least \(needed) MiB, plus room for the kernel to run)"
        case .pvhNoteMissing:
            return "--boot-protocol pvh needs a PVH entry point, but this ELF carries no XEN_ELFNOTE_PHYS32_ENTRY note"
                + " (Linux adds it with CONFIG_PVH=y); use --boot-protocol linux64 (or auto) for its 64-bit entry"
        case .pvhNotForBzImage(let version):
            return "--boot-protocol pvh needs an ELF `vmlinux` with a PVH note, but this is a bzImage"
                + " (Linux boot protocol \(KernelFormat.protocolString(version))), which swiftvm enters at its 64-bit entry;"
                + " pass the `vmlinux` of the same build, or use --boot-protocol linux64 (or auto)"
        case .pvhEntryInvalid(let entry):
            return "the PVH note's entry point \(hex(entry)) is not inside a loaded segment below 4 GiB, so it cannot be"
                + " entered in 32-bit mode; the note is damaged: use --boot-protocol linux64, or " + Self.rebuildAdvice
        }
    }

    /// A shell command that decompresses FILE in `format` to `vmlinux`.
    static func decompressCommand(_ format: String) -> String {
        switch format {
        case "gzip": "gunzip -c FILE > vmlinux"
        case "xz": "xz -dc FILE > vmlinux"
        case "zstd": "zstd -dc FILE > vmlinux"
        case "bzip2": "bzip2 -dc FILE > vmlinux"
        case "lz4": "lz4 -dc FILE > vmlinux"
        case "lzma": "xz --format=lzma -dc FILE > vmlinux"
        case "lzo": "lzop -dc FILE > vmlinux"
        default: "decompress FILE to vmlinux"
        }
    }
}
