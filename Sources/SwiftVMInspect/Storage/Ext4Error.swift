
/// Why an ext2/3/4 image could not be read. Every structure in the image is
/// checked before it is followed, so a damaged image ends here, never in a
/// crash or an endless loop.
public struct Ext4Error: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// No ext2/3/4 superblock (magic 0xEF53 at byte 1080).
        case notExtFileSystem
        /// A structure contradicts itself or points outside the file system.
        case corrupt
        /// A block lies past the end of the image file.
        case truncated
        /// The image uses a feature this reader does not read (inline data, encryption).
        case unsupported
        /// A path component that must be a directory is not (the kernel's ENOTDIR).
        case notADirectory
        /// More than 40 symbolic links on one path (the kernel's ELOOP).
        case tooManyLinks
        /// The image file could not be read.
        case readFailed
        /// The inspection used up its work budget (`Ext4Reader.Limits`) before
        /// it could answer: the image is unusually large or was crafted to
        /// make checks slow. Nothing is known about what was being looked up.
        case workLimit
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
