import Testing
import SwiftVMBoot
import SwiftVMTestSupport

@Suite("Register bitmaps")
struct CPUBitmapTests {
    @Test("x keeps, 0 clears, 1 sets; most significant bit first")
    func parseAndApply() throws {
        let bitmap = try RegisterBitmap(parsing: "0b" + String(repeating: "x", count: 28) + "10x0", width: 32)
        #expect(bitmap.mask == 0b1101)
        #expect(bitmap.value == 0b1000)
        #expect(bitmap.apply(to: UInt32(0xffff_ffff)) == 0xffff_fffa)
        #expect(bitmap.apply(to: UInt32(0)) == 0b1000)
    }

    @Test("apply is (old & ~mask) | (value & mask)",
          arguments: [0, 0xdead_beef, 0xffff_ffff_ffff_ffff] as [UInt64])
    func applyFormula(old: UInt64) {
        let bitmap = RegisterBitmap(mask: 0xff00_0000_0000_00ff, value: 0x1200_0000_0000_0034, width: 64)
        #expect(bitmap.apply(to: old) == (old & ~bitmap.mask) | (bitmap.value & bitmap.mask))
    }

    @Test("description prints the pattern back", arguments: [
        "0bxxxx000000000011xx00011011110010",
        "0b0000000000000000000000000000000000000000000000000000000000000000",
        "0b1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0",
    ])
    func roundTrip(text: String) throws {
        let bitmap = try RegisterBitmap(parsing: text, width: text.count - 2)
        #expect(bitmap.description == text)
    }

    @Test("underscores separate groups and do not count")
    func underscores() throws {
        let grouped = try RegisterBitmap(parsing: "0bxxxx_xxxx_xxxx_xxxx_xxxx_xxxx_xxxx_0001", width: 32)
        #expect(grouped == RegisterBitmap(mask: 0xf, value: 0x1, width: 32))
    }

    @Test("malformed bitmaps say what was expected and what was found", arguments: [
        ("0b" + String(repeating: "x", count: 31), 32,
         "expected \"0b\" and 32 characters of 0, 1 or x, found 31 characters"),
        ("0b" + String(repeating: "0", count: 33), 32,
         "expected \"0b\" and 32 characters of 0, 1 or x, found 33 characters"),
        ("0b" + String(repeating: "0", count: 32), 64,
         "expected \"0b\" and 64 characters of 0, 1 or x, found 32 characters"),
        ("0bxxz" + String(repeating: "x", count: 29), 32,
         "expected \"0b\" and 32 characters of 0, 1 or x, found \"z\" at character 5"),
        (String(repeating: "x", count: 32), 32,
         "expected \"0b\" and 32 characters of 0, 1 or x, found no \"0b\" prefix"),
    ])
    func errors(text: String, width: Int, message: String) {
        #expect {
            _ = try RegisterBitmap(parsing: text, width: width)
        } throws: { error in
            "\(error)" == message
        }
    }
}
