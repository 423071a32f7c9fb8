import SwiftVMMemory

/// What a drive image holds, read from its first sectors before the guest
/// boots, so that a rootfs the kernel could not mount is reported up front.
///
/// The facts checked are the ones the kernel's ext4 driver checks first:
/// the superblock at byte 1024 with magic 0xEF53 at offset 0x38, the revision
/// (`s_rev_level`, 1 = dynamic), the inode size and the block size
/// (2^(10 + `s_log_block_size`)).
public enum DiskImageContent: Equatable, Sendable {
    case ext(Ext4Superblock)
    case partitionTable(PartitionTableKind)
    case otherFileSystem(String)
    case compressed(String)
    case zeros
    case empty
    case unknown

    public enum PartitionTableKind: String, Sendable {
        case mbr = "an MBR (DOS) partition table"
        case gpt = "a GPT partition table"
    }
}

/// The ext2/3/4 superblock fields swiftvm reports.
public struct Ext4Superblock: Equatable, Sendable {
    public static let offset: UInt64 = 1024
    public static let magic: UInt16 = 0xef53

    public var revision: UInt32
    public var inodeSize: UInt16
    public var blockSize: UInt64
    public var blockCount: UInt64
    public var featureCompat: UInt32
    public var featureIncompat: UInt32
    public var featureROCompat: UInt32
    public var volumeName: String
    /// `s_inodes_count`.
    public var inodeCount: UInt32
    /// `s_first_data_block`: 1 on 1 KiB-block file systems, else 0.
    public var firstDataBlock: UInt32
    /// `s_blocks_per_group`.
    public var blocksPerGroup: UInt32
    /// `s_inodes_per_group`.
    public var inodesPerGroup: UInt32
    /// Bytes per block group descriptor: `s_desc_size` with INCOMPAT_64BIT, else 32.
    public var descriptorSize: UInt16
    /// `s_first_meta_bg`: where META_BG descriptor placement starts.
    public var firstMetaBlockGroup: UInt32
    /// `s_backup_bgs`: the two groups holding superblock copies under COMPAT_SPARSE_SUPER2.
    public var backupBlockGroups: [UInt32]

    /// Bytes the file system says it spans.
    public var fileSystemSize: UInt64 { blockCount &* blockSize }

    /// ext4 when it uses any ext4-only feature, ext3 with a journal, else ext2.
    public var flavor: String {
        if featureIncompat & (0x40 | 0x80 | 0x200) != 0 { return "ext4" }  // extents, 64bit, flex_bg
        if featureCompat & 0x4 != 0 { return "ext3" }  // has_journal
        return "ext2"
    }

    /// Parses the 1024-byte superblock; nil when the magic is wrong.
    public init?(superblock bytes: [UInt8]) {
        guard bytes.count >= 1024, (bytes.loadLittleEndian(UInt16.self, at: 0x38) ?? 0) == Ext4Superblock.magic else { return nil }
        revision = (bytes.loadLittleEndian(UInt32.self, at: 0x4c) ?? 0)
        // Revision 0 file systems have fixed 128-byte inodes and no field for it.
        inodeSize = revision == 0 ? 128 : (bytes.loadLittleEndian(UInt16.self, at: 0x58) ?? 0)
        let logBlockSize = (bytes.loadLittleEndian(UInt32.self, at: 0x18) ?? 0)
        blockSize = logBlockSize < 7 ? 1024 << UInt64(logBlockSize) : 0
        featureCompat = (bytes.loadLittleEndian(UInt32.self, at: 0x5c) ?? 0)
        featureIncompat = (bytes.loadLittleEndian(UInt32.self, at: 0x60) ?? 0)
        featureROCompat = (bytes.loadLittleEndian(UInt32.self, at: 0x64) ?? 0)
        var count = UInt64((bytes.loadLittleEndian(UInt32.self, at: 0x04) ?? 0))
        if featureIncompat & 0x80 != 0 { count |= UInt64((bytes.loadLittleEndian(UInt32.self, at: 0x150) ?? 0)) << 32 }
        blockCount = count
        let name = bytes[0x78..<0x88].prefix { $0 != 0 }
        volumeName = String(decoding: name, as: UTF8.self)
        inodeCount = bytes.loadLittleEndian(UInt32.self, at: 0x00) ?? 0
        firstDataBlock = bytes.loadLittleEndian(UInt32.self, at: 0x14) ?? 0
        blocksPerGroup = bytes.loadLittleEndian(UInt32.self, at: 0x20) ?? 0
        inodesPerGroup = bytes.loadLittleEndian(UInt32.self, at: 0x28) ?? 0
        descriptorSize = featureIncompat & 0x80 != 0 ? (bytes.loadLittleEndian(UInt16.self, at: 0xfe) ?? 0) : 32
        firstMetaBlockGroup = bytes.loadLittleEndian(UInt32.self, at: 0x104) ?? 0
        backupBlockGroups = [0x24c, 0x250].map { bytes.loadLittleEndian(UInt32.self, at: $0) ?? 0 }
    }
}

/// A problem with a drive image that would stop the guest from using it.
public struct DiskImageFinding: Equatable, Sendable, CustomStringConvertible {
    public enum Severity: Equatable, Sendable { case error, warning }
    public var severity: Severity
    public var message: String

    public init(severity: Severity, message: String) {
        self.severity = severity
        self.message = message
    }

    public var description: String { message }
}

public enum DiskImageProbe {
    /// Identifies the image's content from its first 64 KiB.
    public static func identify(_ image: some ImageSource) -> DiskImageContent {
        if image.size == 0 { return .empty }
        let count = Int(min(image.size, 0x10100))
        guard let bytes = try? image.bytes(at: 0, count: count) else { return .unknown }
        if count >= 2048, let superblock = Ext4Superblock(superblock: Array(bytes[1024..<2048])) {
            return .ext(superblock)
        }
        if count >= 520, bytes[512..<520].elementsEqual("EFI PART".utf8) { return .partitionTable(.gpt) }
        func starts(_ magic: [UInt8], at offset: Int = 0) -> Bool {
            count >= offset + magic.count && bytes[offset..<offset + magic.count].elementsEqual(magic)
        }
        if starts(Array("hsqs".utf8)) { return .otherFileSystem("squashfs") }
        if starts(Array("XFSB".utf8)) { return .otherFileSystem("XFS") }
        if starts(Array("_BHRfS_M".utf8), at: 0x10040) { return .otherFileSystem("Btrfs") }
        if starts(Array("CD001".utf8), at: 0x8001) { return .otherFileSystem("ISO 9660") }
        if starts([0x1f, 0x8b]) { return .compressed("gzip") }
        if starts([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) { return .compressed("xz") }
        if starts([0x28, 0xb5, 0x2f, 0xfd]) { return .compressed("zstd") }
        if starts([0x30, 0x37, 0x30, 0x37, 0x30]) { return .otherFileSystem("cpio archive (an initramfs, not a disk image)") }
        // An MBR: boot signature plus at least one partition entry with a type.
        if count >= 512, bytes[510] == 0x55, bytes[511] == 0xaa,
            (0..<4).contains(where: { bytes[446 + 16 * $0 + 4] != 0 })
        {
            return .partitionTable(.mbr)
        }
        if bytes.prefix(4096).allSatisfy({ $0 == 0 }) { return .zeros }
        return .unknown
    }

    /// What would go wrong using `image` as the root file system (`partuuid`
    /// given or not), worst first; empty when the image looks bootable.
    public static func rootFindings(_ image: some ImageSource, path: String, hasPartUUID: Bool) -> [DiskImageFinding] {
        let build = "build one with: mke2fs -t ext4 -d ROOTDIR \(path) 64M (scripts/build-rootfs.sh does this)"
        switch identify(image) {
        case .ext(let superblock):
            var findings: [DiskImageFinding] = []
            if superblock.blockSize == 0 {
                findings.append(.init(severity: .error, message: "the ext superblock of \(path) has an invalid block size; the image is damaged"))
            } else if superblock.fileSystemSize > image.size {
                findings.append(.init(
                    severity: .error,
                    message: "\(path) is truncated: its \(superblock.flavor) superblock says the file system spans "
                        + "\(superblock.fileSystemSize) bytes (\(superblock.blockCount) blocks of \(superblock.blockSize)), "
                        + "but the file has \(image.size) bytes; copy the whole image again"))
            }
            if superblock.revision != 1 {
                findings.append(.init(
                    severity: .warning,
                    message: "\(path) is a revision \(superblock.revision) \(superblock.flavor) file system; "
                        + "mkfs.ext4 makes revision 1 (dynamic), which modern features need"))
            }
            return findings
        case .partitionTable(let kind):
            if hasPartUUID { return [] }
            return [.init(
                severity: .error,
                message: "\(path) holds \(kind.rawValue), not a file system: the kernel cannot mount it as /dev/vda. "
                    + "Give the root partition's PARTUUID (--drive ...,partuuid=UUID, see `blkid` or `sfdisk --part-uuid`) "
                    + "so the command line says root=PARTUUID=..., or pass a bare ext4 image")]
        case .otherFileSystem(let name):
            return [.init(
                severity: .warning,
                message: "\(path) holds \(name), not ext4; the guest kernel needs a driver for it built in "
                    + "(the GuestConfigs kernels have ext4 only)")]
        case .compressed(let format):
            return [.init(severity: .error, message: "\(path) is \(format)-compressed; decompress it first")]
        case .zeros:
            return [.init(severity: .error, message: "\(path) has no file system (its first 4 KiB are zeros); \(build)")]
        case .empty:
            return [.init(severity: .error, message: "\(path) is empty; \(build)")]
        case .unknown:
            return [.init(
                severity: .warning,
                message: "\(path) has no ext2/3/4 superblock (magic 0xEF53 at byte 1080) and no format swiftvm recognizes; "
                    + "the kernel will likely fail with \"VFS: Unable to mount root fs\"")]
        }
    }
}
