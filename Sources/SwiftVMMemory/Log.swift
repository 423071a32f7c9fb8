#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The VMM's diagnostic log: one line per message on standard error, so the
/// guest console on standard output stays clean.
public enum Log {
    public enum Level: Int, Comparable, Sendable, CaseIterable {
        case error, warning, info, debug

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }

        public var name: String {
            switch self {
            case .error: "error"
            case .warning: "warning"
            case .info: "info"
            case .debug: "debug"
            }
        }
    }

    private static let threshold = Atomic<Int>(Level.info.rawValue)

    /// Receives each line instead of standard error (a front end's logger).
    public typealias Handler = @Sendable (Level, String) -> Void

    private struct Sink {
        /// Standard error, reopened non-blocking on first use.
        var fd: Int32?
        var budget: LogBudget
        var handler: Handler?
        var lost = 0

        // An explicit initializer, not a default value for `budget`: with
        // default values, Swift 6.3's optimizer builds the static `sink` with
        // a zeroed budget (perSecond 0), and a release build then drops every
        // warning and debug line.
        init() {
            fd = nil
            budget = LogBudget(perSecond: 20)
            handler = nil
        }
    }
    private static let sink = Mutex(Sink())

    /// Messages above `level` are dropped.
    public static var level: Level {
        get { Level(rawValue: threshold.load(ordering: .relaxed)) ?? .info }
        set { threshold.store(newValue.rawValue, ordering: .relaxed) }
    }

    /// Opens the log's own descriptor for standard error now, if no line
    /// has yet: a thread whose seccomp filter refuses `open` can then log.
    public static func openStandardErrorNow() {
        sink.withLock { sink in
            if sink.fd == nil { sink.fd = nonBlockingStandardError() }
        }
    }

    /// Hands every line (without the "swiftvm: " prefix) to `handler` instead
    /// of writing it; nil goes back to standard error. The rate limit on
    /// warnings and debug lines still applies.
    public static func setHandler(_ handler: Handler?) { sink.withLock { $0.handler = handler } }

    public static func isEnabled(_ level: Level) -> Bool { level.rawValue <= threshold.load(ordering: .relaxed) }

    public static func error(_ message: @autoclosure () -> String) { emit(.error, message) }
    public static func warning(_ message: @autoclosure () -> String) { emit(.warning, message) }
    public static func info(_ message: @autoclosure () -> String) { emit(.info, message) }
    public static func debug(_ message: @autoclosure () -> String) { emit(.debug, message) }

    private static func emit(_ level: Level, _ message: () -> String) {
        guard isEnabled(level) else { return }
        let text = message()
        sink.withLock { sink in
            // Warnings and debug lines are what a guest can provoke at will.
            if level == .warning || level == .debug {
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                guard sink.budget.admit(atSecond: Int64(now.tv_sec)) else { return }
            }
            let note = sink.budget.takeDroppedNote()
            if let handler = sink.handler {
                if let note { handler(.warning, note) }
                handler(level, text)
                return
            }
            var line = "swiftvm: "
            if level != .info { line += level.name + ": " }
            line += text + "\n"
            if let note { line = "swiftvm: warning: " + note + "\n" + line }
            if sink.lost > 0 {
                line = "swiftvm: warning: \(sink.lost) log lines were lost (standard error was not being read)\n" + line
                sink.lost = 0
            }
            let fd = sink.fd ?? Self.nonBlockingStandardError()
            sink.fd = fd
            // A line that would block is dropped and counted: a log line must
            // never stop the thread that writes it (a vCPU, the event loop).
            if !writeAll(Array(line.utf8), to: fd) { sink.lost += 1 }
        }
    }

    private static func writeAll(_ bytes: [UInt8], to fd: Int32) -> Bool {
        bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return true }
            var done = 0
            while done < buffer.count {
                let written = write(fd, base + done, buffer.count - done)
                if written > 0 {
                    done += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    return false
                }
            }
            return true
        }
    }

    /// Standard error as a descriptor of the VMM's own that never blocks: a
    /// pipe, FIFO or terminal is reopened with O_NONBLOCK (setting the flag on
    /// descriptor 2 would change it for the shell too); a file is used as is.
    private static func nonBlockingStandardError() -> Int32 {
        var info = stat()
        guard fstat(2, &info) == 0, info.st_mode & S_IFMT == S_IFIFO || info.st_mode & S_IFMT == S_IFCHR else { return 2 }
        let reopened = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | O_APPEND)
        return reopened >= 0 ? reopened : 2
    }
}

/// Keeps a guest from flooding the log: at most `perSecond` limited lines in
/// any one second; the count of lines dropped is reported with the next line
/// that gets through.
public struct LogBudget: Sendable {
    public let perSecond: Int
    private var second: Int64 = .min
    private var used = 0
    private var dropped = 0

    public init(perSecond: Int) { self.perSecond = perSecond }

    /// Whether a line may be written in `second`; counts it either way.
    public mutating func admit(atSecond now: Int64) -> Bool {
        if now != second {
            second = now
            used = 0
        }
        used += 1
        if used > perSecond {
            dropped += 1
            return false
        }
        return true
    }

    /// A line saying how many were dropped since the last note, or nil.
    public mutating func takeDroppedNote() -> String? {
        guard dropped > 0 else { return nil }
        defer { dropped = 0 }
        return "\(dropped) log lines were dropped (more than \(perSecond) a second)"
    }
}
