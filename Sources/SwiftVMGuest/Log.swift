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
    private static let sink = Mutex<Int32>(2)

    /// Messages above `level` are dropped.
    public static var level: Level {
        get { Level(rawValue: threshold.load(ordering: .relaxed)) ?? .info }
        set { threshold.store(newValue.rawValue, ordering: .relaxed) }
    }

    /// Sends log lines to `fd` instead of standard error.
    public static func redirect(to fd: Int32) { sink.withLock { $0 = fd } }

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
        sink.withLock { fd in
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
