import Glibc
import Logging
import Synchronization
import SwiftVM
import SwiftVMHost
import SwiftVMMemory

/// Where log lines go and how they look, in Firecracker's format:
/// `2026-12-02T01:23:45.123456789 [INSTANCE:THREAD:LEVEL:FILE:LINE] message`
/// (level and origin only when asked for). Lines go to standard error, or
/// to `--log-path` / `PUT /logger`'s file or FIFO, through swift-log; the
/// VMM's own messages are routed here too.
final class FirecrackerLogOutput: Sendable {
    struct Settings {
        var fd: Int32 = 2
        var level: Logger.Level = .info
        var showLevel = false
        var showOrigin = false
        /// Only lines whose source module starts with this are written.
        var module: String?
    }

    let instanceID: String
    private let settings = Mutex(Settings())

    init(instanceID: String) { self.instanceID = instanceID }

    var level: Logger.Level { settings.withLock { $0.level } }

    /// Firecracker's level names (and Off), case-insensitive.
    static func level(named name: String) -> Logger.Level?? {
        switch name.lowercased() {
        case "error": .some(.error)
        case "warning", "warn": .some(.warning)
        case "info": .some(.info)
        case "debug": .some(.debug)
        case "trace": .some(.trace)
        case "off": .some(nil)
        default: nil
        }
    }

    /// Applies a logger configuration; an error message when it cannot.
    func configure(_ config: LoggerConfig) -> String? {
        var level: Logger.Level? = self.level
        if let name = config.level {
            guard let parsed = Self.level(named: name) else {
                return "level: \"\(name)\" is not one of Error, Warning, Info, Debug, Trace, Off."
            }
            level = parsed
        }
        var fd: Int32?
        if let path = config.logPath {
            // A FIFO needs a reader; O_NONBLOCK makes its absence an error
            // rather than a hang, and a full one drops lines instead of stalling.
            let opened = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC, 0o644)
            guard opened >= 0 else {
                let hint = errno == ENXIO ? " (a FIFO needs a reader first)" : ""
                return "log_path: cannot open \(path): \(String(cString: strerror(errno)))\(hint)."
            }
            fd = opened
        }
        settings.withLock { settings in
            if let fd { settings.fd = fd }
            settings.level = level ?? .critical
            if level == nil { settings.fd = -1 }
            if let show = config.showLevel { settings.showLevel = show }
            if let show = config.showLogOrigin { settings.showOrigin = show }
            settings.module = config.module
        }
        Log.level = Self.vmmLevel(level)
        return nil
    }

    /// The VMM log's threshold for a swift-log level.
    static func vmmLevel(_ level: Logger.Level?) -> Log.Level {
        switch level {
        case nil, .critical?, .error?: .error
        case .warning?: .warning
        case .notice?, .info?: .info
        case .debug?, .trace?: .debug
        }
    }

    func write(level: Logger.Level, message: String, source: String, file: String, line: UInt) {
        let current = settings.withLock { $0 }
        guard current.fd >= 0, level >= current.level else { return }
        if let module = current.module, !source.hasPrefix(module) { return }
        var text = Self.timestamp() + " [" + instanceID + ":" + Self.threadName()
        if current.showLevel { text += ":" + Self.name(of: level) }
        if current.showOrigin { text += ":\(file):\(line)" }
        text += "] " + message + "\n"
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(current.fd, $0.baseAddress, $0.count) }
    }

    static func name(of level: Logger.Level) -> String {
        switch level {
        case .trace: "TRACE"
        case .debug: "DEBUG"
        case .info, .notice: "INFO"
        case .warning: "WARN"
        case .error, .critical: "ERROR"
        }
    }

    /// Local time with nanoseconds, as Firecracker writes it.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        localtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &parts)
        let date = String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let nanos = String(now.tv_nsec)
        return date + "." + String(repeating: "0", count: max(0, 9 - nanos.count)) + nanos
    }

    static func threadName() -> String { HostThread.currentName }
}

/// The swift-log handler that writes through a `FirecrackerLogOutput`.
struct FirecrackerLogHandler: LogHandler {
    let output: FirecrackerLogOutput
    var metadata: Logger.Metadata = [:]

    var logLevel: Logger.Level {
        get { output.level }
        set {}
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        output.write(level: event.level, message: event.message.description, source: event.source, file: event.file,
                     line: event.line)
    }
}
