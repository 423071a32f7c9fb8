import Glibc
import Synchronization
import SwiftVMDevices
import SwiftVMHost
import SwiftVMMemory

/// Feeds a descriptor (the VMM's standard input) to the guest's UART from the
/// event loop.
///
/// Input from a pipe, socket or file is never dropped: while the UART's
/// receive FIFO is full the descriptor is not read, so the writer waits
/// (back-pressure), and reading resumes when the guest drains the FIFO. Input
/// that epoll cannot watch (a regular file, /dev/null) is read a chunk at a
/// time as the guest drains it. Either way at most one chunk waits here.
///
/// With `escapes` (a terminal), Ctrl-A is an escape: Ctrl-A x quits, Ctrl-A
/// Ctrl-A sends one Ctrl-A. A terminal is read even while the guest takes
/// nothing, or a guest that never reads its serial port would keep Ctrl-A x
/// from ever being seen: up to ``heldLimit`` bytes wait for the guest, and
/// typed bytes beyond that are dropped (said once, when it starts).
final class ConsoleInput: @unchecked Sendable {
    /// Bytes read from a terminal that may wait for the guest to take them:
    /// far more than anyone types, and a paste of this much into a guest
    /// that is slow to read loses nothing.
    static let heldLimit = 64 * 1024

    // Only the event-loop thread touches the mutable state.
    private let fd: Int32
    private let serial: Serial8250
    /// Signalled by the UART when its receive FIFO has room again.
    private let resume: EventFD
    private let escapes: Bool
    private let onQuit: @Sendable () -> Void
    private var loop: EventLoop?
    private var token: EventToken?
    private var pending: [UInt8] = []
    private var escape = ConsoleEscape()
    private var watching = false
    private var closed = false
    /// The input is a regular file or similar: always readable, not pollable.
    private var isFile = false
    private let delivered = Mutex(0)
    private let dropped = Mutex(0)

    /// Bytes handed to the UART so far.
    var bytesDelivered: Int { delivered.withLock { $0 } }
    /// Bytes typed on a terminal that were dropped because the guest did not take them.
    var bytesDropped: Int { dropped.withLock { $0 } }

    /// One read's worth of input. A pipe or file waits in its own buffer, so
    /// a small chunk at a time is enough; a terminal is read in bigger ones,
    /// as it is drained whether or not the guest takes its input.
    private var chunk: [UInt8]

    init(fd: Int32, serial: Serial8250, resume: EventFD, escapes: Bool, onQuit: @escaping @Sendable () -> Void) {
        self.fd = fd
        self.serial = serial
        self.resume = resume
        self.escapes = escapes
        self.onQuit = onQuit
        // Both buffers are allocated here, before the VM runs, and never
        // grow: the event loop's thread then neither allocates nor frees
        // for input, however much arrives. (Freeing a large block on a
        // thread of its own can make glibc trim that thread's heap, which
        // opens /proc/sys/vm/overcommit_memory the first time, a call the
        // event loop's seccomp filter does not allow.)
        chunk = [UInt8](repeating: 0, count: escapes ? 4096 : 256)
        pending.reserveCapacity(Self.heldLimit + chunk.count)
    }

    func attach(to loop: EventLoop) throws(VMMError) {
        self.loop = loop
        try loop.subscribe(resume.rawValue) { [self] _ in
            resume.drain()
            deliverPending()
        }
        do {
            token = try loop.subscribe(fd) { [self] readiness in
                read(hangup: readiness.contains(.hangup) && !readiness.contains(.readable))
            }
            watching = true
        } catch where EventLoop.isUnwatchable(error) {
            isFile = true
            loop.post { [self] in read(hangup: false) }
        }
    }

    private func read(hangup: Bool) {
        let count = hangup ? 0 : chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if count < 0 && (errno == EINTR || errno == EAGAIN) { return }
        if count <= 0 {
            // End of input: the guest keeps running, it just gets no more bytes.
            if let token { loop?.remove(token) }
            token = nil
            watching = false
            closed = true
            return
        }
        for index in 0..<count { accept(chunk[index]) }
        deliverPending()
    }

    private func accept(_ byte: UInt8) {
        guard escapes else {
            pending.append(byte)
            return
        }
        switch escape.feed(byte) {
        case .forward(let byte): hold(byte)
        case .quit: onQuit()
        case .none: break
        }
    }

    /// Keeps a typed byte for the guest, or drops it when the guest has left
    /// ``heldLimit`` bytes untaken.
    private func hold(_ byte: UInt8) {
        guard pending.count >= Self.heldLimit else {
            pending.append(byte)
            return
        }
        let first = dropped.withLock { count in
            count += 1
            return count == 1
        }
        if first {
            Log.warning("console input is being dropped: the guest has not read the last \(Self.heldLimit) bytes "
                        + "typed (its serial port is not being read); Ctrl-A x still quits")
        }
    }

    /// Hands buffered bytes to the UART; stops reading input (a terminal
    /// excepted) while it is full.
    private func deliverPending() {
        if !pending.isEmpty {
            let taken = serial.enqueueInput(pending)
            pending.removeFirst(taken)
            delivered.withLock { $0 += taken }
        }
        // A terminal stays watched whatever the guest does; see ``hold(_:)``.
        let wanted = pending.isEmpty || (escapes && !isFile)
        if isFile {
            if wanted && !closed { read(hangup: false) }
            return
        }
        if !closed, wanted != watching, let token {
            try? loop?.modify(token, interest: wanted ? .readable : [])
            watching = wanted
        }
    }
}

/// The console's escape sequences: Ctrl-A x quits, Ctrl-A Ctrl-A is a literal
/// Ctrl-A, Ctrl-A followed by anything else is dropped.
struct ConsoleEscape {
    enum Action: Equatable {
        case forward(UInt8)
        case quit
    }

    static let prefix: UInt8 = 0x01  // Ctrl-A
    private var armed = false

    /// What to do with `byte`; nil when it is swallowed.
    mutating func feed(_ byte: UInt8) -> Action? {
        if armed {
            armed = false
            switch byte {
            case UInt8(ascii: "x"), UInt8(ascii: "X"): return .quit
            case ConsoleEscape.prefix: return .forward(byte)
            default: return nil
            }
        }
        if byte == ConsoleEscape.prefix {
            armed = true
            return nil
        }
        return .forward(byte)
    }
}
