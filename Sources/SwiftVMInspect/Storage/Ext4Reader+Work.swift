/// The bound on one inspection's total work, and what it already read.
///
/// Each lookup has bounds of its own (40 symbolic links, 32 MiB of directory,
/// 4095 bytes of link target), but a crafted image can chain them so that a
/// few hundred KiB keep a check busy for hours: a long link target that walks
/// into a large directory again and again, links that lead into each other,
/// interpreters whose paths do the same. So one reader, which is one
/// inspection, also counts everything it does and stops with
/// `Ext4Error.Kind.workLimit` when the count runs out; and it keeps what it
/// read (inodes, directories by inode, link targets), so that walking a
/// directory a second time costs a table lookup, not another read and parse.
extension Ext4Reader {
    /// How much one inspection may do.
    public struct Limits: Equatable, Sendable {
        /// Bytes read from the image, all structures together.
        public var bytesRead: UInt64
        /// Directory entries parsed plus path components walked.
        public var steps: Int

        public init(bytesRead: UInt64, steps: Int) {
            self.bytesRead = bytesRead
            self.steps = steps
        }

        /// What checking a root file system may take. A Debian-like root
        /// (merged /usr, directories of 1,000 to 1,500 names, a dynamically
        /// linked init behind two links) needs about 110 KiB and 3,200 steps;
        /// this allows a root with directories a hundred times larger, keeps
        /// the caches under 64 MiB, and still ends within a second or two
        /// on any image.
        public static let standard = Limits(bytesRead: 64 << 20, steps: 1_000_000)
    }

    /// What this reader has done so far.
    public var workDone: (bytesRead: UInt64, steps: Int) { (work.bytesRead, work.steps) }
}

/// A directory's entries as parsed once, with the first entry of each name.
struct CachedDirectory {
    var entries: [Ext4Reader.DirectoryEntry]
    var firstByName: [[UInt8]: Int]
}

/// The mutable side of an `Ext4Reader`: the work count and the caches.
/// A reader is used by one inspection on one thread.
final class Ext4Work {
    let limits: Ext4Reader.Limits
    private(set) var bytesRead: UInt64 = 0
    private(set) var steps = 0
    var inodes: [UInt32: Ext4Inode] = [:]
    var inodeTables: [UInt64: UInt64] = [:]
    var directories: [UInt32: Result<CachedDirectory, Ext4Error>] = [:]
    var links: [UInt32: Result<String, Ext4Error>] = [:]

    init(limits: Ext4Reader.Limits) { self.limits = limits }

    /// Counts `count` bytes about to be read; throws once the budget is spent.
    /// Once either count runs out, everything after fails too, so an
    /// inspection that ran out cannot answer a later question from its caches
    /// as if nothing had happened.
    func read(_ count: Int) throws(Ext4Error) {
        bytesRead += UInt64(max(count, 0))
        guard !isExhausted else { throw exhausted() }
    }

    /// Counts `count` steps (directory entries, path components).
    func step(_ count: Int = 1) throws(Ext4Error) {
        steps += max(count, 0)
        guard !isExhausted else { throw exhausted() }
    }

    var isExhausted: Bool { bytesRead > limits.bytesRead || steps > limits.steps }

    func exhausted() -> Ext4Error {
        Ext4Error(
            .workLimit,
            "the check gave up after its work limit (it reads at most \(limits.bytesRead >> 20) MiB of an image and "
                + "takes at most \(limits.steps) steps, a step being one directory entry or one path component): "
                + "the image has unusually large directories or long chains of symbolic links, or it was made to "
                + "keep checks busy")
    }
}
