import Glibc

/// Words for what a path turned out to be, for messages that refuse it.
public enum FileType {
    /// `type` is a `stat` mode masked with `S_IFMT`: "a regular file", "a
    /// directory", "a FIFO (named pipe)", ...
    public static func describe(_ type: mode_t) -> String {
        switch type {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO (named pipe)"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        case S_IFREG: "a regular file"
        default: "not a regular file"
        }
    }
}
