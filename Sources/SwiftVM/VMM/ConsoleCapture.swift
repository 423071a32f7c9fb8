import Synchronization

/// Receives the guest's console output in an embedding program
/// (`VMConfig.SerialOutput.sink`). Called on the VMM's event-loop thread,
/// in order; it must return quickly.
public protocol ConsoleSink: AnyObject, Sendable {
    func write(_ bytes: UnsafeRawBufferPointer)
}

/// A console sink that keeps everything the guest wrote, for programs (and
/// tests) that read the console instead of showing it.
public final class ConsoleCapture: ConsoleSink {
    private let buffer = Mutex<[UInt8]>([])
    private let limit: Int

    /// Keeps at most `limit` bytes (the newest are dropped past it).
    public init(limit: Int = 16 << 20) { self.limit = limit }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        buffer.withLock { data in
            let room = max(0, limit - data.count)
            data.append(contentsOf: bytes.prefix(room))
        }
    }

    public var bytes: [UInt8] { buffer.withLock { $0 } }
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    /// The console text split into lines, carriage returns removed.
    public var lines: [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map {
            String($0.filter { $0 != "\r" })
        }
    }
}
