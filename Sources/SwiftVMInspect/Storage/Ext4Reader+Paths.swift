import SwiftVMMemory

/// Directories and path lookup. Directories are read linearly (ext4 docs,
/// "Linear (Classic) Directories"): hashed (htree) directories keep their tree
/// in blocks that read as empty entries, so a linear walk sees every name.
extension Ext4Reader {
    /// The most symbolic links one lookup follows (the kernel's MAXSYMLINKS).
    public static let maxSymlinks = 40

    /// One step of a lookup through a symbolic link.
    public struct SymlinkHop: Equatable, Sendable {
        /// The link's path, with the links before it resolved.
        public var path: String
        /// What the link says.
        public var target: String

        public init(path: String, target: String) {
            self.path = path
            self.target = target
        }
    }

    /// Where a path leads.
    public struct Resolution: Equatable, Sendable {
        /// The inode found; nil when the path, or the end of a link chain, does not exist.
        public var inode: Ext4Inode?
        /// The path of what was found (or looked for), with every link resolved.
        public var path: String
        /// The symbolic links followed, in order.
        public var links: [SymlinkHop]
    }

    /// The entries of `directory`, "." and ".." included, in on-disk order.
    /// `type` is the directory entry's file type byte (1 regular, 2 directory,
    /// 7 symlink, ...; 0 when the file system does not record it).
    public func listDirectory(_ directory: Ext4Inode) throws(Ext4Error) -> [(name: String, inode: UInt32, type: UInt8)] {
        try entries(of: directory).map { (String(decoding: $0.name, as: UTF8.self), $0.inode, $0.type) }
    }

    struct DirectoryEntry {
        var name: [UInt8]
        var inode: UInt32
        var type: UInt8
    }

    func entries(of directory: Ext4Inode) throws(Ext4Error) -> [DirectoryEntry] {
        try cachedDirectory(directory).entries
    }

    /// The entry named `name` in `directory`: the first one, as a linear
    /// search finds it.
    func entry(named name: [UInt8], in directory: Ext4Inode) throws(Ext4Error) -> DirectoryEntry? {
        let cached = try cachedDirectory(directory)
        return cached.firstByName[name].map { cached.entries[$0] }
    }

    /// A directory's entries, read and parsed the first time it is asked for
    /// (and its error, if it is damaged), then kept.
    func cachedDirectory(_ directory: Ext4Inode) throws(Ext4Error) -> CachedDirectory {
        if let known = work.directories[directory.number] { return try known.get() }
        do {
            let entries = try parseDirectory(directory)
            var firstByName: [[UInt8]: Int] = [:]
            firstByName.reserveCapacity(entries.count)
            for (index, entry) in entries.enumerated() where firstByName[entry.name] == nil {
                firstByName[entry.name] = index
            }
            let cached = CachedDirectory(entries: entries, firstByName: firstByName)
            work.directories[directory.number] = .success(cached)
            return cached
        } catch {
            // Running out of work is not a fact about the directory.
            if error.kind != .workLimit { work.directories[directory.number] = .failure(error) }
            throw error
        }
    }

    private func parseDirectory(_ directory: Ext4Inode) throws(Ext4Error) -> [DirectoryEntry] {
        guard directory.fileType == .directory else {
            throw Ext4Error(.notADirectory, "inode \(directory.number) is \(directory.fileType.rawValue), not a directory")
        }
        guard directory.size <= Ext4Reader.maxDirectoryBytes else {
            throw Ext4Error(
                .corrupt,
                "directory inode \(directory.number) claims \(directory.size) bytes, more than a plausible directory "
                    + "(\(Ext4Reader.maxDirectoryBytes >> 20) MiB)")
        }
        let data = try read(directory, maxBytes: Int(directory.size))
        let blockSize = Int(superblock.blockSize)
        let hasFileType = superblock.hasIncompat(Ext4Superblock.Incompat.fileType)
        var result: [DirectoryEntry] = []
        var blockStart = 0
        while blockStart < data.count {
            let blockEnd = min(blockStart + blockSize, data.count)
            var at = blockStart
            while at + 8 <= blockEnd {
                func corrupt(_ message: String) -> Ext4Error {
                    Ext4Error(
                        .corrupt,
                        "directory inode \(directory.number) is damaged: the entry at byte \(at) \(message)")
                }
                let inode = data.loadLittleEndian(UInt32.self, at: at) ?? 0
                var recordLength = Int(data.loadLittleEndian(UInt16.self, at: at + 4) ?? 0)
                // With 64 KiB blocks a whole-block entry's length (65536) is stored as 0 or 65535.
                if blockSize >= 65536, recordLength == 0 || recordLength == 65535 { recordLength = 65536 }
                let nameLength = Int(data[at + 6])
                guard recordLength >= 8, recordLength % 4 == 0, at + recordLength <= blockEnd else {
                    throw corrupt("has record length \(recordLength), which does not fit its block")
                }
                try work.step()
                if inode != 0 {
                    guard 8 + nameLength <= recordLength, nameLength > 0 else {
                        throw corrupt("has a \(nameLength)-byte name in a \(recordLength)-byte record")
                    }
                    result.append(DirectoryEntry(
                        name: Array(data[at + 8..<at + 8 + nameLength]), inode: inode, type: hasFileType ? data[at + 7] : 0))
                }
                at += recordLength
            }
            blockStart += blockSize
        }
        return result
    }

    /// The target of symbolic link `link`.
    public func readLink(_ link: Ext4Inode) throws(Ext4Error) -> String {
        if let known = work.links[link.number] { return try known.get() }
        do {
            let target = try readLinkTarget(link)
            work.links[link.number] = .success(target)
            return target
        } catch {
            if error.kind != .workLimit { work.links[link.number] = .failure(error) }
            throw error
        }
    }

    private func readLinkTarget(_ link: Ext4Inode) throws(Ext4Error) -> String {
        guard link.fileType == .symlink else {
            throw Ext4Error(.corrupt, "inode \(link.number) is \(link.fileType.rawValue), not a symbolic link")
        }
        if link.flags & Ext4Inode.Flags.encrypted != 0 {
            throw Ext4Error(.unsupported, "symbolic link inode \(link.number) is encrypted")
        }
        guard link.size <= Ext4Reader.maxLinkLength else {
            throw Ext4Error(.corrupt, "symbolic link inode \(link.number) claims a \(link.size)-byte target (at most 4095)")
        }
        let bytes = try read(link, maxBytes: Int(link.size))
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// The inode at `path`, following symbolic links as the kernel does when it
    /// executes a file: absolute targets from the image's root, relative ones
    /// from the link's directory. Nil when the path does not exist.
    public func lookup(_ path: String, followFinalSymlink: Bool = true) throws(Ext4Error) -> Ext4Inode? {
        try resolve(path, followFinalSymlink: followFinalSymlink).inode
    }

    /// Like `lookup`, and also says which links were followed.
    public func resolve(_ path: String, followFinalSymlink: Bool = true) throws(Ext4Error) -> Resolution {
        let root = try root()
        guard root.fileType == .directory else {
            throw Ext4Error(.corrupt, "the root inode is \(root.fileType.rawValue), not a directory")
        }
        // Components still to walk, last first; and the directories walked so far from the root.
        // Every component counts as a step when it is queued, so a walk costs what it queues.
        var pending: [[UInt8]] = Self.components(path).reversed()
        try work.step(pending.count)
        // How many of `pending` are not ".": when none are, the component at hand is the last.
        var pendingNames = pending.count(where: { $0 != Self.dot })
        var walked: [(name: [UInt8], inode: Ext4Inode)] = []
        var links: [SymlinkHop] = []
        func currentPath(_ extra: [UInt8]? = nil) -> String {
            let names = walked.map(\.name) + (extra.map { [$0] } ?? [])
            return "/" + names.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
        }
        while let name = pending.popLast() {
            if name == Self.dot { continue }
            pendingNames -= 1
            if name == Self.dotDot {
                if !walked.isEmpty { walked.removeLast() }
                continue
            }
            let directory = walked.last?.inode ?? root
            guard directory.fileType == .directory else {
                throw Ext4Error(.notADirectory, "\(currentPath()) is \(directory.fileType.rawValue), not a directory")
            }
            guard let entry = try entry(named: name, in: directory) else {
                return Resolution(inode: nil, path: currentPath(name), links: links)
            }
            let inode = try self.inode(entry.inode)
            let isLast = pendingNames == 0
            if inode.fileType == .symlink, followFinalSymlink || !isLast {
                guard links.count < Ext4Reader.maxSymlinks else {
                    throw Ext4Error(
                        .tooManyLinks,
                        "\(path): more than \(Ext4Reader.maxSymlinks) symbolic links (a loop through \(currentPath(name))?)")
                }
                let target = try readLink(inode)
                links.append(SymlinkHop(path: currentPath(name), target: target))
                // An empty target names nothing (ENOENT).
                if target.isEmpty { return Resolution(inode: nil, path: currentPath(name), links: links) }
                if target.hasPrefix("/") { walked.removeAll() }
                let parts = Self.components(target)
                try work.step(parts.count)
                pending += parts.reversed()
                pendingNames += parts.count(where: { $0 != Self.dot })
                continue
            }
            walked.append((name, inode))
        }
        return Resolution(inode: walked.last?.inode ?? root, path: currentPath(), links: links)
    }

    static let dot: [UInt8] = [0x2e]
    static let dotDot: [UInt8] = [0x2e, 0x2e]

    static func components(_ path: String) -> [[UInt8]] {
        path.utf8.split(separator: 0x2f, omittingEmptySubsequences: true).map(Array.init)
    }
}
