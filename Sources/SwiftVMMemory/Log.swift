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

    private struct Sink {
        var fd: Int32 = 2
        var budget = LogBudget(perSecond: 20)
    }
    private static let sink = Mutex(Sink())

    /// Messages above `level` are dropped.
    public static var level: Level {
        get { Level(rawValue: threshold.load(ordering: .relaxed)) ?? .info }
        set { threshold.store(newValue.rawValue, ordering: .relaxed) }
    }

    /// Sends log lines to `fd` instead of standard error.
    public static func redirect(to fd: Int32) { sink.withLock { $0.fd = fd } }

    public static func isEnabled(_ level: Level) -> Bool { level.rawValue <= threshold.load(ordering: .relaxed) }

    public static func error(_ message: @autoclosure () -> String) { emit(.error, message) }
    public static func warning(_ message: @autoclosure () -> String) { emit(.warning, message) }
    public static func info(_ message: @autoclosure () -> String) { emit(.info, message) }
    public static func debug(_ message: @autoclosure () -> String) { emit(.debug, message) }

    private static func emit(_ level: Level, _ message: () -> String) {
        guard isEnabled(level) else { return }
        var line = "swiftvm: "
        if level != .info { line += level.name + ": " }
        line += message()
        line += "\n"
        sink.withLock { sink in
            // Warnings and debug lines are what a guest can provoke at will.
            if level == .warning || level == .debug {
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                guard sink.budget.admit(atSecond: Int64(now.tv_sec)) else { return }
            }
            if let note = sink.budget.takeDroppedNote() { line = note + line }
            let fd = sink.fd
            let bytes = Array(line.utf8)
            bytes.withUnsafeBytes { buffer in
                guard let base = buffer.baseAddress else { return }
                var done = 0
                while done < buffer.count {
                    let written = write(fd, base + done, buffer.count - done)
                    if written <= 0 { break }
                    done += written
                }
            }
        }
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
        return "swiftvm: warning: \(dropped) log lines were dropped (more than \(perSecond) a second)\n"
    }
}
