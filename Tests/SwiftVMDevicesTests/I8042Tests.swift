import Testing
import SwiftVMDevices

private let data: UInt64 = 0, statusCommand: UInt64 = 4
private let obf: UInt8 = 0x01, sys: UInt8 = 0x04, cmd: UInt8 = 0x08

private struct Fixture {
    let controller: I8042
    let irq = CountingInterruptLine()
    let resets = CallRecorder<Void>()

    init() {
        let resets = resets
        controller = I8042(interrupt: irq, onReset: { resets.record(()) })
    }

    var status: UInt8 { controller.readByte(statusCommand) }

    func command(_ value: UInt8) { controller.writeByte(statusCommand, value) }
    func send(_ value: UInt8) { controller.writeByte(data, value) }

    /// Reads the output buffer the way a driver does: poll OBF, then read.
    func drain() -> [UInt8] {
        var bytes: [UInt8] = []
        while status & obf != 0 { bytes.append(controller.readByte(data)) }
        return bytes
    }
}

@Suite("I8042")
struct I8042Tests {
    @Test("command 0xFE resets the machine once")
    func resetCommand() {
        let f = Fixture()
        f.command(0xfe)
        #expect(f.resets.count == 1)
    }

    @Test("output-line pulses reset only when they pulse bit 0", arguments: Array(0xf0...0xff) as [UInt8])
    func pulseOutputLines(command: UInt8) {
        let f = Fixture()
        f.command(command)
        #expect(f.resets.count == (command & 0x01 == 0 ? 1 : 0))
        #expect(f.status & obf == 0)
    }

    @Test("writing the output port with bit 0 clear resets", arguments: [(0xdf, 0), (0xde, 1), (0x03, 0), (0x00, 1)] as [(UInt8, Int)])
    func writeOutputPort(value: UInt8, resets: Int) {
        let f = Fixture()
        f.command(0xd1)
        f.send(value)
        #expect(f.resets.count == resets)
        f.command(0xd0)
        #expect(f.drain() == [value])
    }

    @Test("status after power-on shows POST passed and an empty buffer")
    func initialStatus() {
        let f = Fixture()
        #expect(f.status & (obf | 0x02) == 0)
        #expect(f.status & sys == sys)
        #expect(f.status & 0x10 == 0x10)
        #expect(f.status & 0x20 == 0)
        #expect(f.controller.readByte(1) == 0xff)
        #expect(f.controller.readByte(3) == 0xff)
    }

    @Test("status bit 3 tells which port was written last")
    func commandDataFlag() {
        let f = Fixture()
        f.command(0xae)
        #expect(f.status & cmd == cmd)
        f.send(0xf4)
        #expect(f.status & cmd == 0)
    }

    @Test("controller self-test answers 0x55; interface tests answer 0x00")
    func selfTests() {
        let f = Fixture()
        f.command(0xaa)
        #expect(f.drain() == [0x55])
        f.command(0xab)
        #expect(f.drain() == [0x00])
        f.command(0xa9)
        #expect(f.drain() == [0x00])
    }

    @Test("CTR round trip", arguments: [0x00, 0x45, 0x65, 0x74, 0x47] as [UInt8])
    func ctrRoundTrip(value: UInt8) {
        let f = Fixture()
        f.command(0x60)
        f.send(value)
        f.command(0x20)
        #expect(f.drain() == [value])
        // The system flag in the status register follows CTR bit 2.
        #expect(f.status & sys == value & sys)
    }

    @Test("keyboard and aux enable commands flip their CTR bits")
    func enableDisable() {
        let f = Fixture()
        f.command(0x20)
        let initial = f.drain().first ?? 0
        #expect(initial & 0x01 == 0x01)
        f.command(0xad)
        f.command(0xa8)
        f.command(0x20)
        #expect(f.drain() == [initial & ~0x20 | 0x10])
        f.command(0xae)
        f.command(0xa7)
        f.command(0x20)
        #expect(f.drain() == [initial | 0x20])
    }

    @Test("keyboard reset answers FA then AA, one byte at a time")
    func keyboardReset() {
        let f = Fixture()
        f.send(0xff)
        #expect(f.status & obf == obf)
        #expect(f.controller.readByte(data) == 0xfa)
        #expect(f.status & obf == obf)
        #expect(f.controller.readByte(data) == 0xaa)
        #expect(f.status & obf == 0)
        // An empty buffer keeps returning the last byte.
        #expect(f.controller.readByte(data) == 0xaa)
    }

    @Test(
        "keyboard commands get AT keyboard replies",
        arguments: [
            ([0xf2], [0xfa, 0xab, 0x83]),
            ([0xee], [0xee]),
            ([0xed, 0x07], [0xfa, 0xfa]),
            ([0xf3, 0x20], [0xfa, 0xfa]),
            ([0xf0, 0x00], [0xfa, 0xfa, 0x02]),
            ([0xf4], [0xfa]),
            ([0xf5], [0xfa]),
            ([0xf6], [0xfa]),
            ([0xed, 0xff, 0xee], [0xfa, 0xfa, 0xee]),
        ] as [([UInt8], [UInt8])]
    )
    func keyboardCommands(sent: [UInt8], replies: [UInt8]) {
        let f = Fixture()
        for byte in sent { f.send(byte) }
        #expect(f.drain() == replies)
    }

    @Test("D2 places a byte in the output buffer as keyboard data")
    func writeKeyboardOutput() {
        let f = Fixture()
        f.command(0xd2)
        f.send(0x1c)
        #expect(f.status & 0x21 == 0x01)
        #expect(f.drain() == [0x1c])
        #expect(f.irq.count == 1)
    }

    @Test("D3 echoes as aux data without raising the keyboard interrupt")
    func writeAuxOutput() {
        let f = Fixture()
        f.command(0xd3)
        f.send(0x5a)
        #expect(f.status & 0x21 == 0x21)
        #expect(f.drain() == [0x5a])
        #expect(f.irq.count == 0)
        // D4 sends to the absent mouse: nothing comes back.
        f.command(0xd4)
        f.send(0xf4)
        #expect(f.drain().isEmpty)
    }

    @Test("each byte presented raises IRQ 1 while CTR enables it")
    func interruptWhenEnabled() {
        let f = Fixture()
        f.send(0xff)
        #expect(f.irq.count == 1)
        _ = f.controller.readByte(data)
        #expect(f.irq.count == 2)
        _ = f.controller.readByte(data)
        #expect(f.irq.count == 2)
    }

    @Test("no interrupt while CTR bit 0 is clear")
    func noInterruptWhenDisabled() {
        let f = Fixture()
        f.command(0x60)
        f.send(0x64)
        f.send(0xff)
        #expect(f.drain() == [0xfa, 0xaa])
        f.command(0x20)
        #expect(f.drain() == [0x64])
        #expect(f.irq.count == 0)
        // Enabling it with a byte waiting raises the line.
        f.send(0xee)
        f.command(0x60)
        f.send(0x65)
        #expect(f.irq.count == 1)
        #expect(f.drain() == [0xee])
    }

    @Test("Linux's i8042 probe with noaux, nomux and dumbkbd")
    func linuxProbe() {
        let f = Fixture()
        // i8042_controller_check: flush the output buffer.
        #expect(f.drain().isEmpty)
        // i8042_controller_selftest (when resetting the controller).
        f.command(0xaa)
        #expect(f.status & obf == obf)
        #expect(f.controller.readByte(data) == 0x55)
        // i8042_controller_init: read CTR twice until stable.
        f.command(0x20)
        let first = f.controller.readByte(data)
        f.command(0x20)
        let second = f.controller.readByte(data)
        #expect(first == second)
        #expect(first & 0x40 == 0x40) // translation on, so the driver keeps it
        #expect(f.status & 0x10 == 0x10) // no keylock warning
        // Disable the keyboard and its interrupt, write CTR back, flush.
        let quiet = first & ~0x01 | 0x10
        // The BIOS left IRQ 1 enabled, so the three replies so far raised it
        // (Linux has no handler yet and ignores them).
        #expect(f.irq.count == 3)
        f.command(0x60)
        f.send(quiet)
        #expect(f.drain().isEmpty)
        f.command(0x20)
        #expect(f.drain() == [quiet])
        #expect(f.irq.count == 3)
        // i8042_enable_kbd_port once the IRQ handler is in place.
        let running = quiet & ~0x10 | 0x01
        f.command(0x60)
        f.send(running)
        f.command(0x20)
        #expect(f.drain() == [running])
        // With the interrupt enabled again, the CTR reply raised it.
        #expect(f.irq.count == 4)
        // Shutdown restores the CTR the BIOS left behind.
        f.command(0x60)
        f.send(first)
        f.command(0x20)
        #expect(f.drain() == [first])
        #expect(f.resets.count == 0)
    }

    @Test("unknown commands and other offsets are ignored")
    func ignored() {
        let f = Fixture()
        f.command(0x21)
        f.command(0xe0)
        f.controller.writeByte(1, 0x00)
        f.controller.writeByte(2, 0xfe)
        #expect(f.drain().isEmpty)
        #expect(f.resets.count == 0)
        var wide: UInt16 = 0
        withUnsafeMutableBytes(of: &wide) { f.controller.read(offset: 0, into: $0) }
        #expect(wide == 0xffff)
    }

    @Test("Ctrl-Alt-Del arrives as set 1 scancodes while the guest translates, set 2 otherwise, with an interrupt")
    func ctrlAltDel() {
        let f = Fixture()
        let before = f.irq.count
        #expect(f.controller.pressCtrlAltDel())
        #expect(f.irq.count == before + 1)
        #expect(f.drain() == [0x1d, 0x38, 0xe0, 0x53])
        // The guest turns translation off (CTR bit 6 clear): raw set 2.
        f.command(0x60)
        f.send(0x01 | 0x04)
        #expect(f.controller.pressCtrlAltDel())
        #expect(f.drain() == [0x14, 0x11, 0xe0, 0x71])
        // With the keyboard interrupt off, nothing is queued.
        f.command(0x60)
        f.send(0x04)
        #expect(!f.controller.pressCtrlAltDel())
        #expect(f.drain() == [])
    }
}
