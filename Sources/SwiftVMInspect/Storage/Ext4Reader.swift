import SwiftVMMemory

/// A read-only view of an ext2/3/4 file system in an image, for checking a
/// root file system before a guest boots from it.
///
/// Nothing in the image is trusted: block numbers are checked against the
/// block count, lengths against the structures that hold them, and every walk
/// (extent trees, directories, symbolic links) has a bound. One reader is one
/// inspection: all its work together is bounded too (`Limits`), and what it
/// has read is kept for the next lookup. The journal is not replayed, so a
/// file system that was not cleanly unmounted reads as its last checkpoint did.
public struct Ext4Reader {
    public let superblock: Ext4Superblock
    let image: any ImageSource
    let groupCount: UInt64
    /// The work count and the caches, shared by copies of this reader.
    let work: Ext4Work

    /// The root directory's inode number (EXT4_ROOT_INO).
    public static let rootInodeNumber: UInt32 = 2
    /// The most bytes of a directory this reader loads (a directory larger than
    /// this has about a million entries, or a damaged size).
    public static let maxDirectoryBytes: UInt64 = 32 << 20
    /// The longest symbolic link target (PATH_MAX less the terminating NUL).
    public static let maxLinkLength: UInt64 = 4095

    /// Reads and checks the superblock. Every later read and lookup counts
    /// against `limits`.
    public init(_ image: some ImageSource, limits: Limits = .standard) throws(Ext4Error) {
        self.image = image
        self.work = Ext4Work(limits: limits)
        let raw: [UInt8]
        do { raw = try image.bytes(at: Ext4Superblock.offset, count: 1024) } catch {
            throw Ext4Error(.notExtFileSystem, "the image is too small to hold an ext superblock (\(image.size) bytes)")
        }
        guard let superblock = Ext4Superblock(superblock: raw) else {
            throw Ext4Error(.notExtFileSystem, "no ext2/3/4 superblock: the magic at byte 1080 is not 0xEF53")
        }
        func corrupt(_ message: String) -> Ext4Error { Ext4Error(.corrupt, "the superblock is damaged: \(message)") }
        guard (1024...65536).contains(superblock.blockSize) else {
            throw corrupt("block size field gives \(superblock.blockSize) bytes")
        }
        let inodeSize = UInt64(superblock.inodeSize)
        guard inodeSize >= 128, inodeSize <= superblock.blockSize, inodeSize & (inodeSize - 1) == 0 else {
            throw corrupt("inode size \(inodeSize) is not a power of two between 128 and the block size")
        }
        let bitsPerBlock = UInt32(superblock.blockSize * 8)
        guard superblock.blocksPerGroup > 0, superblock.blocksPerGroup <= bitsPerBlock else {
            throw corrupt("\(superblock.blocksPerGroup) blocks per group (1 to \(bitsPerBlock) fit a bitmap)")
        }
        guard superblock.inodesPerGroup > 0, superblock.inodesPerGroup <= bitsPerBlock else {
            throw corrupt("\(superblock.inodesPerGroup) inodes per group (1 to \(bitsPerBlock) fit a bitmap)")
        }
        let descriptorSize = UInt64(superblock.descriptorSize)
        guard descriptorSize >= 32, descriptorSize <= 1024, descriptorSize & (descriptorSize - 1) == 0 else {
            throw corrupt("group descriptor size \(descriptorSize) (32, or a power of two from 64 with 64bit)")
        }
        guard UInt64(superblock.firstDataBlock) < superblock.blockCount else {
            throw corrupt("first data block \(superblock.firstDataBlock) is past the block count \(superblock.blockCount)")
        }
        if superblock.hasIncompat(Ext4Superblock.Incompat.journalDevice) {
            throw Ext4Error(.unsupported, "the image is an external ext journal device, not a file system")
        }
        if superblock.hasIncompat(Ext4Superblock.Incompat.compression) || superblock.hasIncompat(Ext4Superblock.Incompat.directoryData) {
            throw Ext4Error(.unsupported, "the file system uses compression or dirdata, which Linux's ext4 driver does not mount")
        }
        let groupedBlocks = superblock.blockCount - UInt64(superblock.firstDataBlock)
        let blocksPerGroup = UInt64(superblock.blocksPerGroup)
        let groups = groupedBlocks / blocksPerGroup + (groupedBlocks % blocksPerGroup == 0 ? 0 : 1)
        let inodesInGroups = groups.multipliedReportingOverflow(by: UInt64(superblock.inodesPerGroup))
        guard !inodesInGroups.overflow, UInt64(superblock.inodeCount) <= inodesInGroups.partialValue else {
            throw corrupt("\(superblock.inodeCount) inodes do not fit \(groups) groups of \(superblock.inodesPerGroup)")
        }
        self.superblock = superblock
        self.groupCount = groups
    }

    /// The root directory.
    public func root() throws(Ext4Error) -> Ext4Inode { try inode(Ext4Reader.rootInodeNumber) }

    /// Reads inode `number` from its group's inode table.
    public func inode(_ number: UInt32) throws(Ext4Error) -> Ext4Inode {
        if let known = work.inodes[number] { return known }
        guard number >= 1, number <= superblock.inodeCount else {
            throw Ext4Error(.corrupt, "inode \(number) does not exist (the file system has \(superblock.inodeCount))")
        }
        let group = UInt64(number - 1) / UInt64(superblock.inodesPerGroup)
        let index = UInt64(number - 1) % UInt64(superblock.inodesPerGroup)
        let table = try inodeTable(group: group)
        let tableBytes = UInt64(superblock.inodesPerGroup) * UInt64(superblock.inodeSize)
        let tableBlocks = (tableBytes + superblock.blockSize - 1) / superblock.blockSize
        guard table < superblock.blockCount, superblock.blockCount - table >= tableBlocks else {
            throw Ext4Error(.corrupt, "group \(group)'s inode table at block \(table) runs past the end of the file system")
        }
        let offset = try byteOffset(block: table, what: "group \(group)'s inode table") + index * UInt64(superblock.inodeSize)
        let raw = try readBytes(at: offset, count: min(Int(superblock.inodeSize), 256), what: "inode \(number)")
        guard let inode = Ext4Inode(number: number, bytes: raw) else {
            throw Ext4Error(.corrupt, "inode \(number) is shorter than 128 bytes")
        }
        guard inode.mode != 0 else {
            throw Ext4Error(.corrupt, "inode \(number) is in use by a directory entry but is empty (mode 0)")
        }
        work.inodes[number] = inode
        return inode
    }

    /// The first block of group `group`'s inode table, from its descriptor.
    func inodeTable(group: UInt64) throws(Ext4Error) -> UInt64 {
        if let known = work.inodeTables[group] { return known }
        guard group < groupCount else {
            throw Ext4Error(.corrupt, "block group \(group) does not exist (the file system has \(groupCount))")
        }
        let descriptor = try readBytes(
            at: try descriptorOffset(group: group), count: Int(superblock.descriptorSize), what: "group descriptor \(group)")
        var table = UInt64(descriptor.loadLittleEndian(UInt32.self, at: 0x08) ?? 0)
        if superblock.descriptorSize >= 64 {
            table |= UInt64(descriptor.loadLittleEndian(UInt32.self, at: 0x28) ?? 0) << 32
        }
        guard table > UInt64(superblock.firstDataBlock), table < superblock.blockCount else {
            throw Ext4Error(.corrupt, "group descriptor \(group) is damaged: its inode table block \(table) is outside the file system")
        }
        work.inodeTables[group] = table
        return table
    }

    /// Where group `group`'s descriptor lies. The descriptor table follows the
    /// superblock's block, except that META_BG places each descriptor block
    /// from `s_first_meta_bg` on in the first group it describes.
    func descriptorOffset(group: UInt64) throws(Ext4Error) -> UInt64 {
        let descriptorSize = UInt64(superblock.descriptorSize)
        let perBlock = superblock.blockSize / descriptorSize
        let tableBlock = group / perBlock
        var block = UInt64(superblock.firstDataBlock) + 1 + tableBlock
        if superblock.hasIncompat(Ext4Superblock.Incompat.metaBlockGroups), tableBlock >= UInt64(superblock.firstMetaBlockGroup) {
            let first = tableBlock * perBlock
            block = UInt64(superblock.firstDataBlock) + first * UInt64(superblock.blocksPerGroup) + (hasSuperblockCopy(group: first) ? 1 : 0)
        }
        guard block < superblock.blockCount else {
            throw Ext4Error(.corrupt, "group descriptor \(group) would lie at block \(block), past the end of the file system")
        }
        return try byteOffset(block: block, what: "group descriptor \(group)") + (group % perBlock) * descriptorSize
    }

    /// Whether group `group` starts with a superblock copy: every group
    /// without sparse_super; with it, 0, 1 and the powers of 3, 5 and 7.
    func hasSuperblockCopy(group: UInt64) -> Bool {
        if group == 0 { return true }
        if superblock.hasCompat(Ext4Superblock.Compat.sparseSuper2) {
            return superblock.backupBlockGroups.contains { UInt64($0) == group }
        }
        if !superblock.hasROCompat(Ext4Superblock.ROCompat.sparseSuper) { return true }
        if group == 1 { return true }
        for base: UInt64 in [3, 5, 7] {
            var power = base
            while power < group {
                let next = power.multipliedReportingOverflow(by: base)
                if next.overflow { break }
                power = next.partialValue
            }
            if power == group { return true }
        }
        return false
    }

    /// Reads one whole block; `number` must lie inside the file system.
    func block(_ number: UInt64, what: @autoclosure () -> String) throws(Ext4Error) -> [UInt8] {
        guard number < superblock.blockCount else {
            throw Ext4Error(.corrupt, "\(what()) points to block \(number), past the file system's \(superblock.blockCount) blocks")
        }
        return try readBytes(at: try byteOffset(block: number, what: what()), count: Int(superblock.blockSize), what: what())
    }

    /// The byte offset of block `number`. A damaged block count can claim more
    /// than 2^64 bytes; an offset that overflows is past the end of any image.
    func byteOffset(block number: UInt64, what: @autoclosure () -> String) throws(Ext4Error) -> UInt64 {
        let offset = number.multipliedReportingOverflow(by: superblock.blockSize)
        guard !offset.overflow, offset.partialValue <= UInt64.max - superblock.blockSize else {
            throw Ext4Error(.truncated, "\(what()) lies at block \(number), past the end of the \(image.size)-byte image")
        }
        return offset.partialValue
    }

    /// Reads `count` bytes at `offset`, counted against the work limit.
    func readBytes(at offset: UInt64, count: Int, what: @autoclosure () -> String) throws(Ext4Error) -> [UInt8] {
        try work.read(count)
        do { return try image.bytes(at: offset, count: count) } catch {
            if error.reason == nil {
                throw Ext4Error(
                    .truncated,
                    "\(what()) lies at byte \(offset), past the end of the \(image.size)-byte image (it is truncated)")
            }
            throw Ext4Error(.readFailed, "cannot read \(what()): \(error)")
        }
    }
}
