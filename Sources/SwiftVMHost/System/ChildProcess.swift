import Glibc

/// A child process started with posix_spawn, for the self-test, which runs
/// swiftvm's own executable the way Firecracker's clients run it.
public struct ChildProcess: Sendable {
    public let pid: pid_t

    /// Starts `path` with `arguments` (argv[1...]), standard input from
    /// /dev/null and standard output and error into the given files.
    public static func spawn(
        _ path: String, _ arguments: [String], stdout: String, stderr: String
    ) throws(SystemError) -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, nil, argv, environ)
        if result != 0 { throw SystemError("posix_spawn \(path)", errno: result) }
        return ChildProcess(pid: pid)
    }

    /// Waits up to `milliseconds` for the child to end; its exit status
    /// (128 + N when killed by signal N), or nil when it is still running.
    public func wait(milliseconds: Int) -> Int32? {
        var remaining = milliseconds
        while true {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                let signal = status & 0x7f
                return signal == 0 ? (status >> 8) & 0xff : 128 + signal
            }
            if result < 0 && errno != EINTR { return nil }
            if remaining <= 0 { return nil }
            usleep(10_000)
            remaining -= 10
        }
    }

    /// Sends `signal` to the child.
    public func kill(_ signal: Int32) { _ = Glibc.kill(pid, signal) }
}
