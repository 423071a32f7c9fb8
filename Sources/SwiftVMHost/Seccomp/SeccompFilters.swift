import Glibc
import Synchronization
import SwiftVMMemory
internal import CSwiftVM

/// Why a policy could not be compiled, or a filter not loaded.
public struct SeccompError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}

/// A `SeccompPolicy` compiled (with libseccomp) into one BPF program per
/// thread kind, ready to be loaded by each thread as it starts.
///
/// Compiling also prepares the process, once: the SIGSYS handler that turns
/// a forbidden call into one line on standard error and exit status 148, and
/// the log's non-blocking standard error, which it would otherwise open at
/// its first line, on whatever thread writes it.
public final class SeccompFilters: Sendable {
    /// The exit status of a process whose thread made a call its filter
    /// does not allow (Firecracker's `BadSyscall`).
    public static let violationStatus: Int32 = 148

    public let policy: SeccompPolicy
    private let programs: [SeccompThreadKind: [UInt8]]

    /// Compiles `policy`'s lists for `kinds`, the thread kinds the caller
    /// will install (compiling a list costs libseccomp a few hundred
    /// microseconds, a visible share of a VM's start-up).
    public init(_ policy: SeccompPolicy, kinds: [SeccompThreadKind] = SeccompThreadKind.allCases) throws(SeccompError) {
        self.policy = policy
        var programs: [SeccompThreadKind: [UInt8]] = [:]
        for kind in kinds {
            programs[kind] = try Self.compile(policy.rules(for: kind), kind: kind)
        }
        self.programs = programs
        try Self.prepareProcess()
    }

    /// swiftvm's own lists, compiled for `kinds`.
    public static func builtIn(kinds: [SeccompThreadKind] = SeccompThreadKind.allCases) throws(SeccompError) -> SeccompFilters {
        try SeccompFilters(.builtIn, kinds: kinds)
    }

    /// The number of BPF instructions in `kind`'s program.
    public func instructionCount(_ kind: SeccompThreadKind) -> Int {
        (programs[kind]?.count ?? 0) / 8
    }

    /// Loads `kind`'s filter on the calling thread (and sets its
    /// no_new_privs). Threads it starts from now on keep the filter. A
    /// violation report names the thread by its name and `kind`.
    public func install(_ kind: SeccompThreadKind) throws(SeccompError) {
        let name = HostThread.currentName
        svm_seccomp_set_thread_label("\(name) (\(kind.rawValue) filter)")
        guard let program = programs[kind] else {
            throw SeccompError("the \(kind.rawValue) seccomp filter was not compiled for this process (thread \(name))")
        }
        let result = program.withUnsafeBytes { svm_seccomp_load($0.baseAddress, UInt($0.count)) }
        if result != 0 {
            throw SeccompError("cannot load the \(kind.rawValue) seccomp filter on thread \(name): "
                + String(cString: strerror(-result)))
        }
        if Log.isEnabled(.debug) {
            Log.debug("seccomp: thread \(name) runs under the \(kind.rawValue) filter "
                + "(\(policy.rules(for: kind).count) rules, \(instructionCount(kind)) BPF instructions)")
        }
    }

    /// Makes the SIGSYS handler put terminal `fd` back the way it is now
    /// before the process ends: call it before switching to raw mode.
    public static func restoreTerminalOnViolation(_ fd: Int32) {
        svm_seccomp_keep_terminal(fd)
    }

    /// The number of `name` on this machine, or nil when it is not a system call.
    public static func syscallNumber(_ name: String) -> Int32? {
        let number = svm_seccomp_syscall_number(name)
        return number < 0 ? nil : number
    }

    /// Makes system call `number` with up to six `arguments` (the rest 0),
    /// for `swiftvm seccomp-probe`: its result, or -errno.
    public static func call(_ number: Int32, _ arguments: [UInt64]) -> Int {
        let a = (arguments + [UInt64](repeating: 0, count: 6)).prefix(6).map { UInt($0) }
        return svm_seccomp_probe_call(Int(number), a[0], a[1], a[2], a[3], a[4], a[5])
    }

    private static func compile(_ rules: [SeccompRule], kind: SeccompThreadKind) throws(SeccompError) -> [UInt8] {
        guard let filter = svm_seccomp_filter_new() else {
            throw SeccompError("libseccomp could not create a filter")
        }
        defer { svm_seccomp_filter_free(filter) }
        for rule in rules {
            guard let number = syscallNumber(rule.syscall) else {
                throw SeccompError("the \(kind.rawValue) list names \(rule.syscall), which is not a system call on this machine")
            }
            guard rule.conditions.count <= 6, rule.conditions.allSatisfy({ (0...5).contains($0.index) }) else {
                throw SeccompError("the \(kind.rawValue) list checks an argument of \(rule.syscall) other than 0 to 5")
            }
            let index = rule.conditions.map { UInt32($0.index) }
            let mask = rule.conditions.map(\.mask)
            let value = rule.conditions.map(\.value)
            let result = svm_seccomp_filter_add(
                filter, number, rule.errno ?? -1, UInt32(rule.conditions.count), index, mask, value)
            if result != 0 {
                throw SeccompError("libseccomp refused the \(kind.rawValue) rule for \(rule.syscall)"
                    + (rule.conditions.isEmpty ? "" : " with its argument checks") + ": " + String(cString: strerror(-result)))
            }
        }
        var capacity = 64 * 1024
        while true {
            var program = [UInt8](repeating: 0, count: capacity)
            let size = program.withUnsafeMutableBytes { svm_seccomp_filter_export(filter, $0.baseAddress, UInt($0.count)) }
            if size < 0 {
                throw SeccompError("libseccomp could not export the \(kind.rawValue) filter: " + String(cString: strerror(Int32(-size))))
            }
            if size <= capacity { return Array(program.prefix(size)) }
            capacity = size
        }
    }

    private static let prepared = Mutex(false)

    /// Once per process: the SIGSYS handler, and the log's standard error.
    private static func prepareProcess() throws(SeccompError) {
        try prepared.withLock { (done) throws(SeccompError) in
            guard !done else { return }
            let result = svm_seccomp_install_trap_handler(violationStatus)
            if result != 0 {
                throw SeccompError("cannot install the SIGSYS handler: " + String(cString: strerror(-result)))
            }
            Log.openStandardErrorNow()
            done = true
        }
    }
}
