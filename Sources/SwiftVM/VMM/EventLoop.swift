import Glibc
import SwiftVMHost
import SwiftVMDevices

/// The device event-loop thread: serves virtio queue notifications, feeds the
/// VMM's standard input to the serial console, and watches for stop requests.
///
/// On a terminal, Ctrl-A is an escape: Ctrl-A x quits, Ctrl-A Ctrl-A sends one
/// Ctrl-A to the guest. Input is never dropped: while the UART's receive FIFO
/// is full, standard input is not read. Input that epoll cannot watch (a
/// regular file, /dev/null) is read a chunk at a time as the guest drains it.
final class EventLoop: @unchecked Sendable {
    // Only the event-loop thread touches the mutable state below.
    private let epoll: Epoll
    private let latch: ExitLatch
    private let stop: EventFD
    private let signals: FileDescriptor
    private let serial: Serial8250?
    private let inputResume: EventFD
    private let input: Int32?
    private let escapes: Bool
    private var pending: [UInt8] = []
    private var escape = ConsoleEscape()
    private var inputWatched = false
    private var inputClosed = false
    /// Standard input is a regular file or similar: always readable, not pollable.
    private var inputIsFile = false

    private enum Token: UInt64 { case stop, signal, input, inputResume }
    /// Tokens from here up name virtio devices by index.
    private static let firstVirtioToken: UInt64 = 16
    private let virtio: [VirtioEndpoint]
    private let silence: SilenceWatch?
    /// Called on `Signals.stateReport` (SIGUSR1).
    private let stateRequest: () -> Void

    init(
        latch: ExitLatch, signals: FileDescriptor, serial: Serial8250?, inputResume: EventFD, input: Int32?,
        escapes: Bool, virtio: [VirtioEndpoint],
        silence: SilenceWatch? = nil, stateRequest: @escaping () -> Void = {}
    ) throws(SystemError) {
        self.epoll = try Epoll()
        self.latch = latch
        self.stop = try EventFD()
        self.signals = signals
        self.serial = serial
        self.inputResume = inputResume
        self.input = input
        self.escapes = escapes
        self.virtio = virtio
        self.silence = silence
        self.stateRequest = stateRequest
        for (index, endpoint) in virtio.enumerated() {
            try epoll.add(endpoint.notify.rawValue, token: EventLoop.firstVirtioToken + UInt64(index))
        }
        try epoll.add(stop.rawValue, token: Token.stop.rawValue)
        try epoll.add(signals.rawValue, token: Token.signal.rawValue)
        try epoll.add(inputResume.rawValue, token: Token.inputResume.rawValue)
        if let input, serial != nil {
            do {
                try epoll.add(input, token: Token.input.rawValue)
                inputWatched = true
            } catch where error.errno == EPERM {
                inputIsFile = true
            }
        }
    }

    /// Asks the loop to return.
    func requestStop() { stop.signal() }

    /// Runs until `requestStop`.
    func run() {
        if inputIsFile { readInput(hangup: false) }
        var silenceDeadline = silence.map { Self.now() + Int64($0.milliseconds) }
        while true {
            let events: [Epoll.Event]
            var timeout: Int32 = -1
            if let deadline = silenceDeadline { timeout = Int32(max(0, deadline - Self.now())) }
            do { events = try epoll.wait(timeoutMilliseconds: timeout) } catch {
                latch.finish(.vmmError("event loop: \(error)"))
                return
            }
            if let deadline = silenceDeadline, Self.now() >= deadline {
                silenceDeadline = nil
                if let silence, silence.quiet() { silence.report() }
            }
            for event in events {
                if event.token >= EventLoop.firstVirtioToken {
                    let index = Int(event.token - EventLoop.firstVirtioToken)
                    if index < virtio.count { virtio[index].serve() }
                    continue
                }
                switch Token(rawValue: event.token) {
                case .stop:
                    return
                case .signal:
                    guard let number = Signals.readSignal(from: signals) else { break }
                    if number == Signals.stateReport { stateRequest() } else { latch.finish(.signal(number)) }
                case .inputResume:
                    inputResume.drain()
                    deliverPending()
                case .input:
                    readInput(hangup: event.hangup && !event.readable)
                case nil:
                    break
                }
            }
        }
    }

    /// Milliseconds on the monotonic clock.
    private static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }

    private func readInput(hangup: Bool) {
        guard let input else { return }
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = hangup ? 0 : buffer.withUnsafeMutableBytes { Glibc.read(input, $0.baseAddress, $0.count) }
        if count < 0 && (errno == EINTR || errno == EAGAIN) { return }
        if count <= 0 {
            // End of input: the guest keeps running, it just gets no more bytes.
            if inputWatched { try? epoll.remove(input) }
            inputWatched = false
            inputClosed = true
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
        case .quit: latch.finish(.userQuit)
        case .none: break
        }
    }

    /// Hands buffered bytes to the UART; stops reading input while it is full.
    private func deliverPending() {
        guard let serial, let input else { return }
        if !pending.isEmpty {
            let taken = serial.enqueueInput(pending)
            pending.removeFirst(taken)
        }
        let wantInput = pending.isEmpty
        if inputIsFile {
            if wantInput && !inputClosed { readInput(hangup: false) }
            return
        }
        if !inputClosed, wantInput != inputWatched {
            try? epoll.modify(input, token: Token.input.rawValue, readable: wantInput)
            inputWatched = wantInput
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

/// A one-time report the event loop makes when, after `milliseconds`,
/// `quiet()` still holds (the guest console has stayed empty).
struct SilenceWatch: Sendable {
    let milliseconds: Int32
    let quiet: @Sendable () -> Bool
    let report: @Sendable () -> Void
}
