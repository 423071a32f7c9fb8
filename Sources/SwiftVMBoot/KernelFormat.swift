import SwiftVMMemory

/// What kind of file a kernel image is, judged from its first bytes.
///
/// The loader only boots an x86_64 ELF `vmlinux`; the other cases exist so
/// that a user who passes the wrong file hears what it is and what to pass.
public enum KernelFormat: Equatable, Sendable, CustomStringConvertible {
    /// An ELF file; `class` is 32 or 64 (0 when EI_CLASS is invalid).
    case elf(class: Int, machine: UInt16, machineName: String)
    /// A bzImage; the version is major << 8 | minor, e.g. 0x020f for 2.15.
    case bzImage(protocolVersion: UInt16)
    /// An arm64 `Image` (arm64 booting.rst), with or without an EFI stub.
    case arm64Image
    /// A PE/COFF executable (an EFI application) that is neither of the above.
    case peImage
    /// A compressed file: "gzip", "xz", "zstd", "bzip2", "lz4", "lzma" or "lzo".
    case compressed(format: String)
    case empty
    case unknown

    /// How many leading bytes ``detect(_:)`` looks at.
    public static let probeSize = 4096

    /// Identifies `source` from at most its first ``probeSize`` bytes.
    /// A file that cannot be read is ``unknown``.
    public static func detect(_ source: some ImageSource) -> KernelFormat {
        do throws(ImageReadError) { return try probe(source) } catch { return .unknown }
    }

    /// Like ``detect(_:)`` but passes read errors on, so the loader can report them.
    static func probe(_ source: some ImageSource) throws(ImageReadError) -> KernelFormat {
        guard source.size > 0 else { return .empty }
        let head = try source.bytes(at: 0, count: Int(min(source.size, UInt64(probeSize))))
        return identify(head)
    }

    static func identify(_ head: [UInt8]) -> KernelFormat {
        if head.isEmpty { return .empty }
        if head.starts(with: [0x7f, 0x45, 0x4c, 0x46]) { return elf(head) }
        // An arm64 Image with an EFI stub also starts with "MZ", and so does
        // an x86 bzImage built with CONFIG_EFI_STUB: check both magics first.
        if head.loadLittleEndian(UInt32.self, at: 0x38) == 0x644d_5241 { return .arm64Image }
        if head.loadLittleEndian(UInt16.self, at: 0x1fe) == 0xaa55,
            head.loadLittleEndian(UInt32.self, at: 0x202) == 0x5372_6448
        {
            return .bzImage(protocolVersion: head.loadLittleEndian(UInt16.self, at: 0x206) ?? 0)
        }
        if head.starts(with: Array("MZ".utf8)) { return .peImage }
        for (magic, format) in compressionMagics where head.starts(with: magic) {
            return .compressed(format: format)
        }
        return .unknown
    }

    /// Leading magic bytes of the compressors Linux can build kernels with.
    public static let compressionMagics: [([UInt8], String)] = [
        ([0x1f, 0x8b], "gzip"),
        ([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], "xz"),
        ([0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        ([0x42, 0x5a, 0x68], "bzip2"),
        ([0x02, 0x21, 0x4c, 0x18], "lz4"),  // legacy frame, as the kernel's lz4 uses
        ([0x04, 0x22, 0x4d, 0x18], "lz4"),
        ([0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a], "lzo"),
        ([0x5d, 0x00, 0x00], "lzma"),
    ]

    private static func elf(_ head: [UInt8]) -> KernelFormat {
        // e_ident[EI_CLASS] at 4, e_ident[EI_DATA] at 5, e_machine at 18 in
        // both classes (System V gABI, "ELF Header").
        let elfClass = head.count > 4 ? head[4] : 0
        let bits = elfClass == 1 ? 32 : elfClass == 2 ? 64 : 0
        let bigEndian = head.count > 5 && head[5] == 2
        let raw = head.loadLittleEndian(UInt16.self, at: 18) ?? 0
        let machine = bigEndian ? raw.byteSwapped : raw
        return .elf(class: bits, machine: machine, machineName: ELFMachine.name(machine))
    }

    public var description: String {
        switch self {
        case .elf(let bits, let machine, let name):
            bits == 0 ? "an ELF file with an invalid class" : "a \(bits)-bit ELF for \(name) (e_machine \(machine))"
        case .bzImage(let version):
            "a bzImage (Linux boot protocol \(Self.protocolString(version)))"
        case .arm64Image: "an arm64 Linux Image"
        case .peImage: "a PE/COFF (EFI) executable"
        case .compressed(let format): "a \(format)-compressed file"
        case .empty: "an empty file"
        case .unknown: "a file of unknown format"
        }
    }

    /// "2.15" for 0x020f.
    public static func protocolString(_ version: UInt16) -> String {
        "\(version >> 8).\(version & 0xff)"
    }
}

/// Names for the e_machine values a user is likely to pass by mistake.
public enum ELFMachine {
    public static let x86_64: UInt16 = 62

    public static func name(_ machine: UInt16) -> String {
        switch machine {
        case 2: "SPARC"
        case 3: "i386"
        case 8: "MIPS"
        case 20: "PowerPC"
        case 21: "PowerPC64"
        case 22: "s390"
        case 40: "ARM"
        case 43: "SPARC64"
        case 62: "x86_64"
        case 183: "AArch64"
        case 243: "RISC-V"
        case 258: "LoongArch"
        default: "machine \(machine)"
        }
    }
}
