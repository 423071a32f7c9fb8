import SwiftVMMemory

/// File contents: mapping a file's logical blocks to blocks of the image,
/// through an extent tree (ext4, EXT4_EXTENTS_FL) or the classic direct and
/// indirect block pointers (ext2/ext3).
extension Ext4Reader {
    /// Extent tree limits: the kernel never builds one deeper than 5.
    static let maxExtentDepth: UInt16 = 5
    static let extentMagic: UInt16 = 0xf30a

    /// Up to `maxBytes` of the file's contents (all of it when shorter).
    /// Holes and unwritten extents read as zeros.
    public func read(_ inode: Ext4Inode, maxBytes: Int) throws(Ext4Error) -> [UInt8] {
        if inode.hasInlineData {
            throw Ext4Error(
                .unsupported,
                "inode \(inode.number) keeps its data inside the inode (inline_data), which swiftvm does not read")
        }
        let length = Int(min(inode.size, UInt64(max(maxBytes, 0))))
        if inode.fileType == .symlink, isFastSymlink(inode) {
            return Array(inode.blockField.prefix(length))
        }
        if length == 0 { return [] }
        // A damaged size must not turn into an allocation larger than the file system.
        guard UInt64(length) <= superblock.fileSystemSize else {
            throw Ext4Error(
                .corrupt,
                "inode \(inode.number) claims \(inode.size) bytes, more than the \(superblock.fileSystemSize)-byte file system holds")
        }
        let blockSize = Int(superblock.blockSize)
        let blockCount = (length + blockSize - 1) / blockSize
        let map = try physicalBlocks(of: inode, count: blockCount)
        var data: [UInt8] = []
        data.reserveCapacity(blockCount * blockSize)
        for (logical, physical) in map.enumerated() {
            if let physical {
                data += try block(physical, what: "block \(logical) of inode \(inode.number)")
            } else {
                data += [UInt8](repeating: 0, count: blockSize)
            }
        }
        return Array(data.prefix(length))
    }

    /// A symlink whose target sits in `i_block` itself: no extents, shorter than
    /// 60 bytes, and no data blocks besides an extended-attribute block.
    func isFastSymlink(_ inode: Ext4Inode) -> Bool {
        guard !inode.usesExtents, inode.size < UInt64(Ext4Inode.blockFieldSize) else { return false }
        let attributeSectors = inode.attributeBlock != 0 ? superblock.blockSize / 512 : 0
        return inode.sectorCount <= attributeSectors
    }

    /// The image block holding each of the first `count` logical blocks; nil for a hole.
    func physicalBlocks(of inode: Ext4Inode, count: Int) throws(Ext4Error) -> [UInt64?] {
        var map = [UInt64?](repeating: nil, count: count)
        if inode.usesExtents {
            var budget = 4096 + count  // tree nodes read; a sane tree needs far fewer
            try walkExtents(
                node: inode.blockField, expectedDepth: nil, inode: inode, map: &map, budget: &budget)
        } else {
            try mapIndirect(inode: inode, map: &map)
        }
        return map
    }

    /// Walks one extent tree node (ext4 docs, "Extent Tree"): a 12-byte header
    /// (magic 0xF30A, entries, max, depth), then 12-byte index entries (depth > 0)
    /// or leaf extents (depth 0). Only subtrees that reach into `map` are read.
    private func walkExtents(
        node: [UInt8], expectedDepth: UInt16?, inode: Ext4Inode, map: inout [UInt64?], budget: inout Int
    ) throws(Ext4Error) {
        func corrupt(_ message: String) -> Ext4Error {
            Ext4Error(.corrupt, "the extent tree of inode \(inode.number) is damaged: \(message)")
        }
        budget -= 1
        guard budget >= 0 else { throw corrupt("it has more nodes than its size allows") }
        guard node.loadLittleEndian(UInt16.self, at: 0) == Ext4Reader.extentMagic,
            let entries = node.loadLittleEndian(UInt16.self, at: 2),
            let capacity = node.loadLittleEndian(UInt16.self, at: 4),
            let depth = node.loadLittleEndian(UInt16.self, at: 6)
        else { throw corrupt("a node has no 0xF30A header") }
        let fits = (node.count - 12) / 12
        guard Int(capacity) <= fits, entries <= capacity else {
            throw corrupt("a node claims \(entries) of \(capacity) entries where \(fits) fit")
        }
        guard depth <= Ext4Reader.maxExtentDepth else { throw corrupt("depth \(depth) (at most 5)") }
        if let expectedDepth, depth != expectedDepth {
            throw corrupt("a node at depth \(depth) sits below one at depth \(expectedDepth + 1)")
        }
        for index in 0..<Int(entries) {
            let at = 12 + 12 * index
            let logical = UInt64(node.loadLittleEndian(UInt32.self, at: at) ?? 0)
            if logical >= UInt64(map.count) { break }  // entries are sorted; the rest lie beyond what is read
            if depth > 0 {
                let child = UInt64(node.loadLittleEndian(UInt32.self, at: at + 4) ?? 0)
                    | UInt64(node.loadLittleEndian(UInt16.self, at: at + 8) ?? 0) << 32
                guard child > UInt64(superblock.firstDataBlock), child < superblock.blockCount else {
                    throw corrupt("an index points to block \(child), outside the file system")
                }
                let bytes = try block(child, what: "an extent tree node of inode \(inode.number)")
                try walkExtents(
                    node: bytes, expectedDepth: depth - 1, inode: inode, map: &map, budget: &budget)
            } else {
                var length = UInt64(node.loadLittleEndian(UInt16.self, at: at + 4) ?? 0)
                let start = UInt64(node.loadLittleEndian(UInt16.self, at: at + 6) ?? 0) << 32
                    | UInt64(node.loadLittleEndian(UInt32.self, at: at + 8) ?? 0)
                // Lengths over 32768 mark an unwritten (preallocated) extent, which reads as zeros.
                let unwritten = length > 32768
                if unwritten { length -= 32768 }
                guard length > 0 else { throw corrupt("an extent at logical block \(logical) has length 0") }
                guard start > UInt64(superblock.firstDataBlock), start < superblock.blockCount,
                    superblock.blockCount - start >= length
                else {
                    throw corrupt("an extent maps to blocks \(start)..<\(start &+ length), outside the file system")
                }
                if unwritten { continue }
                let end = min(logical + length, UInt64(map.count))
                for block in logical..<end { map[Int(block)] = start + (block - logical) }
            }
        }
    }

    /// The classic block map (ext2/ext3): 12 direct pointers in `i_block`, then
    /// one single, one double and one triple indirect block of 32-bit pointers.
    private func mapIndirect(inode: Ext4Inode, map: inout [UInt64?]) throws(Ext4Error) {
        let perBlock = UInt64(superblock.blockSize / 4)
        var cache: [UInt64: [UInt8]] = [:]
        func pointer(in bytes: [UInt8], _ index: UInt64) throws(Ext4Error) -> UInt64? {
            let value = UInt64(bytes.loadLittleEndian(UInt32.self, at: Int(index) * 4) ?? 0)
            if value == 0 { return nil }
            guard value > UInt64(superblock.firstDataBlock), value < superblock.blockCount else {
                throw Ext4Error(
                    .corrupt, "the block map of inode \(inode.number) is damaged: it points to block \(value), outside the file system")
            }
            return value
        }
        func indirect(_ number: UInt64) throws(Ext4Error) -> [UInt8] {
            if let bytes = cache[number] { return bytes }
            let bytes = try block(number, what: "an indirect block of inode \(inode.number)")
            cache[number] = bytes
            return bytes
        }
        for logical in 0..<UInt64(map.count) {
            var rest = logical
            if rest < 12 {
                map[Int(logical)] = try pointer(in: inode.blockField, rest)
                continue
            }
            rest -= 12
            // The levels of indirection for this block, and the slot in i_block that starts them.
            var levels = 1
            var span = perBlock
            while rest >= span {
                rest -= span
                levels += 1
                guard levels <= 3 else {
                    throw Ext4Error(.corrupt, "inode \(inode.number) is larger than a triple-indirect block map can address")
                }
                span *= perBlock
            }
            guard var current = try pointer(in: inode.blockField, UInt64(11 + levels)) else { continue }
            var found: UInt64? = current
            for level in stride(from: levels - 1, through: 0, by: -1) {
                var divisor: UInt64 = 1
                for _ in 0..<level { divisor *= perBlock }
                let slot = (rest / divisor) % perBlock
                found = try pointer(in: try indirect(current), slot)
                guard let next = found else { break }
                current = next
            }
            map[Int(logical)] = found
        }
    }
}
