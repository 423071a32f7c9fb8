import Glibc

/// The kinds of threads swiftvm runs, each under an allow-list of its own
/// (docs/security.md).
public enum SeccompThreadKind: String, CaseIterable, Sendable, Comparable {
    /// The front end's thread once the VM runs: waits for the end, tears down.
    case main
    /// `swiftvm-events`: virtio queues, device back ends, console, timers.
    case events
    /// `swiftvm-vcpuN`: `KVM_RUN` and the port-I/O and MMIO exits.
    case vcpu
    /// Firecracker mode's API thread (SwiftNIO): requests, and the build of
    /// the VM that `InstanceStart` asks for.
    case api

    public static func < (lhs: Self, rhs: Self) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// One check of a system call argument: `(argument[index] & mask) == value`.
public struct SeccompCondition: Sendable, Hashable {
    /// The argument, 0 to 5.
    public var index: Int
    public var mask: UInt64
    public var value: UInt64

    public init(index: Int, mask: UInt64 = .max, value: UInt64) {
        self.index = index
        self.mask = mask
        self.value = value
    }

    /// The 32-bit argument `index` is `value` (the upper half of the
    /// register, which the kernel ignores for an `int`, is not looked at).
    public static func equals(_ index: Int, _ value: UInt64) -> SeccompCondition {
        SeccompCondition(index: index, mask: 0xffff_ffff, value: value & 0xffff_ffff)
    }

    /// None of `bits` is set in argument `index`.
    public static func clear(_ index: Int, _ bits: UInt64) -> SeccompCondition {
        SeccompCondition(index: index, mask: bits, value: 0)
    }
}

/// One rule of an allow-list: `syscall` is allowed (or, with `errno`, fails
/// with that error instead of ending the process) when every condition
/// holds. Several rules for one call are alternatives.
public struct SeccompRule: Sendable, Hashable {
    public var syscall: String
    public var conditions: [SeccompCondition]
    /// Fail the call with this errno rather than allow it.
    public var errno: Int32?

    public init(_ syscall: String, _ conditions: [SeccompCondition] = [], errno: Int32? = nil) {
        self.syscall = syscall
        self.conditions = conditions
        self.errno = errno
    }

    public static func allow(_ syscall: String, _ conditions: SeccompCondition...) -> SeccompRule {
        SeccompRule(syscall, conditions)
    }

    /// `ioctl` with exactly these request numbers (compared as the kernel
    /// does: the low 32 bits), one rule each.
    public static func ioctls(_ requests: [SeccompIoctl]) -> [SeccompRule] {
        requests.map { SeccompRule("ioctl", [.equals(1, $0.request)]) }
    }
}

/// An ioctl request the VMM makes, by name and number.
public struct SeccompIoctl: Sendable, Hashable {
    public var name: String
    public var request: UInt64

    public init(_ name: String, _ request: UInt64) {
        self.name = name
        self.request = request
    }
}

/// The allow-list of every thread kind. `builtIn` is swiftvm's own;
/// `--seccomp-filter FILE` replaces it (docs/security.md gives the format).
public struct SeccompPolicy: Sendable, Equatable {
    public var lists: [SeccompThreadKind: [SeccompRule]]

    public init(lists: [SeccompThreadKind: [SeccompRule]]) {
        self.lists = lists
    }

    /// The rules compiled for `kind`. A thread keeps the filter of the
    /// thread that started it and adds its own, and in Firecracker mode the
    /// API thread starts the event loop and the vCPUs: the API's filter
    /// therefore also allows what those threads do, including loading their
    /// own filters (`SeccompLists.loader`).
    public func rules(for kind: SeccompThreadKind) -> [SeccompRule] {
        let own = lists[kind] ?? []
        guard kind == .api else { return own }
        // The others' errno rules (a refused open) are left out: the API's
        // own list decides those calls, and one call cannot be both allowed
        // and refused.
        let started = ((lists[.events] ?? []) + (lists[.vcpu] ?? [])).filter { $0.errno == nil }
        var seen = Set<SeccompRule>()
        return (own + SeccompLists.loader + started).filter { seen.insert($0).inserted }
    }

    /// swiftvm's allow-lists (`SeccompLists`), for this process: `tgkill`
    /// may signal only this process's threads, with the vCPU kick signal
    /// (or SIGABRT, so that a failed assertion still aborts).
    public static var builtIn: SeccompPolicy { builtIn(processID: getpid()) }

    /// The built-in lists with `tgkill` limited to the threads of process
    /// `processID`, or, when nil (a filter file for any process), to the
    /// signals alone.
    public static func builtIn(processID: pid_t?) -> SeccompPolicy {
        let signals = SeccompLists.Signals(processID: processID.map { UInt64($0) }, vcpuKick: UInt64(Signals.vcpuKick))
        return SeccompPolicy(lists: [
            .main: SeccompLists.main(signals),
            .events: SeccompLists.events(signals),
            .vcpu: SeccompLists.vcpu,
            .api: SeccompLists.api(signals),
        ])
    }
}
