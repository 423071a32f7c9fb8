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

/// Splitting into parameters as lib/cmdline.c next_arg() and kernel/params.c parse_args() do.
@Suite("KernelCommandLine parameters")
struct KernelParameterTests {
    /// (name, value) pairs, the shortest way to state what the kernel sees.
    static func pairs(_ line: String) -> [(String, String?)] {
        KernelCommandLine.parameters(in: line).map { ($0.name, $0.value) }
    }

    static func expectPairs(_ line: String, _ expected: [(String, String?)], sourceLocation: SourceLocation = #_sourceLocation) {
        let got = pairs(line)
        #expect(got.map(\.0) == expected.map(\.0), "names of \(line.debugDescription)", sourceLocation: sourceLocation)
        #expect(got.map(\.1) == expected.map(\.1), "values of \(line.debugDescription)", sourceLocation: sourceLocation)
    }

    @Test("plain words: name=value, and words without = have no value")
    func plain() {
        Self.expectPairs("console=ttyS0 reboot=k quiet 8250.nr_uarts=1", [
            ("console", "ttyS0"), ("reboot", "k"), ("quiet", nil), ("8250.nr_uarts", "1"),
        ])
        // Only the first = splits; an empty value is still a value.
        Self.expectPairs("virtio_mmio.device=4K@0x1000:5 a=b=c root=", [
            ("virtio_mmio.device", "4K@0x1000:5"), ("a", "b=c"), ("root", ""),
        ])
    }

    @Test("a quoted value keeps its spaces and loses its quotes; the word keeps them")
    func quotedValue() {
        let parameters = KernelCommandLine.parameters(in: #"dyndbg="file drivers/virtio/* +p" root="/dev/vda" x=1"#)
        #expect(parameters.map(\.name) == ["dyndbg", "root", "x"])
        #expect(parameters.map(\.value) == ["file drivers/virtio/* +p", "/dev/vda", "1"])
        #expect(parameters.map(\.word) == [#"dyndbg="file drivers/virtio/* +p""#, #"root="/dev/vda""#, "x=1"])
        // Quotes that do not start the value stay in it; they still protect spaces.
        Self.expectPairs(#"a=b"c d"e f"#, [("a", #"b"c d"e"#), ("f", nil)])
        // An empty quoted value.
        Self.expectPairs(#"init="" quiet"#, [("init", ""), ("quiet", nil)])
    }

    @Test("a word quoted whole: the leading quote and the trailing one go")
    func quotedWord() {
        Self.expectPairs(#""console=ttyS0" "opt=a b" "just words" tail"#, [
            ("console", "ttyS0"), ("opt", "a b"), ("just words", nil), ("tail", nil),
        ])
        #expect(KernelCommandLine.parameters(in: #""opt=a b""#).first?.word == #""opt=a b""#)
    }

    @Test("-- ends the kernel's parameters; the rest goes to init, up to another --")
    func initArguments() throws {
        let line = #"console=ttyS0 -- single  debug=1 "two words" --=x -- ignored"#
        Self.expectPairs(line, [("console", "ttyS0")])
        #expect(KernelCommandLine.initArguments(in: line) == ["single", "debug=1", "two words", "--=x"])
        // -- with a value is an ordinary parameter, and a quoted "--" still ends the list.
        Self.expectPairs("--=1 a", [("--", "1"), ("a", nil)])
        Self.expectPairs(#"a "--" b"#, [("a", nil)])
        #expect(KernelCommandLine.initArguments(in: #"a "--" b"#) == ["b"])
        // init gets name=value back, without the quotes.
        #expect(KernelCommandLine.initArguments(in: #"-- x="y z""#) == ["x=y z"])
        #expect(KernelCommandLine.initArguments(in: "quiet").isEmpty)

        let checked = try KernelCommandLine("panic=1 -- -s")
        #expect(checked.parameters.map(\.word) == ["panic=1"])
        #expect(checked.initArguments == ["-s"])
    }

    @Test("an empty or blank line has no parameters")
    func empty() {
        #expect(KernelCommandLine.parameters(in: "").isEmpty)
        #expect(KernelCommandLine.parameters(in: " \t\n\r ").isEmpty)
        #expect(KernelCommandLine.initArguments(in: "").isEmpty)
    }

    @Test("runs of spaces, tabs, newlines, \\v, \\f and \\r separate words like one space")
    func whitespace() {
        Self.expectPairs("  a=1 \t\n\r\u{0B}\u{0C} b\tc=2\n", [("a", "1"), ("b", nil), ("c", "2")])
    }

    @Test("the kernel's isspace() counts byte 0xa0 too, even inside a UTF-8 character")
    func noBreakSpace() {
        // U+00A0 is C2 A0 in UTF-8: the kernel splits after C2, which no longer decodes.
        Self.expectPairs("a=1\u{A0}b=2", [("a", "1\u{FFFD}"), ("b", "2")])
        Self.expectPairs("a=é", [("a", "é")])
    }

    @Test("an unterminated quote runs to the end of the line")
    func unterminatedQuote() {
        Self.expectPairs(#"a=1 b="c d  e=3"#, [("a", "1"), ("b", "c d  e=3")])
        Self.expectPairs(#"a "b c=d"#, [("a", nil), ("b c", "d")])
        Self.expectPairs(#"x=""#, [("x", "")])
        #expect(KernelCommandLine.initArguments(in: #"a "-- b"#).isEmpty)
    }

    @Test("an = at the start of a word does not end the name; the next one does")
    func leadingEquals() {
        Self.expectPairs("=a=b =c", [("=a", "b"), ("=c", nil)])
    }

    @Test("a NUL ends the line, as it does for the kernel")
    func nul() {
        Self.expectPairs("a=1\u{0}b=2", [("a", "1")])
    }

    @Test("value(of:) takes the last value given, contains(_:) any mention, values(of:) all")
    func lookups() throws {
        let line = try KernelCommandLine(#"console=tty0 root=/dev/vda console="ttyS0,115200" root=/dev/vdb ro init"#)
        #expect(line.value(of: "root") == "/dev/vdb")
        #expect(line.parameters.values(of: "console") == ["tty0", "ttyS0,115200"])
        #expect(line.value(of: "ro") == nil && line.contains("ro"))
        // A bare `init` is not init=: it has no value.
        #expect(line.value(of: "init") == nil && line.contains("init"))
        #expect(!line.contains("quiet"))
        #expect(!KernelCommandLine.parameters(in: "-- root=/dev/vda").contains("root"))
    }

    @Test("added parameters go before a --, not to init")
    func adding() {
        #expect(KernelCommandLine.addingParameters(["root=/dev/vda rw"], to: "console=ttyS0") == "console=ttyS0 root=/dev/vda rw")
        #expect(KernelCommandLine.addingParameters(["root=/dev/vda", ""], to: "") == "root=/dev/vda")
        #expect(KernelCommandLine.addingParameters([], to: "a -- b") == "a -- b")
        let added = KernelCommandLine.addingParameters(["root=/dev/vda", "rw"], to: "console=ttyS0 -- single")
        #expect(added == "console=ttyS0 root=/dev/vda rw -- single")
        #expect(KernelCommandLine.parameters(in: added).map(\.name) == ["console", "root", "rw"])
        #expect(KernelCommandLine.addingParameters(["quiet"], to: "-- -s") == "quiet -- -s")
        // A -- inside quotes is no separator.
        #expect(KernelCommandLine.addingParameters(["quiet"], to: #"a="x -- y""#) == #"a="x -- y" quiet"#)
    }
}
