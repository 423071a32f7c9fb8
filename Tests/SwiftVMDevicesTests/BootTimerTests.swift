import Testing
import SwiftVMDevices

@Suite("BootTimer")
struct BootTimerTests {
    @Test("writing 123 at offset 0 reports boot, every time")
    func magicWrite() {
        let boots = CallRecorder<UInt8>()
        let timer = BootTimer(onBoot: { boots.record($0) })
        timer.writeByte(0, 123)
        #expect(boots.arguments == [123])
        timer.writeByte(0, 123)
        #expect(boots.arguments == [123, 123])
        // A 32-bit store of the same value counts too.
        withUnsafeBytes(of: UInt32(123).littleEndian) { timer.write(offset: 0, from: $0) }
        #expect(boots.count == 3)
    }

    @Test(
        "other values, widths and offsets are ignored",
        arguments: [(0, 0x7a), (0, 0x00), (0, 0xff), (1, 0x7b), (4, 0x7b), (0xfff, 0x7b)] as [(UInt64, UInt8)]
    )
    func ignoredWrites(offset: UInt64, value: UInt8) {
        let boots = CallRecorder<UInt8>()
        let timer = BootTimer(onBoot: { boots.record($0) })
        timer.writeByte(offset, value)
        withUnsafeBytes(of: UInt16(0x017b)) { timer.write(offset: 0, from: $0) }
        #expect(boots.count == 0)
    }

    @Test("reads return zero")
    func reads() {
        let timer = BootTimer(onBoot: { _ in })
        timer.writeByte(0, 123)
        #expect(timer.readByte(0) == 0)
        var wide: UInt64 = .max
        withUnsafeMutableBytes(of: &wide) { timer.read(offset: 8, into: $0) }
        #expect(wide == 0)
    }
}
