import Glibc
import Synchronization
import SwiftVMDevices
import SwiftVMHost

/// Feeds a descriptor (the VMM's standard input) to the guest's UART from the
/// event loop.
///
/// Input is never dropped: while the UART's receive FIFO is full the
/// descriptor is not read, and reading resumes when the guest drains the FIFO.
/// Input that epoll cannot watch (a regular file, /dev/null) is read a chunk
/// at a time as the guest drains it. With `escapes` (a terminal), Ctrl-A is an
/// escape: Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A.
final class ConsoleInput: @unchecked Sendable {
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

    /// Bytes handed to the UART so far.
    var bytesDelivered: Int { delivered.withLock { $0 } }

    init(fd: Int32, serial: Serial8250, resume: EventFD, escapes: Bool, onQuit: @escaping @Sendable () -> Void) {
        self.fd = fd
        self.serial = serial
        self.resume = resume
        self.escapes = escapes
        self.onQuit = onQuit
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
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = hangup ? 0 : buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if count < 0 && (errno == EINTR || errno == EAGAIN) { return }
        if count <= 0 {
            // End of input: the guest keeps running, it just gets no more bytes.
            if let token { loop?.remove(token) }
            token = nil
            watching = false
            closed = true
            return
        }
        for byte in buffer.prefix(count) { accept(byte) }
        deliverPending()
    }

    private func accept(_ byte: UInt8) {
        guard escapes else {
            pending.append(byte)
            return
        }
        switch escape.feed(byte) {
        case .forward(let byte): pending.append(byte)
        case .quit: onQuit()
        case .none: break
        }
    }

    /// Hands buffered bytes to the UART; stops reading input while it is full.
    private func deliverPending() {
        if !pending.isEmpty {
            let taken = serial.enqueueInput(pending)
            pending.removeFirst(taken)
            delivered.withLock { $0 += taken }
        }
        let wanted = pending.isEmpty
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
