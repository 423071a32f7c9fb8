
/// What the kernel would do with a root file system's init, as
/// `InitDiscovery.find` works it out.
public struct InitReport: Equatable, Sendable {
    /// Why the kernel looks at a path.
    public enum Role: Equatable, Sendable {
        /// `/init`: run only when the kernel booted from an initramfs (`rdinit=` overrides it).
        case initramfsOnly
        /// The `init=` kernel parameter.
        case initParameter
        /// One of the fixed fallbacks /sbin/init, /etc/init, /bin/init, /bin/sh.
        case fallback
    }

    /// What execve would make of a path.
    public enum Outcome: Equatable, Sendable {
        /// The kernel can start it.
        case runs
        /// Nothing there (ENOENT): the kernel moves on without a message.
        case missing
        /// execve fails with this errno (EACCES, ENOEXEC, ELOOP, ...).
        case fails(errno: Int32)
        /// The check ran out of its work limit before it could tell.
        case undecided
    }

    public struct Candidate: Equatable, Sendable {
        public var path: String
        public var role: Role
        public var outcome: Outcome
        /// What is there, and why it fails when it does: "a symbolic link
        /// /sbin/init -> /bin/busybox; /bin/busybox: an x86-64 ELF executable (static)".
        public var detail: String
        /// Whether the kernel gets to it: false for /init on an ext4 root, for
        /// paths after the one that runs, and for the fallbacks when init= is given.
        public var tried: Bool
    }

    /// A directory the seed's minimum rootfs needs, or one inits commonly use.
    public struct MountPoint: Equatable, Sendable {
        public var path: String
        /// True for /dev, /proc and /sys; false for /run and /var.
        public var required: Bool
        public var present: Bool
        /// What is there, or what breaks without it.
        public var detail: String
        /// False when the check ran out of its work limit before it looked.
        public var checked: Bool = true
    }

    /// Every path looked at, in the kernel's order.
    public var candidates: [Candidate]
    /// The path the kernel will execute as PID 1; nil when it panics.
    public var chosen: String?
    /// The kernel's panic message when no init runs.
    public var panicMessage: String?
    public var mountPoints: [MountPoint]
    /// Missing mount points and other problems that do not stop init from starting.
    public var warnings: [String]
    /// Why the check cannot say whether the kernel finds an init: it ran out
    /// of its work limit (`Ext4Reader.Limits`) before it got an answer. Nil
    /// when the report decides; then `chosen` and `panicMessage` say what happens.
    public var undecidedReason: String? = nil

    public var findsInit: Bool { chosen != nil }
    /// Whether the report says what the kernel will do.
    public var isDecided: Bool { undecidedReason == nil }
}

/// errno values the kernel returns from execve, and the names messages show.
enum ExecErrno {
    static let noEntry: Int32 = 2  // ENOENT
    static let ioError: Int32 = 5  // EIO
    static let execFormat: Int32 = 8  // ENOEXEC
    static let accessDenied: Int32 = 13  // EACCES
    static let notADirectory: Int32 = 20  // ENOTDIR
    static let tooManyLinks: Int32 = 40  // ELOOP

    static func name(_ errno: Int32) -> String {
        switch errno {
        case noEntry: "ENOENT"
        case ioError: "EIO"
        case execFormat: "ENOEXEC"
        case accessDenied: "EACCES"
        case notADirectory: "ENOTDIR"
        case tooManyLinks: "ELOOP"
        default: "errno \(errno)"
        }
    }
}
