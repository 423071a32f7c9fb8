import Glibc
import Synchronization
internal import CSwiftVM

/// A named OS thread running a Swift closure.
///
/// vCPUs need real threads of their own: `KVM_RUN` blocks, and a vCPU is
/// kicked out of it with a signal sent to its thread.
public final class HostThread: @unchecked Sendable {
    // Written once in `spawn` before the thread is shared.
    private var handle: pthread_t

    private init(handle: pthread_t) { self.handle = handle }

    /// Starts `body` on a new thread named `name` (at most 15 characters are kept).
    public static func spawn(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemError) -> HostThread {
        final class Start {
            let name: String
            let body: @Sendable () -> Void
            init(name: String, body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
        }
        let context = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { raw in
            guard let raw else { return nil }
            let start = Unmanaged<AnyObject>.fromOpaque(raw).takeRetainedValue()
            guard let start = start as? Start else { return nil }
            _ = svm_set_thread_name(String(start.name.prefix(15)))
            start.body()
            return nil
        }, context)
        if result != 0 {
            Unmanaged<AnyObject>.fromOpaque(context).release()
            throw SystemError("pthread_create \(name)", errno: result)
        }
        return HostThread(handle: handle)
    }

    /// The calling thread's name ("swiftvm-vcpu0", ...); "main" for threads
    /// this package did not start.
    public static var currentName: String {
        var buffer = [CChar](repeating: 0, count: 32)
        guard svm_get_thread_name(&buffer, UInt(buffer.count)) == 0 else { return "-" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // The first thread carries the executable's name (swiftvm, or the
        // embedding program's); this package names every thread it starts
        // with a "swiftvm-" prefix.
        return name.hasPrefix("swiftvm-") || name.hasPrefix("NIO-") ? name : "main"
    }

    /// Sends `signal` to this thread (used to kick a vCPU out of KVM_RUN).
    public func send(signal: Int32) {
        _ = pthread_kill(handle, signal)
    }

    /// Waits for the thread to finish.
    public func join() {
        _ = pthread_join(handle, nil)
    }
}

/// The signals the VMM's threads use.
///
/// The library needs exactly one signal, the vCPU kick (`vcpuKick`, SIGRTMIN
/// unless the embedding program chooses another with `useVCPUKick` before
/// the first VM starts): its handler does nothing and is installed once, and
/// only vCPU threads unblock it. Termination signals, SIGPIPE's disposition
/// and the terminal belong to the program that owns the process.
public enum Signals {
    private struct Kick {
        var signal: Int32?
        var installed = false
    }
    private static let kick = Mutex(Kick())

    /// The signal that kicks a vCPU thread out of KVM_RUN.
    public static var vcpuKick: Int32 { kick.withLock { $0.signal } ?? svm_sigrtmin() }

    /// Chooses the kick signal (a real-time signal the program does not use
    /// otherwise). Only takes effect before the first VM starts.
    public static func useVCPUKick(_ signal: Int32) {
        kick.withLock { if !$0.installed { $0.signal = signal } }
    }

    /// Installs a handler for the kick signal that does nothing, without
    /// SA_RESTART, so a blocked KVM_RUN returns EINTR. Once per process.
    public static func installVCPUKickHandler() {
        kick.withLock { state in
            guard !state.installed else { return }
            state.installed = true
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(state.signal ?? svm_sigrtmin(), &action, nil)
        }
    }

    /// Unblocks the kick signal in the calling thread. vCPU threads call this
    /// first: a signal mask inherited from the parent process (test runners,
    /// supervisors) may block it, and a vCPU that cannot be kicked never stops.
    public static func unblockVCPUKick() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, vcpuKick)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Blocks SIGPIPE in the calling thread, so that a write to a pipe whose
    /// reader is gone fails with EPIPE instead of killing the process, without
    /// changing the disposition the program chose.
    public static func keepSIGPIPEOffThisThread() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// The signals that end the VMM from outside.
    public static let termination: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    /// The signal that asks the VMM to print every vCPU's registers.
    public static let stateReport: Int32 = SIGUSR1

    /// For a front end that owns the process: blocks `signals` in the calling
    /// thread (threads started later inherit the mask) and returns a signalfd
    /// that reports them, so they can be handled like any other input.
    public static func signalDescriptor(for signals: [Int32]) throws(SystemError) -> FileDescriptor {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        let result = pthread_sigmask(SIG_BLOCK, &set, nil)
        if result != 0 { throw SystemError("pthread_sigmask", errno: result) }
        let fd = try sys("signalfd") { signalfd(-1, &set, Int32(SFD_CLOEXEC | SFD_NONBLOCK)) }
        return FileDescriptor(owning: fd)
    }

    /// Reads one pending signal number from a signalfd made by `signalDescriptor`.
    public static func readSignal(from fd: FileDescriptor) -> Int32? {
        var info = signalfd_siginfo()
        let count = Glibc.read(fd.rawValue, &info, MemoryLayout<signalfd_siginfo>.size)
        return count == MemoryLayout<signalfd_siginfo>.size ? Int32(info.ssi_signo) : nil
    }
}
