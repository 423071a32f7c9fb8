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
        }
    }

    /// Restores the settings saved by `enterRawMode`; safe to call more than once.
    public static func restore() {
        guard var settings = saved else { return }
        _ = tcsetattr(savedFD, TCSANOW, &settings)
        saved = nil
    }
}
