import Synchronization

/// A 16550A UART as Linux's 8250 driver finds it on a PC COM port (COM1 is
/// ports 0x3f8-0x3ff, IRQ 4).
///
/// The device sees only register offsets 0-7, an interrupt line and an output
/// sink. Transmission is instantaneous: a byte written to THR reaches the sink
/// before the write returns, so the transmitter always reads as empty. Input
/// arrives through ``enqueueInput(_:)`` into a 64-byte receive FIFO; instead of
/// ever signalling an overrun the device tells its owner how much it took and
/// calls `inputSpaceAvailable` when a full FIFO drains, so the VMM stops and
/// resumes reading its input rather than dropping bytes.
///
/// Interrupts model the PC wiring: the UART's interrupt output is an enabled
/// and pending condition, and the board passes it to the IRQ line only while
/// MCR OUT2 is set (loopback forces the OUT2 pin inactive, so it blocks the
/// line too). Linux's 8250 driver raises OUT2 on every non-Fourport port that
/// has an IRQ before it enables interrupts, and its IRQ autoprobe sets OUT2
/// as well, so gating matches what the driver expects. The line is an edge
/// (KVM irqfd): it is triggered when that gated output goes from low to high,
/// which is what a PC's edge-triggered interrupt controller sees. Linux's
/// ISA interrupt handler loops until IIR reports nothing pending, so a
/// condition that arrives while another is still pending is not lost.
public final class Serial8250: BusDevice {
    /// Bytes the receive FIFO holds.
    public static let fifoCapacity = 64

    private let interrupt: any InterruptLine
    private let output: any ByteSink
    private let inputSpaceAvailable: @Sendable () -> Void
    private let state = Mutex(State())

    /// - Parameters:
    ///   - interrupt: the line the UART's interrupt drives (IRQ 4 for COM1).
    ///   - output: receives every byte the guest transmits.
    ///   - inputSpaceAvailable: called when the receive FIFO stops being full,
    ///     so the owner can resume feeding input it held back.
    public init(
        interrupt: any InterruptLine,
        output: any ByteSink,
        inputSpaceAvailable: @escaping @Sendable () -> Void = {}
    ) {
        self.interrupt = interrupt
        self.output = output
        self.inputSpaceAvailable = inputSpaceAvailable
    }

    /// Free slots in the receive FIFO.
    public var inputCapacity: Int {
        state.withLock { Self.fifoCapacity - $0.receive.count }
    }

    /// Appends as many of `bytes` as fit in the receive FIFO, in order, and
    /// returns how many it took; the caller keeps the rest until
    /// `inputSpaceAvailable` is called.
    public func enqueueInput(_ bytes: some Collection<UInt8>) -> Int {
        let (taken, raise) = state.withLock { s in
            var taken = 0
            for byte in bytes {
                guard s.receive.push(byte) else { break }
                taken += 1
            }
            return (taken, s.updateLine())
        }
        if raise { interrupt.trigger() }
        return taken
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        // The UART's registers are one byte wide; a wider access is a guest
        // bug, answered with zeros and without side effects.
        guard data.count == 1, offset < 8 else {
            data.initializeMemory(as: UInt8.self, repeating: 0)
            return
        }
        let (value, spaceFreed) = state.withLock { s in
            s.read(Register(rawValue: UInt8(offset)))
        }
        data.storeBytes(of: value, as: UInt8.self)
        if spaceFreed { inputSpaceAvailable() }
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        guard data.count == 1, offset < 8 else { return }
        let value = data.load(as: UInt8.self)
        let effects = state.withLock { s in
            // The sink is called under the lock so that bytes from different
            // vCPUs reach it in the order the UART accepted them.
            s.write(Register(rawValue: UInt8(offset)), value, output: output)
        }
        if effects.raise { interrupt.trigger() }
        if effects.spaceFreed { inputSpaceAvailable() }
    }
}

// MARK: - Registers

extension Serial8250 {
    /// Register offsets from the base port (PC16550D datasheet, table II).
    struct Register: RawRepresentable, Equatable {
        var rawValue: UInt8
        /// RBR on read, THR on write; DLL while LCR.DLAB is set.
        static let data = Register(rawValue: 0)
        /// IER; DLM while LCR.DLAB is set.
        static let interruptEnable = Register(rawValue: 1)
        /// IIR on read, FCR on write (not affected by DLAB).
        static let interruptIdentification = Register(rawValue: 2)
        static let lineControl = Register(rawValue: 3)
        static let modemControl = Register(rawValue: 4)
        static let lineStatus = Register(rawValue: 5)
        static let modemStatus = Register(rawValue: 6)
        static let scratch = Register(rawValue: 7)
    }

    enum IER {
        static let receivedData: UInt8 = 0x01
        static let transmitterEmpty: UInt8 = 0x02
        /// Bits 7:4 do not exist on a 16550A and read as zero; Linux's
        /// autoconfig relies on that to tell it from XScale and TI parts.
        static let implemented: UInt8 = 0x0f
    }

    enum IIR {
        static let noInterrupt: UInt8 = 0x01
        static let transmitterEmpty: UInt8 = 0x02
        static let receivedData: UInt8 = 0x04
        /// Both bits set identify a 16550A with working FIFOs.
        static let fifosEnabled: UInt8 = 0xc0
    }

    enum FCR {
        static let enableFIFOs: UInt8 = 0x01
        static let clearReceive: UInt8 = 0x02
    }

    enum LCR {
        static let divisorLatchAccess: UInt8 = 0x80
    }

    enum MCR {
        static let dtr: UInt8 = 0x01
        static let rts: UInt8 = 0x02
        static let out1: UInt8 = 0x04
        static let out2: UInt8 = 0x08
        static let loopback: UInt8 = 0x10
        /// Bits 7:5 read as zero on a 16550A.
        static let implemented: UInt8 = 0x1f
    }

    enum LSR {
        static let dataReady: UInt8 = 0x01
        static let transmitHoldingEmpty: UInt8 = 0x20
        static let transmitterEmpty: UInt8 = 0x40
    }

    enum MSR {
        static let cts: UInt8 = 0x10
        static let dsr: UInt8 = 0x20
        static let ri: UInt8 = 0x40
        static let dcd: UInt8 = 0x80
    }
}

// MARK: - State

extension Serial8250 {
    struct Effects {
        var raise = false
        var spaceFreed = false
    }

    struct State {
        var interruptEnable: UInt8 = 0
        var lineControl: UInt8 = 0
        var modemControl: UInt8 = 0
        var scratch: UInt8 = 0
        // 115200 / 12 = 9600 baud, the usual power-on setting.
        var divisor: UInt16 = 12
        var fifosEnabled = false
        // Set when the transmitter becomes empty with its interrupt enabled;
        // cleared by reading IIR while it is the reported cause, or by a THR write.
        var transmitterEmptyPending = false
        var receive = ByteRing()
        // Level of the gated interrupt output after the last access.
        var lineHigh = false

        var divisorLatch: Bool { lineControl & LCR.divisorLatchAccess != 0 }
        var loopback: Bool { modemControl & MCR.loopback != 0 }

        /// The highest-priority pending cause, as IIR bits 3:0.
        var pendingCause: UInt8 {
            if interruptEnable & IER.receivedData != 0 && !receive.isEmpty {
                return IIR.receivedData
            }
            if interruptEnable & IER.transmitterEmpty != 0 && transmitterEmptyPending {
                return IIR.transmitterEmpty
            }
            return IIR.noInterrupt
        }

        /// Recomputes the gated interrupt output; true when it just went high.
        mutating func updateLine() -> Bool {
            let high = pendingCause != IIR.noInterrupt
                && modemControl & MCR.out2 != 0
                && !loopback
            defer { lineHigh = high }
            return high && !lineHigh
        }

        mutating func read(_ register: Register) -> (UInt8, spaceFreed: Bool) {
            switch register {
            case .data where divisorLatch:
                return (UInt8(truncatingIfNeeded: divisor), false)
            case .data:
                let wasFull = receive.isFull
                // An empty FIFO reads as zero; DR tells the driver not to look.
                let byte = receive.pop() ?? 0
                _ = updateLine()
                return (byte, wasFull && !receive.isFull)
            case .interruptEnable where divisorLatch:
                return (UInt8(truncatingIfNeeded: divisor >> 8), false)
            case .interruptEnable:
                return (interruptEnable, false)
            case .interruptIdentification:
                let cause = pendingCause
                // Reading IIR acknowledges a THR-empty interrupt (16550 behaviour);
                // received data stays pending until the FIFO is drained.
                if cause == IIR.transmitterEmpty {
                    transmitterEmptyPending = false
                    _ = updateLine()
                }
                return ((fifosEnabled ? IIR.fifosEnabled : 0) | cause, false)
            case .lineControl:
                return (lineControl, false)
            case .modemControl:
                return (modemControl, false)
            case .lineStatus:
                // Transmission completes instantly, so THR and the shift
                // register are always empty. Overrun, parity, framing and
                // break never occur: input is back-pressured, not dropped.
                var status = LSR.transmitHoldingEmpty | LSR.transmitterEmpty
                if !receive.isEmpty { status |= LSR.dataReady }
                return (status, false)
            case .modemStatus:
                return (modemStatus, false)
            case .scratch:
                return (scratch, false)
            default:
                return (0, false)
            }
        }

        /// MSR bits 7:4. In loopback the modem outputs feed the modem inputs
        /// (datasheet §8.6); otherwise a modem is always attached and ready.
        /// The delta bits 3:0 stay zero: outside loopback the inputs never
        /// change, and Linux only looks at bits 7:4 in its loopback test.
        var modemStatus: UInt8 {
            guard loopback else { return MSR.dcd | MSR.dsr | MSR.cts }
            var status: UInt8 = 0
            if modemControl & MCR.out2 != 0 { status |= MSR.dcd }
            if modemControl & MCR.out1 != 0 { status |= MSR.ri }
            if modemControl & MCR.dtr != 0 { status |= MSR.dsr }
            if modemControl & MCR.rts != 0 { status |= MSR.cts }
            return status
        }

        mutating func write(_ register: Register, _ value: UInt8, output: any ByteSink) -> Effects {
            var effects = Effects()
            switch register {
            case .data where divisorLatch:
                divisor = divisor & 0xff00 | UInt16(value)
            case .data:
                // Writing THR clears a pending THR-empty interrupt; the byte
                // then leaves at once, so the transmitter is empty again and
                // the interrupt is re-armed, giving the driver one per byte.
                transmitterEmptyPending = false
                _ = updateLine()
                if loopback {
                    // The transmitter feeds the receiver. Only self-tests use
                    // this, so a byte that finds the FIFO full is lost, as on
                    // the chip.
                    _ = receive.push(value)
                } else {
                    withUnsafeBytes(of: value) { output.write($0) }
                }
                transmitterEmptyPending = true
            case .interruptEnable where divisorLatch:
                divisor = divisor & 0x00ff | UInt16(value) << 8
            case .interruptEnable:
                let enabled = value & IER.implemented
                // A driver that enables the THR-empty interrupt while the
                // transmitter is idle expects one at once (Linux tests this
                // at port startup and relies on it to start transmitting).
                if enabled & ~interruptEnable & IER.transmitterEmpty != 0 {
                    transmitterEmptyPending = true
                }
                interruptEnable = enabled
            case .interruptIdentification:
                fifosEnabled = value & FCR.enableFIFOs != 0
                if value & FCR.clearReceive != 0 {
                    let wasFull = receive.isFull
                    receive.removeAll()
                    effects.spaceFreed = wasFull
                }
                // The transmit FIFO is always empty and trigger levels do not
                // matter when every received byte is reported at once.
            case .lineControl:
                lineControl = value
            case .modemControl:
                modemControl = value & MCR.implemented
            case .lineStatus, .modemStatus:
                // Read-only on the 16550A (writable only in factory test).
                break
            case .scratch:
                scratch = value
            default:
                break
            }
            effects.raise = updateLine()
            return effects
        }
    }
}

// MARK: - Receive FIFO

extension Serial8250 {
    /// A fixed-capacity FIFO of bytes, stored as a ring.
    struct ByteRing {
        private var storage = [UInt8](repeating: 0, count: Serial8250.fifoCapacity)
        private var head = 0
        private(set) var count = 0

        var isEmpty: Bool { count == 0 }
        var isFull: Bool { count == storage.count }

        /// Appends `byte`; false when the ring is full.
        mutating func push(_ byte: UInt8) -> Bool {
            guard !isFull else { return false }
            storage[(head + count) % storage.count] = byte
            count += 1
            return true
        }

        mutating func pop() -> UInt8? {
            guard !isEmpty else { return nil }
            let byte = storage[head]
            head = (head + 1) % storage.count
            count -= 1
            return byte
        }

        mutating func removeAll() {
            head = 0
            count = 0
        }
    }
}
