import Testing
import SwiftVMDevices

// Offsets and bits as a driver names them (PC16550D datasheet).
private let rbrTHR: UInt64 = 0, ier: UInt64 = 1, iirFCR: UInt64 = 2, lcr: UInt64 = 3
private let mcr: UInt64 = 4, lsr: UInt64 = 5, msr: UInt64 = 6, scr: UInt64 = 7
private let mcrOut2: UInt8 = 0x08, mcrLoop: UInt8 = 0x10

private struct Fixture {
    let serial: Serial8250
    let sink = RecordingSink()
    let irq = CountingInterruptLine()
    let spaceAvailable = CallRecorder<Void>()

    init() {
        let recorder = spaceAvailable
        serial = Serial8250(interrupt: irq, output: sink, inputSpaceAvailable: { recorder.record(()) })
    }

    /// The state Linux's driver leaves a port in once it is open: 8N1,
    /// DTR | RTS | OUT2, FIFOs on.
    func open(ier value: UInt8) {
        serial.writeByte(lcr, 0x03)
        serial.writeByte(mcr, 0x0b)
        serial.writeByte(iirFCR, 0x01)
        serial.writeByte(ier, value)
    }
}

@Suite("Serial8250")
struct Serial8250Tests {
    // MARK: Probing

    @Test("Linux's autoconfig identifies a 16550A")
    func linuxAutoconfig() {
        let f = Fixture()
        let s = f.serial
        // Existence test: IER bits 3:0 must hold what was written.
        let savedIER = s.readByte(ier)
        s.writeByte(ier, 0)
        #expect(s.readByte(ier) & 0x0f == 0)
        s.writeByte(ier, 0x0f)
        #expect(s.readByte(ier) & 0x0f == 0x0f)
        s.writeByte(ier, savedIER)
        // Loopback test: RTS and OUT2 looped back show up as CTS and DCD.
        let savedMCR = s.readByte(mcr)
        s.writeByte(mcr, mcrLoop | 0x0a)
        #expect(s.readByte(msr) & 0xf0 == 0x90)
        s.writeByte(mcr, savedMCR)
        // FIFO test: IIR bits 7:6 both set once FIFOs are enabled.
        s.writeByte(lcr, 0xbf)
        s.writeByte(iirFCR, 0)
        s.writeByte(lcr, 0)
        s.writeByte(iirFCR, 0x01)
        #expect(s.readByte(iirFCR) >> 6 == 0b11)
        // No EFR behind the IIR address with DLAB set (not an ST16C650).
        s.writeByte(lcr, 0x80)
        #expect(s.readByte(iirFCR) != 0)
        // No 64-byte FIFO bit (not a TI16750), with or without DLAB.
        s.writeByte(lcr, 0)
        s.writeByte(iirFCR, 0x21)
        #expect(s.readByte(iirFCR) & 0x20 == 0)
        s.writeByte(lcr, 0x80)
        s.writeByte(iirFCR, 0x21)
        #expect(s.readByte(iirFCR) & 0x20 == 0)
        s.writeByte(lcr, 0)
        // IER bit 6 does not stick (not an XScale UART).
        s.writeByte(ier, 0x40)
        #expect(s.readByte(ier) & 0x40 == 0)
        // Nothing transmitted, nothing raised: OUT2 stayed low throughout.
        #expect(f.sink.bytes.isEmpty)
        #expect(f.irq.count == 0)
        #expect(s.readByte(lsr) == 0x60)
    }

    @Test("scratch register reads back what was written", arguments: [0x00, 0x55, 0xa5, 0x5a, 0xff] as [UInt8])
    func scratchRegister(value: UInt8) {
        let f = Fixture()
        f.serial.writeByte(scr, value)
        #expect(f.serial.readByte(scr) == value)
    }

    @Test("IIR reports FIFOs only while FCR enables them")
    func fifoIdentification() {
        let f = Fixture()
        #expect(f.serial.readByte(iirFCR) == 0x01)
        f.serial.writeByte(iirFCR, 0x01)
        #expect(f.serial.readByte(iirFCR) == 0xc1)
        f.serial.writeByte(iirFCR, 0x00)
        #expect(f.serial.readByte(iirFCR) == 0x01)
    }

    @Test(
        "loopback feeds modem outputs to modem inputs",
        arguments: [
            (0x00, 0x00), (0x01, 0x20), (0x02, 0x10), (0x04, 0x40), (0x08, 0x80), (0x0f, 0xf0),
        ] as [(UInt8, UInt8)]
    )
    func loopbackModemStatus(outputs: UInt8, status: UInt8) {
        let f = Fixture()
        f.serial.writeByte(mcr, mcrLoop | outputs)
        #expect(f.serial.readByte(msr) == status)
    }

    @Test("without loopback a ready modem is attached")
    func modemStatus() {
        let f = Fixture()
        #expect(f.serial.readByte(msr) == 0xb0)
        f.serial.writeByte(mcr, 0x0b)
        #expect(f.serial.readByte(msr) == 0xb0)
        #expect(f.serial.readByte(mcr) == 0x0b)
    }

    // MARK: Divisor latch

    @Test("divisor latch round trip", arguments: [1, 3, 12, 0x0180, 0xffff] as [UInt16])
    func divisorLatch(divisor: UInt16) {
        let f = Fixture()
        f.serial.writeByte(ier, 0x05)
        f.serial.writeByte(lcr, 0x83)
        f.serial.writeByte(rbrTHR, UInt8(truncatingIfNeeded: divisor))
        f.serial.writeByte(ier, UInt8(divisor >> 8))
        #expect(f.serial.readByte(rbrTHR) == UInt8(truncatingIfNeeded: divisor))
        #expect(f.serial.readByte(ier) == UInt8(divisor >> 8))
        #expect(f.serial.readByte(lcr) == 0x83)
        // With DLAB clear the same offsets are the data and IER registers again.
        f.serial.writeByte(lcr, 0x03)
        #expect(f.serial.readByte(ier) == 0x05)
        #expect(f.sink.bytes.isEmpty)
    }

    // MARK: Transmit

    @Test("THR writes reach the sink in order")
    func transmit() {
        let f = Fixture()
        f.open(ier: 0)
        for byte in Array("hello\n".utf8) {
            #expect(f.serial.readByte(lsr) & 0x20 != 0)
            f.serial.writeByte(rbrTHR, byte)
        }
        #expect(f.sink.bytes == Array("hello\n".utf8))
        #expect(f.serial.readByte(lsr) == 0x60)
        #expect(f.irq.count == 0)
    }

    @Test("enabling the THR-empty interrupt raises it once; reading IIR clears it")
    func transmitInterrupt() {
        let f = Fixture()
        f.open(ier: 0x02)
        #expect(f.irq.count == 1)
        #expect(f.serial.readByte(iirFCR) == 0xc2)
        #expect(f.serial.readByte(iirFCR) == 0xc1)
        // Re-writing IER with the bit already set is not a new condition.
        f.serial.writeByte(ier, 0x02)
        #expect(f.irq.count == 1)
        #expect(f.serial.readByte(iirFCR) == 0xc1)
        // Each byte written re-arms it.
        f.serial.writeByte(rbrTHR, 0x41)
        #expect(f.irq.count == 2)
        f.serial.writeByte(rbrTHR, 0x42)
        #expect(f.irq.count == 3)
        #expect(f.serial.readByte(iirFCR) == 0xc2)
        #expect(f.serial.readByte(iirFCR) == 0xc1)
        // Disabling and re-enabling, as Linux's startup test does, raises it again.
        f.serial.writeByte(ier, 0)
        f.serial.writeByte(ier, 0x02)
        #expect(f.irq.count == 4)
        #expect(f.serial.readByte(iirFCR) == 0xc2)
    }

    @Test("a pending interrupt reaches the line only when OUT2 is raised")
    func out2GatesTheLine() {
        let f = Fixture()
        f.serial.writeByte(ier, 0x02)
        // The UART reports the cause, but the board keeps IRQ 4 low.
        #expect(f.irq.count == 0)
        f.serial.writeByte(mcr, 0x03)
        #expect(f.irq.count == 0)
        f.serial.writeByte(mcr, 0x0b)
        #expect(f.irq.count == 1)
        // Lowering and raising OUT2 again with the cause still pending is a new edge.
        f.serial.writeByte(mcr, 0x03)
        f.serial.writeByte(mcr, 0x0b)
        #expect(f.irq.count == 2)
        #expect(f.serial.readByte(iirFCR) == 0x02)
    }

    // MARK: Receive

    @Test("received bytes set DR, raise the interrupt once and read back in order")
    func receive() {
        let f = Fixture()
        f.open(ier: 0x01)
        #expect(f.irq.count == 0)
        #expect(f.serial.enqueueInput([0x61, 0x62, 0x63]) == 3)
        #expect(f.irq.count == 1)
        #expect(f.serial.readByte(lsr) == 0x61)
        #expect(f.serial.readByte(iirFCR) == 0xc4)
        // More input while the first is pending is no new edge.
        #expect(f.serial.enqueueInput([0x64]) == 1)
        #expect(f.irq.count == 1)
        var received: [UInt8] = []
        while f.serial.readByte(lsr) & 0x01 != 0 {
            received.append(f.serial.readByte(rbrTHR))
        }
        #expect(received == [0x61, 0x62, 0x63, 0x64])
        #expect(f.serial.readByte(iirFCR) == 0xc1)
        #expect(f.serial.readByte(lsr) == 0x60)
        // Input arriving after the driver drained the FIFO is a new edge.
        #expect(f.serial.enqueueInput([0x65]) == 1)
        #expect(f.irq.count == 2)
    }

    @Test("enabling the receive interrupt with data waiting raises it")
    func receiveInterruptEnabledLate() {
        let f = Fixture()
        f.open(ier: 0)
        #expect(f.serial.enqueueInput([0x0d]) == 1)
        #expect(f.irq.count == 0)
        #expect(f.serial.readByte(lsr) & 0x01 == 0x01)
        f.serial.writeByte(ier, 0x01)
        #expect(f.irq.count == 1)
        #expect(f.serial.readByte(iirFCR) == 0xc4)
    }

    @Test("received data takes priority over THR empty")
    func interruptPriority() {
        let f = Fixture()
        f.open(ier: 0x03)
        #expect(f.irq.count == 1)
        #expect(f.serial.enqueueInput([0x78]) == 1)
        // The line is already high for THR empty, so no second edge.
        #expect(f.irq.count == 1)
        #expect(f.serial.readByte(iirFCR) == 0xc4)
        #expect(f.serial.readByte(rbrTHR) == 0x78)
        #expect(f.serial.readByte(iirFCR) == 0xc2)
        #expect(f.serial.readByte(iirFCR) == 0xc1)
    }

    @Test("a full FIFO takes only what fits", arguments: [65, 100] as [Int])
    func fifoFull(offered: Int) {
        let f = Fixture()
        let input = (0..<offered).map { UInt8(truncatingIfNeeded: $0) }
        #expect(f.serial.inputCapacity == 64)
        #expect(f.serial.enqueueInput(input) == 64)
        #expect(f.serial.inputCapacity == 0)
        #expect(f.serial.enqueueInput(input[64...]) == 0)
        for expected in input.prefix(64) {
            #expect(f.serial.readByte(rbrTHR) == expected)
        }
        #expect(f.serial.readByte(lsr) & 0x01 == 0)
        #expect(f.serial.inputCapacity == 64)
    }

    @Test("draining a full FIFO signals space once")
    func inputSpaceAvailable() {
        let f = Fixture()
        #expect(f.serial.enqueueInput([UInt8](repeating: 0x2e, count: 64)) == 64)
        #expect(f.spaceAvailable.count == 0)
        _ = f.serial.readByte(rbrTHR)
        #expect(f.spaceAvailable.count == 1)
        while f.serial.readByte(lsr) & 0x01 != 0 { _ = f.serial.readByte(rbrTHR) }
        #expect(f.spaceAvailable.count == 1)
        // Reading an empty FIFO frees nothing.
        _ = f.serial.readByte(rbrTHR)
        #expect(f.spaceAvailable.count == 1)
        // Filling it again and clearing it through FCR frees space too.
        #expect(f.serial.enqueueInput([UInt8](repeating: 0x2e, count: 64)) == 64)
        f.serial.writeByte(iirFCR, 0x03)
        #expect(f.spaceAvailable.count == 2)
        #expect(f.serial.readByte(lsr) & 0x01 == 0)
    }

    @Test("loopback sends transmitted bytes to the receiver, not the sink")
    func loopbackReceive() {
        let f = Fixture()
        f.open(ier: 0x01)
        f.serial.writeByte(mcr, mcrLoop | mcrOut2)
        f.serial.writeByte(rbrTHR, 0x5a)
        #expect(f.sink.bytes.isEmpty)
        #expect(f.serial.readByte(lsr) == 0x61)
        #expect(f.serial.readByte(iirFCR) == 0xc4)
        // Loopback forces the OUT2 pin inactive, so IRQ 4 stays low.
        #expect(f.irq.count == 0)
        #expect(f.serial.readByte(rbrTHR) == 0x5a)
        f.serial.writeByte(mcr, 0x0b)
        f.serial.writeByte(rbrTHR, 0x5a)
        #expect(f.sink.bytes == [0x5a])
    }

    // MARK: Odd accesses

    @Test("wide and out-of-range accesses have no effect")
    func oddAccesses() {
        let f = Fixture()
        #expect(f.serial.enqueueInput([0x31]) == 1)
        var wide: UInt16 = 0xffff
        withUnsafeMutableBytes(of: &wide) { f.serial.read(offset: 0, into: $0) }
        #expect(wide == 0)
        withUnsafeBytes(of: UInt16(0x4142)) { f.serial.write(offset: 0, from: $0) }
        #expect(f.sink.bytes.isEmpty)
        #expect(f.serial.readByte(8) == 0)
        f.serial.writeByte(8, 0x41)
        #expect(f.sink.bytes.isEmpty)
        #expect(f.serial.readByte(rbrTHR) == 0x31)
    }
}
