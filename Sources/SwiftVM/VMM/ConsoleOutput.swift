import Glibc
import Synchronization
import SwiftVMDevices
import SwiftVMHost
import SwiftVMMemory

/// The guest console's way out: what the UART transmits goes into a bounded
/// buffer, and the event loop drains it to the destination without ever
/// blocking. A vCPU thread only copies bytes into memory, so a reader that
/// stops reading (a full pipe, a stalled terminal) can neither stall the
/// guest nor keep the VMM from stopping. When the destination falls behind
/// and the buffer is full, new output is dropped and counted; the first drop
/// is logged at once and the total when the VM stops.
final class ConsoleOutput: ByteSink, Sendable {
    enum Destination: @unchecked Sendable {
        /// A descriptor written with non-blocking writes (see `open`).
        case descriptor(Int32, owned: FileDescriptor?, socket: Bool)
        /// A sink of the embedding program, called on the event-loop thread.
        case sink(any ConsoleSink)
        case discard
    }

    private struct Buffer {
        var bytes: [UInt8] = []
        var start = 0
        var dropped = 0
        var droppedReported = false
        var pending: Int { bytes.count - start }
    }

    private let destination: Destination
    private let capacity: Int
    private let buffer = Mutex(Buffer())
    /// Signalled when the buffer stops being empty.
    private let ready: EventFD
    /// The loop's subscription for writability, while a write would block.
    private let writableToken = Mutex<EventToken?>(nil)
    private let loop = Mutex<EventLoop?>(nil)
    /// What the destination is called in messages ("standard output", a path).
    let name: String

    init(destination: Destination, name: String, capacity: Int) throws(SystemError) {
        self.destination = destination
        self.name = name
        self.capacity = capacity
        ready = try EventFD(nonBlocking: true)
    }

    /// Bytes of guest output dropped so far.
    var droppedBytes: Int { buffer.withLock { $0.dropped } }

    /// Called by the UART on a vCPU thread: copies what fits, never waits.
    func write(_ bytes: UnsafeRawBufferPointer) {
        if case .discard = destination { return }
        let (wasEmpty, firstDrop) = buffer.withLock { buffer -> (Bool, Bool) in
            let wasEmpty = buffer.pending == 0
            if buffer.start > 0 && buffer.start >= buffer.bytes.count / 2 {
                buffer.bytes.removeFirst(buffer.start)
                buffer.start = 0
            }
            let room = max(0, capacity - buffer.pending)
            let taken = min(room, bytes.count)
            buffer.bytes.append(contentsOf: bytes.prefix(taken))
            var firstDrop = false
            if taken < bytes.count {
                buffer.dropped += bytes.count - taken
                firstDrop = !buffer.droppedReported
                buffer.droppedReported = true
            }
            return (wasEmpty && taken > 0, firstDrop)
        }
        if wasEmpty { ready.signal() }
        if firstDrop {
            Log.warning("guest console output to \(name) is being dropped: it is not read as fast as the guest "
                + "writes (more than \(capacity / 1024) KiB waiting); the VM goes on")
        }
    }

    /// Starts draining on `loop`.
    func attach(to loop: EventLoop) throws(VMMError) {
        self.loop.withLock { $0 = loop }
        try loop.subscribe(ready.rawValue) { [self] _ in
            ready.drain()
            drain()
        }
    }

    /// Writes what is buffered until the destination would block; then waits
    /// for it to become writable. Runs on the loop thread.
    private func drain() {
        while true {
            let chunk = buffer.withLock { buffer -> [UInt8] in
                Array(buffer.bytes[buffer.start..<min(buffer.bytes.count, buffer.start + 65536)])
            }
            if chunk.isEmpty {
                stopWaitingForWritable()
                return
            }
            let written = send(chunk)
            if written > 0 {
                buffer.withLock { buffer in
                    buffer.start += written
                    if buffer.start == buffer.bytes.count {
                        buffer.bytes.removeAll(keepingCapacity: true)
                        buffer.start = 0
                    }
                }
            } else if written == 0 {
                waitForWritable()
                return
            } else {
                // The destination is gone (EPIPE, EIO, ENOSPC): the guest goes
                // on and its output is dropped from now on, once said.
                buffer.withLock { buffer in
                    buffer.dropped += buffer.pending
                    buffer.bytes.removeAll()
                    buffer.start = 0
                    buffer.droppedReported = true
                }
                return
            }
        }
    }

    /// Writes `bytes` to the destination without blocking: returns how many
    /// were taken, 0 when it would block, -1 when it failed for good.
    private func send(_ bytes: [UInt8]) -> Int {
        switch destination {
        case .discard:
            return bytes.count
        case .sink(let sink):
            bytes.withUnsafeBytes { sink.write($0) }
            return bytes.count
        case .descriptor(let fd, _, let socket):
            while true {
                let result = bytes.withUnsafeBytes { raw in
                    socket
                        ? Glibc.send(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                        : Glibc.write(fd, raw.baseAddress, raw.count)
                }
                if result >= 0 { return result }
                switch errno {
                case EINTR: continue
                case EAGAIN: return 0
                default:
                    Log.warning("guest console output to \(name) failed (\(SystemError("write", errno: errno))); "
                        + "further output is dropped")
                    return -1
                }
            }
        }
    }

    private func waitForWritable() {
        guard case .descriptor(let fd, _, _) = destination, let loop = loop.withLock({ $0 }) else { return }
        guard writableToken.withLock({ $0 }) == nil else { return }
        do {
            let token = try loop.subscribe(fd, interest: .writable) { [self] _ in drain() }
            writableToken.withLock { $0 = token }
        } catch {
            // Not pollable (a regular file never blocks, so this is rare): try
            // again on the next output instead.
        }
    }

    private func stopWaitingForWritable() {
        guard let token = writableToken.withLock({ token in defer { token = nil }; return token }),
            let loop = loop.withLock({ $0 })
        else { return }
        loop.remove(token)
    }

    /// At the VM's end, on the loop thread: writes what is left, waiting at
    /// most `milliseconds` for a slow destination, then reports what was dropped.
    func finish(waitingAtMost milliseconds: Int32) {
        stopWaitingForWritable()
        let deadline = EventLoop.now() + Int64(milliseconds)
        while buffer.withLock({ $0.pending }) > 0 {
            let before = buffer.withLock { $0.pending }
            drain()
            stopWaitingForWritable()
            let after = buffer.withLock { $0.pending }
            guard after > 0, case .descriptor(let fd, _, _) = destination else { break }
            let left = deadline - EventLoop.now()
            if left <= 0 { break }
            if after == before {
                var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&entry, 1, Int32(left)) <= 0 { break }
            }
        }
        let dropped = buffer.withLock { buffer -> Int in
            buffer.dropped += buffer.pending
            buffer.bytes.removeAll()
            buffer.start = 0
            return buffer.dropped
        }
        if dropped > 0 {
            Log.warning("\(dropped) bytes of guest console output were dropped because \(name) did not keep up")
        }
    }

    /// The destination for `output`: standard output and pipes, FIFOs and
    /// terminals get a descriptor of their own opened non-blocking (a flag on
    /// the shared descriptor would change it for the shell too); a regular
    /// file is written directly (its writes do not block on a reader); a
    /// socket is written with MSG_DONTWAIT.
    static func open(_ output: VMConfig.SerialOutput, capacity: Int) throws(VMMError) -> ConsoleOutput {
        do {
            switch output {
            case .standardOutput:
                return try ConsoleOutput(destination: nonBlocking(1), name: "standard output", capacity: capacity)
            case .file(let path):
                let fd: FileDescriptor
                do {
                    // O_NONBLOCK also keeps a FIFO without a reader from blocking the open.
                    fd = try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK)
                } catch {
                    let reason = String(cString: strerror(error.errno))
                    let hint = error.errno == ENXIO ? " (a FIFO needs a reader before swiftvm starts)" : ""
                    throw VMMError(.missingInput, "cannot open the serial output file \(path): \(reason)\(hint)")
                }
                return try ConsoleOutput(
                    destination: .descriptor(fd.rawValue, owned: fd, socket: isSocket(fd.rawValue)), name: path,
                    capacity: capacity)
            case .sink(let sink):
                return try ConsoleOutput(destination: .sink(sink), name: "the console sink", capacity: capacity)
            case .none:
                return try ConsoleOutput(destination: .discard, name: "nowhere", capacity: capacity)
            }
        } catch let error as SystemError {
            throw VMMError(.hostResource, "setting up the console: \(error)")
        } catch let error as VMMError {
            throw error
        } catch {
            throw VMMError(.internalError, "setting up the console: \(error)")
        }
    }

    private static func nonBlocking(_ fd: Int32) -> Destination {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .descriptor(fd, owned: nil, socket: false) }
        switch info.st_mode & S_IFMT {
        case S_IFREG, S_IFBLK:
            return .descriptor(fd, owned: nil, socket: false)
        case S_IFSOCK:
            return .descriptor(fd, owned: nil, socket: true)
        default:
            let reopened = Glibc.open("/proc/self/fd/\(fd)", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
            guard reopened >= 0 else { return .descriptor(fd, owned: nil, socket: false) }
            let owned = FileDescriptor(owning: reopened)
            return .descriptor(reopened, owned: owned, socket: false)
        }
    }

    private static func isSocket(_ fd: Int32) -> Bool {
        var info = stat()
        return fstat(fd, &info) == 0 && info.st_mode & S_IFMT == S_IFSOCK
    }
}
