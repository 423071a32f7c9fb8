import Foundation
import Glibc
import Synchronization
import Testing
import SwiftVMDevices
import SwiftVMHost
@testable import SwiftVM

/// Guests that misbehave on purpose (the test guest's hostile mode, see
/// Tests/TestGuest/README.md): one vCPU floods a device's doorbell, changes a
/// live queue, never reads its serial port, or floods its console, while vCPU
/// 0 keeps reading sectors from a block device. What a user would notice is
/// checked: the other device keeps completing requests, swiftvm answers
/// SIGUSR1 and stops at once on SIGTERM, and its memory stays bounded.
@Suite("Hostile guests", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct HostileGuestTests {
    /// How much swiftvm's resident memory may grow while a hostile guest runs.
    static let rssGrowthLimitKiB = 8 * 1024

    @Test("a vCPU writing QueueNotify in a tight loop: the block device keeps serving the other vCPU, the flooded device still answers, swiftvm answers SIGUSR1 and SIGTERM, memory stays bounded")
    func notificationFlood() throws {
        let vm = try HostileVM(kind: "notify")
        defer { vm.cleanUp() }
        try vm.waitForProgress()
        #expect(vm.stdout().contains("HOSTILE notify start: 64 sectors, an AP is ready"), "\(vm.stdout().prefix(2000))")
        let window = vm.observe(seconds: 6)
        let (first, last) = (window.first, window.last)
        #expect(last.blk > first.blk, "no block reads completed in \(window.seconds) s: \(first) -> \(last)")
        #expect(last.rng > first.rng, "the flooded entropy device stopped answering: \(first) -> \(last)")
        #expect(last.ap > first.ap, "the flooding vCPU did not run: \(first) -> \(last)")
        #expect(last.bad == 0 && last.failed == 0, "\(last)")
        #expect(window.rssGrowthKiB < Self.rssGrowthLimitKiB, "VmRSS grew \(window.rssGrowthKiB) KiB: \(window.rssKiB)")
        print("notify flood: \(window.summary)")

        let report = vm.signalAndWait(SIGUSR1, forStderr: "vCPU registers (SIGUSR1)", seconds: 15)
        #expect(report != nil, "no register report within 15 s; stderr: \(vm.stderr().suffix(2000))")
        let after = vm.waitForProgress(beyond: last.blk, seconds: 15)
        #expect(after.map { $0.blk > last.blk } ?? false, "the guest stopped after SIGUSR1: \(String(describing: vm.latestProgress()))")
        let (status, elapsed) = vm.terminate()
        #expect(status == 128 + SIGTERM, "stderr: \(vm.stderr().suffix(2000))")
        #expect(elapsed < 5, "swiftvm took \(elapsed) s to stop on SIGTERM")
        #expect(!vm.stderr().contains("needs reset"), "a doorbell alone must not break the device: \(vm.stderr().suffix(2000))")
        print("notify flood: SIGUSR1 report after \(report.map { String(format: "%.2f s", $0) } ?? "-"), SIGTERM exit after \(String(format: "%.2f s", elapsed))")
    }

    @Test("a driver that changes a live queue after DRIVER_OK (QueueReady 0; QueueNum and ring addresses): the device stops that queue and sets DEVICE_NEEDS_RESET, a reset brings it back, the block device never stops")
    func queueChangedWhileLive() throws {
        let vm = try HostileVM(kind: "requeue")
        defer { vm.cleanUp() }
        try vm.waitForProgress()
        let lines = vm.stdout().split(whereSeparator: \.isNewline).map(String.init)
        for round in 0...1 {
            let line = lines.first { $0.hasPrefix("HOSTILE requeue round \(round) ") }
            let text = try #require(line, "no result for round \(round): \(vm.stdout().prefix(3000))")
            for expected in ["served before 1", "needs-reset 1", "queue ready 0", "served after 0", "blk 1", "recovered 1"] {
                #expect(text.contains(expected), "round \(round): expected \(expected): \(text)")
            }
        }
        let stderr = vm.stderr()
        #expect(stderr.contains("virtio-rng: device needs reset: queue 0: switched off (QueueReady 0) after DRIVER_OK"), "\(stderr)")
        #expect(stderr.contains("virtio-rng: device needs reset: queue 0: register 0x38 written while the queue is ready"), "\(stderr)")

        let window = vm.observe(seconds: 3)
        #expect(window.last.blk > window.first.blk, "\(window.first) -> \(window.last)")
        #expect(window.last.bad == 0 && window.last.failed == 0, "\(window.last)")
        #expect(window.rssGrowthKiB < Self.rssGrowthLimitKiB, "VmRSS grew \(window.rssGrowthKiB) KiB: \(window.rssKiB)")
        let (status, elapsed) = vm.terminate()
        #expect(status == 128 + SIGTERM, "stderr: \(vm.stderr().suffix(2000))")
        #expect(elapsed < 5, "swiftvm took \(elapsed) s to stop on SIGTERM")
    }

    @Test("a guest that never reads its serial port while 32 MiB are offered on a pipe: the pipe's writer waits (back-pressure), memory stays bounded, the guest and its block device go on, SIGUSR1 and SIGTERM are answered")
    func consoleInputNeverRead() throws {
        let vm = try HostileVM(kind: "deaf", input: .pipe)
        defer { vm.cleanUp() }
        try vm.waitForProgress()
        let offered = 32 << 20
        let window = vm.observe(seconds: 6, offering: offered)
        #expect(window.offered >= offered, "the writer only got to offer \(window.offered) bytes")
        // A pipe holds 64 KiB by default; swiftvm itself takes one 256-byte
        // chunk and the UART's 64-byte FIFO. Everything else must wait.
        #expect(window.accepted < 1 << 20, "swiftvm took \(window.accepted) of \(window.offered) bytes from a guest that reads nothing")
        #expect(window.last.rxWaiting == 1, "the input never reached the UART: \(window.last)")
        #expect(window.last.blk > window.first.blk, "\(window.first) -> \(window.last)")
        #expect(window.rssGrowthKiB < Self.rssGrowthLimitKiB, "VmRSS grew \(window.rssGrowthKiB) KiB: \(window.rssKiB)")
        print("console input never read: \(window.summary)")

        #expect(vm.signalAndWait(SIGUSR1, forStderr: "vCPU registers (SIGUSR1)", seconds: 15) != nil,
                "no register report within 15 s; stderr: \(vm.stderr().suffix(2000))")
        let (status, elapsed) = vm.terminate()
        #expect(status == 128 + SIGTERM, "stderr: \(vm.stderr().suffix(2000))")
        #expect(elapsed < 5, "swiftvm took \(elapsed) s to stop on SIGTERM")
    }

    @Test("a guest that never reads its serial port on a terminal: typing goes on being read, what the guest leaves beyond 64 KiB is dropped and said once, and Ctrl-A x still quits with status 84")
    func terminalInputNeverRead() throws {
        let vm = try HostileVM(kind: "deaf", input: .terminal)
        defer { vm.cleanUp() }
        try vm.waitForProgress()
        let dropping = "console input is being dropped"
        let filling = vm.observe(seconds: 60, offering: 16 << 20) { vm.stderr().contains(dropping) }
        // More than swiftvm keeps for the guest: the terminal went on being read.
        #expect(filling.accepted > ConsoleInput.heldLimit, "the terminal was not read: \(filling.summary)")
        // Typing goes on; so does the guest, and memory stays where it was.
        let window = vm.observe(seconds: 4, offering: 16 << 20)
        #expect(window.accepted > 0, "the terminal stopped being read: \(window.summary)")
        #expect(window.last.blk > window.first.blk, "\(window.first) -> \(window.last)")
        let rss = filling.rssKiB + window.rssKiB
        let growth = (rss.max() ?? 0) - (rss.first ?? 0)
        #expect(growth < Self.rssGrowthLimitKiB, "VmRSS grew \(growth) KiB: \(rss)")
        let stderr = vm.stderr()
        #expect(stderr.components(separatedBy: dropping).count == 2, "\(window.summary); stderr: \(stderr.suffix(2000))")
        print("terminal input never read: until the first drop \(filling.summary); then \(window.summary)")

        let sent = Date()
        #expect(vm.type([0x01, UInt8(ascii: "x")], seconds: 10), "Ctrl-A x could not be typed")
        let status = vm.waitForExit(seconds: 10)
        let elapsed = Date().timeIntervalSince(sent)
        #expect(status == ExitStatus.userQuit, "Ctrl-A x did not stop swiftvm (after \(elapsed) s); stderr: \(vm.stderr().suffix(2000))")
        #expect(elapsed < 5, "swiftvm took \(elapsed) s to quit on Ctrl-A x")
    }

    @Test("a guest that floods its console while nobody reads standard output: output is dropped and said, memory stays bounded, the other vCPU's block reads go on, SIGUSR1 and SIGTERM are answered")
    func consoleOutputNeverRead() throws {
        let vm = try HostileVM(kind: "chatter", output: .unreadPipe)
        defer { vm.cleanUp() }
        #expect(vm.waitForStderr("is being dropped", seconds: 90), "the console never filled: \(vm.stderr().suffix(2000))")
        let rss = vm.sampleRSS(seconds: 5)
        let growth = (rss.max() ?? 0) - (rss.first ?? 0)
        #expect(growth < Self.rssGrowthLimitKiB, "VmRSS grew \(growth) KiB: \(rss)")
        let report = vm.signalAndWait(SIGUSR1, forStderr: "vCPU registers (SIGUSR1)", seconds: 15)
        #expect(report != nil, "no register report within 15 s; stderr: \(vm.stderr().suffix(2000))")

        // Reading again shows the guest went on: what arrives last is newer
        // than what waited in the pipe and swiftvm's buffer.
        let text = vm.drainStdout(seconds: 4)
        let progress = HostileVM.progressLines(text, kind: "chatter")
        let chatter = text.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("CHATTER ") }.count
        #expect(progress.count >= 2, "read \(text.utf8.count) bytes, \(chatter) CHATTER lines, progress \(progress)")
        if let first = progress.first, let last = progress.last {
            #expect(last.blk > first.blk, "the block reads stopped while the console was flooded: \(first) -> \(last)")
            #expect(last.ap > first.ap, "the flooding vCPU stopped: \(first) -> \(last)")
            #expect(last.bad == 0 && last.failed == 0, "\(last)")
        }
        let (status, elapsed) = vm.terminate()
        #expect(status == 128 + SIGTERM, "stderr: \(vm.stderr().suffix(2000))")
        #expect(elapsed < 5, "swiftvm took \(elapsed) s to stop on SIGTERM")
        #expect(vm.stderr().contains("bytes of guest console output were dropped because standard output did not keep up"))
        print("console output never read: VmRSS \(rss) KiB, read \(text.utf8.count) bytes after the stall, "
              + "progress \(progress.first.map { "\($0)" } ?? "-") -> \(progress.last.map { "\($0)" } ?? "-"), SIGUSR1 after "
              + "\(report.map { String(format: "%.2f s", $0) } ?? "-"), SIGTERM exit after \(String(format: "%.2f s", elapsed))")
    }
}

/// One swiftvm running the test guest's hostile mode, with its standard
/// streams in the test's hands.
final class HostileVM {
    enum Input { case none, pipe, terminal }
    enum Output { case file, unreadPipe }

    /// The counters of one `HOSTILE <kind> blk ...` line.
    struct Progress: CustomStringConvertible {
        var blk = 0, bad = 0, failed = 0, rng = 0, missed = 0, ap = 0, rxWaiting = 0
        var description: String { "blk \(blk) bad \(bad) failed \(failed) rng \(rng) missed \(missed) ap \(ap) rx-waiting \(rxWaiting)" }
    }

    /// What `observe` saw.
    struct Window {
        var seconds: Double
        var first: Progress
        var last: Progress
        var rssKiB: [Int]
        var offered = 0
        var accepted = 0
        var rssGrowthKiB: Int { (rssKiB.max() ?? 0) - (rssKiB.first ?? 0) }
        var summary: String {
            let rate = Double(last.blk - first.blk) / seconds
            return String(format: "%.1f block reads/s over %.1f s", rate, seconds)
                + ", rng \(first.rng) -> \(last.rng), vCPU 1 actions \(first.ap) -> \(last.ap)"
                + ", VmRSS \(rssKiB.first ?? 0) -> max \(rssKiB.max() ?? 0) KiB (+\(rssGrowthKiB))"
                + (offered > 0 ? ", input offered \(offered) bytes, taken \(accepted)" : "")
        }
    }

    let kind: String
    let process = Process()
    let scratch: URL
    let outURL: URL
    let errURL: URL
    /// The write end of standard input (a pipe, or a terminal's master side).
    private(set) var inputFD: Int32 = -1
    private var inputOtherFD: Int32 = -1
    private var inputIsTerminal = false
    /// The read end of standard output when it is a pipe nobody reads.
    private(set) var outputFD: Int32 = -1
    private var outputOtherFD: Int32 = -1

    init(kind: String, input: Input = .none, output: Output = .file) throws {
        self.kind = kind
        let binary = try #require(SwiftVMProcess.binary, "the swiftvm executable was not built next to the tests")
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        outURL = scratch.appendingPathComponent("stdout")
        errURL = scratch.appendingPathComponent("stderr")
        let image = scratch.appendingPathComponent("disk").path
        try Data(TestImages.pattern(sectors: 64)).write(to: URL(fileURLWithPath: image))
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)

        let cmdline = "console=ttyS0 reboot=k testguest.mode=hostile testguest.hostile=\(kind) testguest.cpus=2 testguest.acpi=1 testguest.virtio=rw,rng"
        var arguments = ["run", "--kernel", guest, "--vcpus", "2", "--memory", "64", "--cmdline", cmdline,
                         "--drive", "id=data,path=\(image)"]
        switch input {
        case .none:
            arguments.append("--no-console-input")
        case .pipe:
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            (inputOtherFD, inputFD) = (fds[0], fds[1])
            _ = fcntl(inputFD, F_SETFL, fcntl(inputFD, F_GETFL) | O_NONBLOCK)
            _ = fcntl(inputFD, F_SETFD, FD_CLOEXEC)
            process.standardInput = FileHandle(fileDescriptor: inputOtherFD, closeOnDealloc: false)
        case .terminal:
            // posix_openpt and friends, spelled as the kernel takes them:
            // TIOCSPTLCK unlocks the pair, TIOCGPTN names the other side.
            let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
            var unlock: Int32 = 0, number: Int32 = 0
            guard master >= 0, ioctl(master, 0x4004_5431, &unlock) == 0, ioctl(master, 0x8004_5430, &number) == 0 else {
                throw POSIXError(.init(rawValue: errno) ?? .EIO)
            }
            let slave = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY)
            guard slave >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            (inputFD, inputOtherFD) = (master, slave)
            inputIsTerminal = true
            _ = fcntl(inputFD, F_SETFL, fcntl(inputFD, F_GETFL) | O_NONBLOCK)
            process.standardInput = FileHandle(fileDescriptor: slave, closeOnDealloc: false)
        }
        switch output {
        case .file:
            process.standardOutput = try FileHandle(forWritingTo: outURL)
        case .unreadPipe:
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            (outputFD, outputOtherFD) = (fds[0], fds[1])
            _ = fcntl(outputFD, F_SETFL, fcntl(outputFD, F_GETFL) | O_NONBLOCK)
            _ = fcntl(outputFD, F_SETFD, FD_CLOEXEC)
            process.standardOutput = FileHandle(fileDescriptor: outputOtherFD, closeOnDealloc: false)
        }
        process.standardError = try FileHandle(forWritingTo: errURL)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        try process.run()
    }

    func cleanUp() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        for fd in [inputFD, inputOtherFD, outputFD, outputOtherFD] where fd >= 0 { close(fd) }
        inputFD = -1; inputOtherFD = -1; outputFD = -1; outputOtherFD = -1
        try? FileManager.default.removeItem(at: scratch)
    }

    // MARK: What swiftvm printed

    func stdout() -> String { (try? String(contentsOf: outURL, encoding: .utf8)) ?? "" }
    func stderr() -> String { (try? String(contentsOf: errURL, encoding: .utf8)) ?? "" }

    /// The last `bytes` of standard output (a file), whole lines only.
    func stdoutTail(_ bytes: Int = 16 << 10) -> String {
        guard let handle = try? FileHandle(forReadingFrom: outURL) else { return "" }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: size > UInt64(bytes) ? size - UInt64(bytes) : 0)
        let data = (try? handle.readToEnd()) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    static func progressLines(_ text: String, kind: String) -> [Progress] {
        let prefix = "HOSTILE \(kind) blk "
        return text.split(whereSeparator: \.isNewline).compactMap { line -> Progress? in
            guard line.hasPrefix(prefix) else { return nil }
            let words = line.split(separator: " ")
            func value(_ key: String) -> Int? {
                guard let i = words.firstIndex(where: { $0 == key }), i + 1 < words.count else { return nil }
                return Int(words[i + 1])
            }
            guard let blk = value("blk"), let bad = value("bad"), let failed = value("failed"), let rng = value("rng"),
                  let missed = value("missed"), let ap = value("ap"), let rx = value("rx-waiting") else { return nil }
            return Progress(blk: blk, bad: bad, failed: failed, rng: rng, missed: missed, ap: ap, rxWaiting: rx)
        }
    }

    func latestProgress() -> Progress? { Self.progressLines(stdoutTail(), kind: kind).last }

    /// Waits (up to 120 s: the guest boots on an emulating host too) for the
    /// first progress line.
    func waitForProgress() throws {
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning && Date() < deadline && latestProgress() == nil { usleep(100_000) }
        try #require(latestProgress() != nil,
                     "no progress line; status \(process.isRunning ? "running" : "\(process.terminationStatus)"); stdout: \(stdout().suffix(3000)); stderr: \(stderr().suffix(2000))")
    }

    /// Waits for a progress line with more than `reads` block reads.
    func waitForProgress(beyond reads: Int, seconds: Double) -> Progress? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline {
            if let progress = latestProgress(), progress.blk > reads { return progress }
            usleep(50_000)
        }
        return nil
    }

    func waitForStderr(_ text: String, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline {
            if stderr().contains(text) { return true }
            usleep(50_000)
        }
        return stderr().contains(text)
    }

    // MARK: Watching the process

    /// VmRSS from /proc, in KiB.
    var rssKiB: Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        return nil
    }

    func sampleRSS(seconds: Double) -> [Int] {
        var samples: [Int] = []
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline {
            if let rss = rssKiB { samples.append(rss) }
            usleep(250_000)
        }
        return samples
    }

    /// Watches for `seconds` after a one-second settling time, or until
    /// `done` (asked every 250 ms) holds: the progress lines at the start
    /// and the end, VmRSS every 250 ms, and, with `offering`, keeps writing
    /// to standard input without blocking until that many bytes were taken,
    /// counting what was offered (every attempt) and what was taken.
    func observe(seconds: Double, offering: Int = 0, until done: () -> Bool = { false }) -> Window {
        usleep(1_000_000)
        let chunk = [UInt8](repeating: UInt8(ascii: "k"), count: 64 << 10)
        var offered = 0, accepted = 0
        let first = latestProgress() ?? Progress()
        var rss: [Int] = []
        let start = Date()
        var nextSample = start
        while process.isRunning && Date().timeIntervalSince(start) < seconds {
            let writing = accepted < offering && inputFD >= 0
            if writing {
                let size = min(chunk.count, offering - accepted)
                let n = chunk.withUnsafeBytes { write(inputFD, $0.baseAddress, size) }
                offered += size
                if n > 0 { accepted += n }
                drainTerminalEcho()
            }
            if Date() >= nextSample {
                if let value = rssKiB { rss.append(value) }
                nextSample = nextSample.addingTimeInterval(0.25)
                if done() { break }
            }
            usleep(writing ? 1_000 : 50_000)
        }
        let elapsed = Date().timeIntervalSince(start)
        return Window(seconds: elapsed, first: first, last: latestProgress() ?? first, rssKiB: rss,
                      offered: offered, accepted: accepted)
    }

    /// Anything the terminal sends back (it should be nothing in raw mode).
    private func drainTerminalEcho() {
        guard inputIsTerminal, inputFD >= 0 else { return }
        var scratch = [UInt8](repeating: 0, count: 4096)
        _ = scratch.withUnsafeMutableBytes { read(inputFD, $0.baseAddress, $0.count) }
    }

    /// Writes `bytes` to standard input, retrying while it is full.
    func type(_ bytes: [UInt8], seconds: Double) -> Bool {
        var rest = bytes[...]
        let deadline = Date().addingTimeInterval(seconds)
        while !rest.isEmpty && Date() < deadline && process.isRunning {
            let n = rest.withUnsafeBytes { write(inputFD, $0.baseAddress, $0.count) }
            if n > 0 { rest = rest.dropFirst(n) } else { usleep(10_000) }
        }
        return rest.isEmpty
    }

    /// Reads the unread standard output pipe for `seconds`.
    func drainStdout(seconds: Double) -> String {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let n = buffer.withUnsafeMutableBytes { read(outputFD, $0.baseAddress, $0.count) }
            if n > 0 { data += buffer.prefix(n) } else { usleep(5_000) }
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Sends `signal` and returns the seconds until `text` appeared once
    /// more on standard error, or nil.
    func signalAndWait(_ signal: Int32, forStderr text: String, seconds: Double) -> Double? {
        let before = stderr().components(separatedBy: text).count
        let sent = Date()
        kill(process.processIdentifier, signal)
        while Date().timeIntervalSince(sent) < seconds {
            if stderr().components(separatedBy: text).count > before { return Date().timeIntervalSince(sent) }
            usleep(20_000)
        }
        return nil
    }

    func waitForExit(seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        guard !process.isRunning else { return nil }
        return process.terminationStatus
    }

    /// SIGTERM, then the exit status and the seconds it took (SIGKILL after 10 s).
    func terminate() -> (Int32, Double) {
        let sent = Date()
        kill(process.processIdentifier, SIGTERM)
        let status = waitForExit(seconds: 10)
        let elapsed = Date().timeIntervalSince(sent)
        if status == nil {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        return (status ?? -1, elapsed)
    }
}

/// `ConsoleInput` against a UART nobody reads, on a real event loop and
/// pipes (no KVM needed): a pipe is back-pressured, a terminal-like input
/// (escapes on) is drained, bounded, and still sees Ctrl-A x.
@Suite("ConsoleInput with a guest that never reads", .serialized)
struct ConsoleInputBoundTests {
    struct NoInterrupt: InterruptLine { func trigger() {} }
    struct NoOutput: ByteSink { func write(_ bytes: UnsafeRawBufferPointer) {} }
    final class Counter: Sendable {
        private let count = Mutex(0)
        func add() { count.withLock { $0 += 1 } }
        var value: Int { count.withLock { $0 } }
    }

    final class Harness: @unchecked Sendable {
        let loop: EventLoop
        let serial: Serial8250
        let input: ConsoleInput
        let readFD: Int32
        let writeFD: Int32
        let quits = Counter()
        let thread: Thread

        init(escapes: Bool) throws {
            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)
            (readFD, writeFD) = (fds[0], fds[1])
            _ = fcntl(readFD, F_SETFL, fcntl(readFD, F_GETFL) | O_NONBLOCK)
            _ = fcntl(writeFD, F_SETFL, fcntl(writeFD, F_GETFL) | O_NONBLOCK)
            loop = try EventLoop()
            let resume = try EventFD(nonBlocking: true)
            serial = Serial8250(interrupt: NoInterrupt(), output: NoOutput(), inputSpaceAvailable: { resume.signal() })
            let quits = quits
            input = ConsoleInput(fd: readFD, serial: serial, resume: resume, escapes: escapes,
                                 onQuit: { quits.add() })
            try input.attach(to: loop)
            let loop = loop
            thread = Thread { loop.run(onFailure: { Issue.record("\($0)") }) }
            thread.start()
        }

        /// Writes up to `count` bytes of `byte` without blocking; returns what the pipe took.
        func offer(_ count: Int, byte: UInt8 = UInt8(ascii: "k"), seconds: Double = 2) -> Int {
            let chunk = [UInt8](repeating: byte, count: 4096)
            var taken = 0
            let deadline = Date().addingTimeInterval(seconds)
            while taken < count && Date() < deadline {
                let n = chunk.withUnsafeBytes { write(writeFD, $0.baseAddress, min($0.count, count - taken)) }
                if n > 0 { taken += n } else { usleep(1_000) }
            }
            return taken
        }

        func stop() {
            loop.requestStop()
            while !thread.isFinished { usleep(1_000) }
            close(readFD)
            close(writeFD)
        }
    }

    @Test("a pipe: the UART's FIFO and one chunk are taken, the rest waits in the pipe, nothing is dropped")
    func pipeIsBackPressured() throws {
        let harness = try Harness(escapes: false)
        defer { harness.stop() }
        let taken = harness.offer(1 << 20)
        usleep(200_000)
        #expect(taken < 1 << 20, "the pipe took everything: nothing waited")
        #expect(harness.input.bytesDelivered == Serial8250.fifoCapacity)
        #expect(harness.input.bytesDropped == 0)
        #expect(harness.serial.inputCapacity == 0)
    }

    @Test("a terminal: input goes on being read, at most 64 KiB wait for the guest, the rest is dropped, and Ctrl-A x quits")
    func terminalIsDrainedAndBounded() throws {
        let harness = try Harness(escapes: true)
        defer { harness.stop() }
        let offered = 1 << 20
        #expect(harness.offer(offered, seconds: 10) == offered, "the input stopped being read")
        #expect(harness.offer(2, byte: 0x01, seconds: 1) == 2)  // Ctrl-A Ctrl-A: one literal Ctrl-A, dropped too
        #expect(harness.offer(1, byte: 0x01) == 1)
        #expect(harness.offer(1, byte: UInt8(ascii: "x")) == 1)
        let deadline = Date().addingTimeInterval(5)
        while harness.quits.value == 0 && Date() < deadline { usleep(1_000) }
        #expect(harness.quits.value == 1, "Ctrl-A x was not seen")
        #expect(harness.input.bytesDelivered == Serial8250.fifoCapacity)
        #expect(harness.input.bytesDropped == offered + 1 - Serial8250.fifoCapacity - ConsoleInput.heldLimit)
    }
}
