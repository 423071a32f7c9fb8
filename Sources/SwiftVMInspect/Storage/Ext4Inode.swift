import SwiftVMMemory

/// One inode of an ext2/3/4 file system: the fields path lookup and init
/// discovery need (ext4 docs, "Index Nodes").
public struct Ext4Inode: Equatable, Sendable {
    public enum FileType: String, Sendable {
        case regular = "a regular file"
        case directory = "a directory"
        case symlink = "a symbolic link"
        case characterDevice = "a character device"
        case blockDevice = "a block device"
        case fifo = "a FIFO"
        case socket = "a socket"
        case unknown = "an inode of unknown type"
    }

    /// `i_flags` bits this reader acts on.
    public enum Flags {
        public static let encrypted: UInt32 = 0x800
        public static let hashedDirectory: UInt32 = 0x1000
        public static let extents: UInt32 = 0x80000
        public static let inlineData: UInt32 = 0x1000_0000
    }

    /// The size of `i_block`, where extents, block pointers or a fast symlink's target live.
    public static let blockFieldSize = 60

    public var number: UInt32
    /// `i_mode`: the file type in the top four bits, then setuid/setgid/sticky and rwx bits.
    public var mode: UInt16
    public var size: UInt64
    public var flags: UInt32
    public var linkCount: UInt16
    public var uid: UInt32
    public var gid: UInt32
    /// `i_blocks`, in 512-byte units (unless HUGE_FILE says otherwise).
    public var sectorCount: UInt64
    /// `i_file_acl`: the extended-attribute block, 0 when none.
    public var attributeBlock: UInt64
    /// `i_block`: 60 bytes.
    public var blockField: [UInt8]

    /// Decodes a raw on-disk inode (at least 128 bytes).
    init?(number: UInt32, bytes: [UInt8]) {
        guard bytes.count >= 128 else { return nil }
        func u16(_ offset: Int) -> UInt16 { bytes.loadLittleEndian(UInt16.self, at: offset) ?? 0 }
        func u32(_ offset: Int) -> UInt32 { bytes.loadLittleEndian(UInt32.self, at: offset) ?? 0 }
        self.number = number
        mode = u16(0x00)
        size = UInt64(u32(0x04)) | UInt64(u32(0x6c)) << 32
        flags = u32(0x20)
        linkCount = u16(0x1a)
        uid = UInt32(u16(0x02)) | UInt32(u16(0x78)) << 16
        gid = UInt32(u16(0x18)) | UInt32(u16(0x7a)) << 16
        sectorCount = UInt64(u32(0x1c)) | UInt64(u16(0x74)) << 32
        attributeBlock = UInt64(u32(0x68)) | UInt64(u16(0x76)) << 32
        blockField = Array(bytes[0x28..<0x28 + Ext4Inode.blockFieldSize])
    }

    public var fileType: FileType {
        switch mode & 0xf000 {
        case 0x8000: .regular
        case 0x4000: .directory
        case 0xa000: .symlink
        case 0x2000: .characterDevice
        case 0x6000: .blockDevice
        case 0x1000: .fifo
        case 0xc000: .socket
        default: .unknown
        }
    }

    /// The permission bits, `mode & 0o7777`.
    public var permissions: UInt16 { mode & 0o7777 }

    /// True when owner, group or other may execute it: what execve needs from
    /// root, who may run anything with at least one x bit.
    public var isExecutable: Bool { mode & 0o111 != 0 }

    public var usesExtents: Bool { flags & Flags.extents != 0 }
    public var hasInlineData: Bool { flags & Flags.inlineData != 0 }

    /// Permissions as `ls -l` shows them, without the type letter: "rwxr-xr-x".
    public var permissionString: String {
        var text = ""
        for shift in stride(from: 6, through: 0, by: -3) {
            let bits = (mode >> UInt16(shift)) & 0o7
            text += bits & 4 != 0 ? "r" : "-"
            text += bits & 2 != 0 ? "w" : "-"
            text += bits & 1 != 0 ? "x" : "-"
        }
        return text
    }
}
