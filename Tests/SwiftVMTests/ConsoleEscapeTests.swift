import Testing
@testable import SwiftVM

@Suite("Console escape sequences")
struct ConsoleEscapeTests {
    func feed(_ bytes: [UInt8]) -> [ConsoleEscape.Action] {
        var escape = ConsoleEscape()
        return bytes.compactMap { escape.feed($0) }
    }

    @Test("ordinary bytes, Ctrl-C included, go to the guest unchanged")
    func passThrough() {
        #expect(feed(Array("ls\r".utf8) + [0x03]) == (Array("ls\r".utf8) + [0x03]).map { .forward($0) })
    }

    @Test("Ctrl-A x and Ctrl-A X quit", arguments: [UInt8(ascii: "x"), UInt8(ascii: "X")])
    func quit(key: UInt8) {
        #expect(feed([UInt8(ascii: "a"), 0x01, key, UInt8(ascii: "b")]) == [.forward(UInt8(ascii: "a")), .quit, .forward(UInt8(ascii: "b"))])
    }

    @Test("Ctrl-A Ctrl-A sends one Ctrl-A; Ctrl-A then another key sends nothing")
    func literalAndUnknown() {
        #expect(feed([0x01, 0x01]) == [.forward(0x01)])
        #expect(feed([0x01, UInt8(ascii: "q"), UInt8(ascii: "x")]) == [.forward(UInt8(ascii: "x"))])
    }
}
