
/// Feature flags of the ext2/3/4 superblock (`s_feature_compat`,
/// `s_feature_incompat`, `s_feature_ro_compat`), named as mke2fs and
/// `dumpe2fs` name them.
extension Ext4Superblock {
    public enum Compat {
        public static let hasJournal: UInt32 = 0x4
        public static let extendedAttributes: UInt32 = 0x8
        public static let resizeInode: UInt32 = 0x10
        public static let directoryIndex: UInt32 = 0x20
        public static let sparseSuper2: UInt32 = 0x200
        public static let fastCommit: UInt32 = 0x400
        public static let orphanFile: UInt32 = 0x1000
    }

    public enum Incompat {
        public static let compression: UInt32 = 0x1
        public static let fileType: UInt32 = 0x2
        public static let needsRecovery: UInt32 = 0x4
        public static let journalDevice: UInt32 = 0x8
        public static let metaBlockGroups: UInt32 = 0x10
        public static let extents: UInt32 = 0x40
        public static let is64Bit: UInt32 = 0x80
        public static let multipleMountProtection: UInt32 = 0x100
        public static let flexibleBlockGroups: UInt32 = 0x200
        public static let largeExtendedAttributes: UInt32 = 0x400
        public static let directoryData: UInt32 = 0x1000
        public static let checksumSeed: UInt32 = 0x2000
        public static let largeDirectories: UInt32 = 0x4000
        public static let inlineData: UInt32 = 0x8000
        public static let encryption: UInt32 = 0x10000
        public static let caseFolding: UInt32 = 0x20000
    }

    public enum ROCompat {
        public static let sparseSuper: UInt32 = 0x1
        public static let largeFile: UInt32 = 0x2
        public static let hugeFile: UInt32 = 0x8
        public static let groupDescriptorChecksums: UInt32 = 0x10
        public static let directoryLinks: UInt32 = 0x20
        public static let extraInodeSize: UInt32 = 0x40
        public static let quota: UInt32 = 0x100
        public static let bigAlloc: UInt32 = 0x200
        public static let metadataChecksums: UInt32 = 0x400
        public static let readOnly: UInt32 = 0x1000
        public static let project: UInt32 = 0x2000
        public static let verity: UInt32 = 0x8000
    }

    public func hasCompat(_ flag: UInt32) -> Bool { featureCompat & flag != 0 }
    public func hasIncompat(_ flag: UInt32) -> Bool { featureIncompat & flag != 0 }
    public func hasROCompat(_ flag: UInt32) -> Bool { featureROCompat & flag != 0 }

    /// The features a person deciding whether a guest can mount and boot the
    /// image cares about, with their mke2fs names, in a stable order.
    public var notableFeatures: [String] {
        var names: [String] = []
        func add(_ present: Bool, _ name: String) { if present { names.append(name) } }
        add(hasCompat(Compat.hasJournal), "has_journal")
        add(hasIncompat(Incompat.extents), "extents")
        add(hasIncompat(Incompat.is64Bit), "64bit")
        add(hasIncompat(Incompat.flexibleBlockGroups), "flex_bg")
        add(hasIncompat(Incompat.metaBlockGroups), "meta_bg")
        add(hasCompat(Compat.directoryIndex), "dir_index")
        add(hasROCompat(ROCompat.metadataChecksums), "metadata_csum")
        add(hasROCompat(ROCompat.hugeFile), "huge_file")
        add(hasROCompat(ROCompat.bigAlloc), "bigalloc")
        add(hasIncompat(Incompat.inlineData), "inline_data")
        add(hasIncompat(Incompat.encryption), "encrypt")
        add(hasIncompat(Incompat.caseFolding), "casefold")
        add(hasCompat(Compat.orphanFile), "orphan_file")
        add(hasCompat(Compat.fastCommit), "fast_commit")
        add(hasIncompat(Incompat.needsRecovery), "needs_recovery")
        add(hasROCompat(ROCompat.readOnly), "read-only")
        return names
    }
}
