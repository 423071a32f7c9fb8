import SwiftVMMemory

/// Why an arm64 kernel image could not be loaded. Each message says what the
/// file is and what to pass instead.
public enum Arm64ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    /// An ELF file: an arm64 `vmlinux`, or a kernel for another machine.
    case elf(class: Int, machine: UInt16)
    case bzImage(protocolVersion: UInt16)
    /// A PE/COFF file without the arm64 Image magic.
    case peImage
    case compressed(format: String)
    case unknownFormat(leadingBytes: [UInt8])
    /// The file ends before the 64-byte header does.
    case truncatedHeader(fileSize: UInt64)
    /// Flags bit 0 says the kernel is big-endian.
    case bigEndian
    case unsupportedPageSize(Arm64PageSize)
    /// The kernel needs [start, end) but RAM below the device tree ends at `limit`.
    case doesNotFit(start: UInt64, end: UInt64, limit: UInt64, ramSize: UInt64)
    case readFailed(ImageReadError)

    static let imageAdvice =
        "arm64 guests boot the uncompressed `arch/arm64/boot/Image` of an arm64 kernel build (make ARCH=arm64 Image)"

    public var description: String {
        switch self {
        case .empty:
            return "the kernel file is empty; " + Self.imageAdvice
        case .elf(let bits, let machine) where machine == 183 && bits == 64:
            // The seed: the arm64 build artefact is the flat Image, a PE-format
            // file booted through its EFI-stub header; the ELF is not read.
            return "this is the ELF `vmlinux` of an arm64 kernel build; arm64 boots `arch/arm64/boot/Image`, not vmlinux:"
                + " the Image is the flat, position-independent file with the boot header the loader reads."
                + " Pass arch/arm64/boot/Image from the same build tree (make ARCH=arm64 Image)"
        case .elf(let bits, let machine):
            let what = bits == 0 ? "an ELF with an invalid class" : "a \(bits)-bit ELF"
            return "this is \(what) for \(ELFMachine.name(machine)) (e_machine \(machine)), which cannot run in an arm64 guest; "
                + Self.imageAdvice
        case .bzImage(let version):
            return "this is an x86 bzImage (Linux boot protocol \(KernelFormat.protocolString(version))),"
                + " which cannot run in an arm64 guest; " + Self.imageAdvice
        case .peImage:
            return "this is a PE/COFF (EFI) executable without the arm64 Image magic \"ARM\\x64\" at offset 0x38,"
                + " so it is not a Linux arm64 Image; " + Self.imageAdvice
        case .compressed(let format):
            let command = KernelImageError.decompressCommand(format).replacingVmlinux()
            return "this file is \(format)-compressed (an Image.gz or similar); the loader does not decompress kernels."
                + " Decompress it first (\(command)) and pass the result; " + Self.imageAdvice
        case .unknownFormat(let bytes):
            let shown = bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
            return "the kernel file is not an arm64 Image: there is no \"ARM\\x64\" magic at offset 0x38 (it starts with \(shown)); "
                + Self.imageAdvice
        case .truncatedHeader(let fileSize):
            return "the kernel file is truncated: an arm64 Image header needs \(Arm64ImageHeader.size) bytes"
                + " but the file has \(fileSize); rebuild the kernel or copy arch/arm64/boot/Image again"
        case .bigEndian:
            return "this arm64 Image is built big-endian (header flags bit 0); swiftvm starts guests little-endian:"
                + " rebuild with CONFIG_CPU_BIG_ENDIAN unset"
        case .unsupportedPageSize(let size):
            return "this arm64 Image is built for \(size) pages (\(size.kconfig)); swiftvm boots 4 KiB-page kernels only,"
                + " the page size Firecracker's guest kernel policy supports and tests: rebuild with CONFIG_ARM64_4K_PAGES=y"
        case .doesNotFit(let start, let end, let limit, let ramSize):
            let (span, overflow) = (end - min(end, Arm64Layout.ramStart.rawValue))
                .addingReportingOverflow(Arm64Layout.fdtMaxSize + (1 << 20) - 1)
            guard !overflow, start != .max else {
                return "the Image header's text_offset and image_size put the kernel past the end of the 64-bit address space;"
                    + " the file is damaged: rebuild the kernel or copy arch/arm64/boot/Image again"
            }
            let needed = span >> 20
            return "the kernel needs [\(hex(start)), \(hex(end))) but guest RAM (\(describeByteCount(ramSize)))"
                + " ends at \(hex(limit)) below the device tree; give the guest more --memory"
                + " (at least \(needed) MiB, plus room for the kernel to run)"
        case .readFailed(let error):
            return "cannot read the kernel file: \(error)"
        }
    }
}

extension String {
    /// "gunzip -c FILE > vmlinux" becomes "gunzip -c FILE > Image".
    fileprivate func replacingVmlinux() -> String {
        guard hasSuffix("vmlinux") else { return self }
        return String(dropLast("vmlinux".count)) + "Image"
    }
}
