import Glibc
internal import CSwiftVM

/// Puts a terminal into raw mode for the guest console and puts it back.
///
/// The saved settings live in a global so that an `atexit` hook can restore
/// them on any exit path, including `exit()` from deep inside the program.
public enum Terminal {
    nonisolated(unsafe) private static var saved: termios?
    nonisolated(unsafe) private static var savedFD: Int32 = -1
    nonisolated(unsafe) private static var hookInstalled = false

    /// True when `fd` is a terminal.
    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// Switches `fd` to raw input: no line editing, no echo, no signals from
    /// ^C/^Z (they go to the guest), no CR/LF translation on input. Output
    /// processing stays on so the VMM's own messages keep their line breaks.
    /// Call from the main thread before other threads start.
    public static func enterRawMode(_ fd: Int32) throws(SystemError) {
        var settings = termios()
        _ = try sys("tcgetattr") { tcgetattr(fd, &settings) }
        if saved == nil {
            saved = settings
            savedFD = fd
        }
        settings.c_lflag &= ~tcflag_t(ICANON | ECHO | ISIG | IEXTEN)
        settings.c_iflag &= ~tcflag_t(ICRNL | IXON | INLCR | IGNCR)
        _ = try sys("tcsetattr") { tcsetattr(fd, TCSANOW, &settings) }
        if !hookInstalled {
            hookInstalled = true
            atexit { Terminal.restore() }
            installCrashRestore()
        }
    }

    /// The handlers the crash signals had before ours (the Swift runtime's
    /// backtracer, say), indexed by signal number; allocated once, so the
    /// signal handler only reads memory.
    nonisolated(unsafe) private static let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: 32)

    /// A crash (a trap, SIGSEGV, SIGABRT) skips atexit; restore the terminal
    /// from the signal handler too (tcsetattr is async-signal-safe), then put
    /// the previous handler back and re-raise, so the crash is reported as usual.
    private static func installCrashRestore() {
        for signal in [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                if var settings = Terminal.saved { _ = tcsetattr(Terminal.savedFD, TCSANOW, &settings) }
                sigaction(number, Terminal.previous + Int(number), nil)
                raise(number)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(signal, &action, previous + Int(signal))
        }
    }

    /// Restores the settings saved by `enterRawMode`; safe to call more than once.
    public static func restore() {
        guard var settings = saved else { return }
        _ = tcsetattr(savedFD, TCSANOW, &settings)
        saved = nil
    }
}
