import Testing
@testable import SwiftVMBoot
import SwiftVMTestSupport

@Suite("KernelCommandLine")
struct KernelCommandLineTests {
    @Test("the default keeps one UART for the console")
    func defaultLine() throws {
        let line = try KernelCommandLine(KernelCommandLine.defaultX86)
        #expect(line.value.contains("console=ttyS0"))
        #expect(line.value.contains("8250.nr_uarts=1"))
        #expect(!line.value.contains("8250.nr_uarts=0"))
    }

    @Test("2047 bytes fit; 2048 do not, because of the NUL")
    func lengthLimit() throws {
        let longest = try KernelCommandLine(String(repeating: "a", count: 2047))
        #expect(longest.bytes.count == 2048)
        #expect(longest.bytes.last == 0)
        let error = #expect(throws: KernelCommandLineError.self) {
            try KernelCommandLine(String(repeating: "a", count: 2048))
        }
        #expect(error == .tooLong(bytes: 2048))
        #expect(error?.description == "the kernel command line is 2048 bytes; the limit is 2047 plus the terminating NUL (shorten or drop some parameters)")
    }

    @Test("the limit counts UTF-8 bytes, not characters")
    func utf8Length() {
        // "é" is two bytes in UTF-8: 1024 of them are 2048 bytes.
        #expect(throws: KernelCommandLineError.tooLong(bytes: 2048)) {
            try KernelCommandLine(String(repeating: "é", count: 1024))
        }
    }

    @Test("append joins with one space and keeps the old line when it would overflow")
    func append() throws {
        var line = try KernelCommandLine("console=ttyS0")
        try line.append("root=/dev/vda")
        #expect(line.value == "console=ttyS0 root=/dev/vda")
        try line.append("")
        #expect(line.value == "console=ttyS0 root=/dev/vda")
        #expect(throws: KernelCommandLineError.self) { try line.append(String(repeating: "x", count: 2040)) }
        #expect(line.value == "console=ttyS0 root=/dev/vda")

        var empty = try KernelCommandLine("")
        try empty.append("quiet")
        #expect(empty.value == "quiet")
    }

    @Test("an embedded NUL is refused with its offset")
    func embeddedNUL() {
        let error = #expect(throws: KernelCommandLineError.self) { try KernelCommandLine("quiet\u{0}init=/bin/sh") }
        #expect(error == .containsNUL(offset: 5))
        #expect(error?.description.contains("NUL byte at offset 5") == true)
    }

    @Test("written NUL-terminated at the command line address")
    func write() throws {
        let memory = try makeMemory()
        let line = try KernelCommandLine("panic=1")
        try line.write(to: memory)
        #expect(try memory.read(at: X86Layout.commandLine, count: 8) == Array("panic=1".utf8) + [0])
        #expect(line.size == 7)
    }
}
