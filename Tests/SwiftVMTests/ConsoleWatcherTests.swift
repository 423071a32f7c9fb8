import Testing
@testable import SwiftVM
import SwiftVMDevices

@Suite("Diagnosing a boot from its console")
struct ConsoleWatcherTests {
    final class Null: ByteSink {
        func write(_ bytes: UnsafeRawBufferPointer) {}
    }

    func watch(_ text: String) -> ConsoleWatcher {
        let watcher = ConsoleWatcher(forwardingTo: Null())
        Array(text.utf8).withUnsafeBytes { watcher.write($0) }
        return watcher
    }

    @Test("each failure signature of the seed gets its cause and fix", arguments: [
        ("Kernel panic - not syncing: No working init found.  Try passing init= option to kernel.", "inspect rootfs"),
        ("VFS: Unable to mount root fs on unknown-block(0,0)", "--rootfs"),
        ("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100", "Attempted to kill init"),
    ])
    func signatures(line: String, advice: String) {
        let watcher = watch("[    1.0] booting\r\n\(line)\r\n")
        let summary = watcher.summary(commandLine: "console=ttyS0")
        #expect(summary?.contains(advice) == true, "\(summary ?? "nil")")
    }

    @Test("the first failure is the one explained; a line split across writes still counts")
    func splitWrites() {
        let watcher = ConsoleWatcher(forwardingTo: Null())
        for chunk in ["VFS: Unable to mo", "unt root fs on unknown-block(0,0)\n", "Kernel panic - not syncing: VFS\n"] {
            Array(chunk.utf8).withUnsafeBytes { watcher.write($0) }
        }
        #expect(watcher.findings.map(\.signature) == ["VFS: Unable to mount root fs", "Kernel panic - not syncing"])
        #expect(watcher.summary(commandLine: "")?.contains("Unable to mount root fs") == true)
    }

    @Test("a silent guest is explained from its command line")
    func silence() {
        let watcher = watch("")
        let noConsole = watcher.summary(commandLine: "reboot=k panic=1")
        #expect(noConsole?.contains("no console=ttyS0") == true)
        let disabled = watcher.summary(commandLine: "console=ttyS0 8250.nr_uarts=0")
        #expect(disabled?.contains("8250.nr_uarts=0") == true)
        #expect(disabled?.contains("no console=ttyS0") == false)
        // Quotes and tabs are read as the kernel reads them; a console= after -- is init's, not the kernel's.
        let quoted = watcher.summary(commandLine: "console=\"ttyS0\"\t8250.nr_uarts=\"0\"") ?? ""
        #expect(!quoted.contains("no console=ttyS0") && quoted.contains("8250.nr_uarts=0"))
        #expect(watcher.summary(commandLine: "quiet -- console=ttyS0")?.contains("no console=ttyS0") == true)
    }

    @Test("on a host that emulates guests, silence is explained by the emulation, not by the kernel config")
    func silenceOnEmulatingHost() throws {
        let emulating = try #require(watch("").summary(commandLine: "console=ttyS0", emulatingHost: true))
        #expect(emulating.contains("emulates the guest"))
        #expect(emulating.contains("earlyprintk=serial"))
        #expect(!emulating.contains("CONFIG_"))
        let hardware = try #require(watch("").summary(commandLine: "console=ttyS0", emulatingHost: false))
        #expect(hardware.contains("CONFIG_SERIAL_8250_CONSOLE"))
        #expect(!hardware.contains("earlyprintk"))
        // A command line that hides the console is named on either host.
        #expect(watch("").summary(commandLine: "reboot=k", emulatingHost: true)?.contains("no console=ttyS0") == true)
    }

    @Test("an ordinary boot log needs no explanation")
    func quietWhenFine() {
        #expect(watch("Linux version 6.1\nprintk: console [ttyS0] enabled\n").summary(commandLine: "console=ttyS0") == nil)
    }
}
