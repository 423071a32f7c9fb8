import Glibc
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

    /// Sends `signal` to this thread (used to kick a vCPU out of KVM_RUN).
    public func send(signal: Int32) {
        _ = pthread_kill(handle, signal)
    }

    /// Waits for the thread to finish.
    public func join() {
        _ = pthread_join(handle, nil)
    }
}

/// Process-wide signal set-up for the VMM.
public enum Signals {
    /// The signal that kicks a vCPU thread out of KVM_RUN (SIGRTMIN).
    public static var vcpuKick: Int32 { svm_sigrtmin() }

    /// Installs a handler for the kick signal that does nothing, without
    /// SA_RESTART, so a blocked KVM_RUN returns EINTR. Ignores SIGPIPE so a
    /// closed console pipe is an error return, not a dead VMM.
    public static func installVCPUKickHandler() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(vcpuKick, &action, nil)
        signal(SIGPIPE, SIG_IGN)
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

    /// The signals that end the VMM from outside.
    public static let termination: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    /// The signal that asks the VMM to print every vCPU's registers.
    public static let stateReport: Int32 = SIGUSR1

    /// Blocks the termination signals and `stateReport` in the calling thread (threads started
    /// later inherit the mask) and returns a signalfd that reports them, so the
    /// event loop handles them like any other input and can restore the terminal.
    public static func blockTerminationSignals() throws(SystemError) -> FileDescriptor {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in termination + [stateReport] { sigaddset(&set, signal) }
        let result = pthread_sigmask(SIG_BLOCK, &set, nil)
        if result != 0 { throw SystemError("pthread_sigmask", errno: result) }
        let fd = try sys("signalfd") { signalfd(-1, &set, Int32(SFD_CLOEXEC | SFD_NONBLOCK)) }
        return FileDescriptor(owning: fd)
    }

    /// Reads one pending signal number from a signalfd made by `blockTerminationSignals`.
    public static func readSignal(from fd: FileDescriptor) -> Int32? {
        var info = signalfd_siginfo()
        let count = Glibc.read(fd.rawValue, &info, MemoryLayout<signalfd_siginfo>.size)
        return count == MemoryLayout<signalfd_siginfo>.size ? Int32(info.ssi_signo) : nil
    }
}
