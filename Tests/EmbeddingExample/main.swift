// A program that embeds swiftvm as a library: two microVMs at once, one
// stopped while the other goes on, one paused and resumed, the program's own
// SIGINT handler kept, and a bad kernel path recognised by its error kind.
// docs/library.md walks through it; the test suite builds and runs it.
//
//   swiftvm-embedding-example PATH-TO-swiftvm-testguest
import Glibc
import SwiftVM

// The program's own SIGINT handling, which the library must leave alone.
// (Unblocked too: a parent such as a test runner may have passed it on blocked.)
nonisolated(unsafe) var interrupts: sig_atomic_t = 0
signal(SIGINT) { _ in interrupts += 1 }
var sigint = sigset_t()
sigemptyset(&sigint)
sigaddset(&sigint, SIGINT)
sigprocmask(SIG_UNBLOCK, &sigint, nil)

func fail(_ message: String) -> Never {
    print("FAIL \(message)")
    exit(1)
}

guard CommandLine.arguments.count == 2 else { fail("usage: swiftvm-embedding-example TESTGUEST") }
let guest = CommandLine.arguments[1]

// 1. A bad kernel path: switch on the error, do not parse its text.
do {
    _ = try MicroVM(config: VMConfig(kernelPath: "/nonexistent/vmlinux"))
    fail("a missing kernel was accepted")
} catch {
    switch error.kind {
    case .missingFile(let path): print("missing kernel reported: \(path)")
    default: fail("a missing kernel gave \(error.kind): \(error.message)")
    }
}

// 2. Two VMs, each printing TICK lines about every 50 ms into its own capture.
func ticker(_ name: String) throws(VMMError) -> (MicroVM, ConsoleCapture) {
    let console = ConsoleCapture()
    var config = VMConfig(
        kernelPath: guest, commandLine: "console=ttyS0 reboot=k testguest.mode=ticker", memoryMiB: 64,
        serialOutput: .sink(console))
    config.entropyDevice = false
    config.consoleSilenceWarningSeconds = nil
    return (try MicroVM(config: config), console)
}

func ticks(_ console: ConsoleCapture) -> Int { console.lines.filter { $0.hasPrefix("TICK ") }.count }

/// Waits up to `seconds` for `condition`.
func eventually(_ seconds: Double, _ condition: () -> Bool) -> Bool {
    var waited = 0.0
    while !condition() {
        if waited >= seconds { return false }
        usleep(20_000)
        waited += 0.02
    }
    return true
}

do {
    let (first, firstConsole) = try ticker("first")
    let (second, secondConsole) = try ticker("second")
    try first.start()
    try second.start()
    guard eventually(30, { ticks(firstConsole) >= 3 && ticks(secondConsole) >= 3 }) else {
        fail("the guests did not tick: \(firstConsole.lines.suffix(3)) / \(secondConsole.lines.suffix(3))")
    }
    print("both VMs running")

    // Stop one; the other goes on.
    first.stop("the program is done with it")
    let reason = first.wait()
    guard case .stopped = reason, first.state == .stopped else { fail("the first VM ended with \(reason)") }
    let before = ticks(secondConsole)
    guard eventually(10, { ticks(secondConsole) >= before + 3 }) else { fail("the second VM stopped ticking") }
    print("first VM stopped (\(reason)); second VM still running")

    // Pause the second: no ticks while paused; resume: ticks again.
    try second.pause()
    guard second.state == .paused else { fail("state after pause: \(second.state)") }
    let paused = ticks(secondConsole)
    usleep(400_000)
    guard ticks(secondConsole) <= paused + 1 else { fail("the paused VM kept ticking") }
    second.resume()
    guard eventually(10, { ticks(secondConsole) >= paused + 3 }) else { fail("the resumed VM did not tick") }
    print("second VM paused and resumed")

    // The program's own SIGINT handler still runs, and the VM does not notice.
    raise(SIGINT)
    guard interrupts == 1, second.state == .running else { fail("SIGINT: handler ran \(interrupts) times, VM \(second.state)") }
    print("own SIGINT handler ran; VM still running")

    second.stop("finished")
    guard case .stopped = second.wait() else { fail("the second VM did not stop cleanly") }
    print("EMBEDDING OK")
} catch {
    fail("\(error.kind): \(error.message)")
}
