import Synchronization

/// An 8042 keyboard controller with an AT keyboard that has no keys pressed.
///
/// It exists so that Linux's i8042 driver (booted with `i8042.noaux
/// i8042.nomux i8042.dumbkbd`) finds a working controller, and so that
/// `reboot=k` can reset the machine. The device answers offset 0 (port 0x60,
/// data) and offset 4 (port 0x64, status on read, command on write); the VMM
/// places it over ports 0x60-0x64, and offsets 1-3 read as an empty ISA slot.
///
/// Every command completes during the write that issues it, so the input
/// buffer is never full. Replies queue behind the one-byte output buffer and
/// are presented one at a time; the keyboard interrupt (IRQ 1, an edge) is
/// triggered each time a byte is presented while CTR enables it. No aux
/// (mouse) device is attached and IRQ 12 is not wired.
public final class I8042: BusDevice {
    private let interrupt: any InterruptLine
    private let onReset: @Sendable () -> Void
    private let state = Mutex(State())

    /// - Parameters:
    ///   - interrupt: the keyboard interrupt line (IRQ 1).
    ///   - onReset: called each time the guest pulses the CPU reset line
    ///     (command 0xFE, any 0xF0-0xFF pulse of bit 0, or an output-port
    ///     write with bit 0 clear). A guest may pulse it several times before
    ///     the VMM stops its vCPUs, so the handler should be idempotent.
    public init(interrupt: any InterruptLine, onReset: @escaping @Sendable () -> Void) {
        self.interrupt = interrupt
        self.onReset = onReset
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        // Both registers are one byte wide; anything else reads as an
        // unclaimed port would and changes nothing.
        guard data.count == 1 else {
            data.initializeMemory(as: UInt8.self, repeating: 0xff)
            return
        }
        let value: UInt8
        switch offset {
        case Port.data:
            let (byte, raise) = state.withLock { s in (s.readData(), s.updateLine()) }
            if raise { interrupt.trigger() }
            value = byte
        case Port.statusCommand:
            value = state.withLock { $0.status }
        default:
            value = 0xff
        }
        data.storeBytes(of: value, as: UInt8.self)
    }

    /// Presses Ctrl, Alt and Del on the keyboard (as Firecracker's
    /// SendCtrlAltDel does): the guest's AT keyboard driver turns it into
    /// ctrl_alt_del(), a reboot or a signal to init. The scancodes are set 2
    /// (Ctrl 14, Alt 11, Del E0 71), or their set 1 translation (1D, 38,
    /// E0 53) while the guest keeps the controller's translation on. Returns
    /// false when the guest has the keyboard interrupt or the keyboard off,
    /// or the queue has no room: then nothing reaches a driver.
    @discardableResult
    public func pressCtrlAltDel() -> Bool {
        let (delivered, raise) = state.withLock { s -> (Bool, Bool) in
            guard s.ctr & CTR.keyboardInterrupt != 0, s.ctr & CTR.keyboardDisabled == 0,
                s.queue.count + 4 <= State.queueLimit
            else { return (false, false) }
            let codes: [UInt8] = s.ctr & CTR.translate != 0 ? [0x1d, 0x38, 0xe0, 0x53] : [0x14, 0x11, 0xe0, 0x71]
            for code in codes { s.enqueue(code) }
            return (true, s.updateLine())
        }
        if raise { interrupt.trigger() }
        return delivered
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        guard data.count == 1, offset == Port.data || offset == Port.statusCommand else { return }
        let value = data.load(as: UInt8.self)
        let (reset, raise) = state.withLock { s in
            let reset = offset == Port.data ? s.writeData(value) : s.writeCommand(value)
            return (reset, s.updateLine())
        }
        if raise { interrupt.trigger() }
        if reset { onReset() }
    }
}

// MARK: - Registers

extension I8042 {
    enum Port {
        static let data: UInt64 = 0
        static let statusCommand: UInt64 = 4
    }

    enum Status {
        static let outputFull: UInt8 = 0x01
        /// Mirrors CTR bit 2, which firmware sets once POST passes.
        static let system: UInt8 = 0x04
        /// Set when the last write went to the command port.
        static let command: UInt8 = 0x08
        /// Set when the keyboard is not inhibited by the front-panel lock;
        /// Linux warns "Keylock active" when it is clear.
        static let unlocked: UInt8 = 0x10
        /// The presented byte came from the aux port.
        static let auxData: UInt8 = 0x20
    }

    /// Controller command byte (CTR) bits.
    enum CTR {
        static let keyboardInterrupt: UInt8 = 0x01
        static let system: UInt8 = 0x04
        static let keyboardDisabled: UInt8 = 0x10
        static let auxDisabled: UInt8 = 0x20
        static let translate: UInt8 = 0x40
        /// What a PC BIOS leaves behind when it found a keyboard and no
        /// mouse: keyboard interrupt on, POST passed, aux clock disabled,
        /// scancode translation on.
        static let initial: UInt8 = keyboardInterrupt | system | auxDisabled | translate
    }

    enum Command {
        static let readCTR: UInt8 = 0x20
        static let writeCTR: UInt8 = 0x60
        static let disableAux: UInt8 = 0xa7
        static let enableAux: UInt8 = 0xa8
        static let testAux: UInt8 = 0xa9
        static let selfTest: UInt8 = 0xaa
        static let testKeyboard: UInt8 = 0xab
        static let disableKeyboard: UInt8 = 0xad
        static let enableKeyboard: UInt8 = 0xae
        static let readInputPort: UInt8 = 0xc0
        static let readOutputPort: UInt8 = 0xd0
        static let writeOutputPort: UInt8 = 0xd1
        static let writeKeyboardOutput: UInt8 = 0xd2
        static let writeAuxOutput: UInt8 = 0xd3
        static let writeAux: UInt8 = 0xd4
    }

    /// Output port bits: bit 0 drives the CPU reset line (low = reset) and
    /// bit 1 gates A20, which a KVM guest always has enabled.
    enum OutputPort {
        static let resetInactive: UInt8 = 0x01
        static let a20: UInt8 = 0x02
    }

    enum Reply {
        static let selfTestPassed: UInt8 = 0x55
        static let interfaceOK: UInt8 = 0x00
        static let ack: UInt8 = 0xfa
        static let keyboardSelfTestPassed: UInt8 = 0xaa
        static let echo: UInt8 = 0xee
        /// Input port: bit 7 set means the keyboard is not inhibited.
        static let inputPort: UInt8 = 0x80
    }
}

// MARK: - State

extension I8042 {
    struct Output {
        var byte: UInt8
        var fromAux: Bool
    }

    struct State {
        var ctr = CTR.initial
        var outputPort = OutputPort.resetInactive | OutputPort.a20
        var lastWriteWasCommand = false
        /// A controller command whose data byte the next port 0x60 write is.
        var awaitingData: UInt8?
        /// A keyboard command whose parameter the next keyboard byte is.
        var awaitingParameter: UInt8?
        /// The first entry is in the output buffer; the rest wait behind it.
        var queue: [Output] = []
        /// What the data port returns once the buffer has been read empty.
        var lastOutput: UInt8 = 0
        var lineHigh = false

        /// Replies never exceed three bytes; the bound only stops a guest
        /// that keeps issuing commands without reading from growing it.
        static let queueLimit = 16

        var status: UInt8 {
            var status = Status.unlocked
            if ctr & CTR.system != 0 { status |= Status.system }
            if lastWriteWasCommand { status |= Status.command }
            if let presented = queue.first {
                status |= Status.outputFull
                if presented.fromAux { status |= Status.auxData }
            }
            return status
        }

        mutating func enqueue(_ byte: UInt8, fromAux: Bool = false) {
            guard queue.count < Self.queueLimit else { return }
            queue.append(Output(byte: byte, fromAux: fromAux))
        }

        mutating func readData() -> UInt8 {
            guard !queue.isEmpty else { return lastOutput }
            lastOutput = queue.removeFirst().byte
            // The buffer emptied, so IRQ 1 fell; presenting the next byte
            // raises it again, which updateLine sees as a new edge.
            lineHigh = false
            return lastOutput
        }

        /// Recomputes IRQ 1 (output buffer holds keyboard data and CTR
        /// enables the interrupt); true when it just went high.
        mutating func updateLine() -> Bool {
            let high = ctr & CTR.keyboardInterrupt != 0 && queue.first.map { !$0.fromAux } == true
            defer { lineHigh = high }
            return high && !lineHigh
        }

        /// Handles a write to port 0x64; true when it pulses the reset line.
        mutating func writeCommand(_ command: UInt8) -> Bool {
            lastWriteWasCommand = true
            // A new command abandons one still waiting for its data byte.
            awaitingData = nil
            switch command {
            case Command.readCTR:
                enqueue(ctr)
            case Command.writeCTR, Command.writeOutputPort, Command.writeKeyboardOutput,
                Command.writeAuxOutput, Command.writeAux:
                awaitingData = command
            case Command.disableAux:
                ctr |= CTR.auxDisabled
            case Command.enableAux:
                ctr &= ~CTR.auxDisabled
            case Command.testAux, Command.testKeyboard:
                enqueue(Reply.interfaceOK)
            case Command.selfTest:
                // Passing the self-test is what sets the system flag.
                ctr |= CTR.system
                enqueue(Reply.selfTestPassed)
            case Command.disableKeyboard:
                ctr |= CTR.keyboardDisabled
            case Command.enableKeyboard:
                ctr &= ~CTR.keyboardDisabled
            case Command.readInputPort:
                enqueue(Reply.inputPort)
            case Command.readOutputPort:
                enqueue(outputPort)
            case 0xf0...0xff:
                // Pulse the output lines whose bits are clear in the low
                // nibble; bit 0 is CPU reset (0xFE is the usual form).
                return command & 0x01 == 0
            default:
                // Other commands (controller RAM, test inputs, password
                // functions) are not needed by Linux and are ignored.
                break
            }
            return false
        }

        /// Handles a write to port 0x60; true when it pulses the reset line.
        mutating func writeData(_ value: UInt8) -> Bool {
            lastWriteWasCommand = false
            guard let command = awaitingData else {
                keyboardReceive(value)
                return false
            }
            awaitingData = nil
            switch command {
            case Command.writeCTR:
                ctr = value
            case Command.writeOutputPort:
                outputPort = value
                return value & OutputPort.resetInactive == 0
            case Command.writeKeyboardOutput:
                enqueue(value)
            case Command.writeAuxOutput:
                // Echoed as aux data; with IRQ 12 unwired it raises nothing.
                enqueue(value, fromAux: true)
            default:
                // Command.writeAux: the byte goes to a mouse that is not there.
                break
            }
            return false
        }

        /// The attached AT keyboard's answer to a byte sent to it.
        mutating func keyboardReceive(_ byte: UInt8) {
            if let command = awaitingParameter {
                awaitingParameter = nil
                enqueue(Reply.ack)
                // Scancode set query: the keyboard uses set 2.
                if command == 0xf0 && byte == 0 { enqueue(0x02) }
                return
            }
            switch byte {
            case 0xff:
                // Reset: acknowledge, then report the power-on self-test passed.
                enqueue(Reply.ack)
                enqueue(Reply.keyboardSelfTestPassed)
            case 0xf2:
                // Identify: an MF2 keyboard.
                enqueue(Reply.ack)
                enqueue(0xab)
                enqueue(0x83)
            case 0xee:
                enqueue(Reply.echo)
            case 0xed, 0xf3, 0xf0:
                // Set LEDs, typematic rate, scancode set: a parameter follows.
                awaitingParameter = byte
                enqueue(Reply.ack)
            default:
                // Enable/disable scanning, set defaults and the rest need no
                // action from a keyboard that never has keys pressed.
                enqueue(Reply.ack)
            }
        }
    }
}
