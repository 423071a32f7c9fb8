import Foundation
import Synchronization
import SwiftVM
import Testing

/// swiftvm as a library: the event registry of a running VM, and a program
/// that embeds two VMs at once.
@Suite("Embedding swiftvm", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct LibraryTests {
    static func guest() throws -> String {
        try #require(SwiftVMProcess.testGuest, "the test guest could not be built (make -C Tests/TestGuest)")
    }

    static func spinningVM() throws -> (MicroVM, ConsoleCapture) {
        let console = ConsoleCapture()
        var config = VMConfig(
            kernelPath: try guest(), commandLine: "console=ttyS0 reboot=k testguest.mode=ticker", memoryMiB: 64,
            serialOutput: .sink(console))
        config.entropyDevice = false
        config.consoleSilenceWarningSeconds = nil
        return (try MicroVM(config: config), console)
    }

    @Test("a file descriptor and a timer subscribed to a running VM's event loop fire there, and go away when removed")
    func registry() throws {
        let (vm, console) = try Self.spinningVM()
        try vm.start()
        defer {
            vm.stop("test over")
            vm.wait()
        }
        #expect(vm.state == .running)
        let baseline = vm.events.subscriptionCount

        // A pipe: writing to it makes the subscribed handler run on the loop.
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        let seen = Mutex<[UInt8]>([])
        let readEnd = ends[0]
        let token = try vm.events.subscribe(readEnd, interest: .readable) { readiness in
            var byte: UInt8 = 0
            if readiness.contains(.readable), read(readEnd, &byte, 1) == 1 { seen.withLock { $0.append(byte) } }
        }
        let fired = Mutex(0)
        let timer = vm.events.addTimer(afterMilliseconds: 10, periodMilliseconds: 20) { fired.withLock { $0 += 1 } }
        #expect(vm.events.subscriptionCount == baseline + 2)

        var byte: UInt8 = 42
        #expect(write(ends[1], &byte, 1) == 1)
        #expect(Self.await(5) { seen.withLock { $0 } == [42] && fired.withLock { $0 } >= 3 })

        vm.events.remove(token)
        vm.events.remove(timer)
        #expect(vm.events.subscriptionCount == baseline)
        let firedAtRemoval = fired.withLock { $0 }
        byte = 43
        #expect(write(ends[1], &byte, 1) == 1)
        usleep(200_000)
        #expect(seen.withLock { $0 } == [42], "a removed handler ran")
        #expect(fired.withLock { $0 } <= firedAtRemoval + 1, "a removed timer kept firing")
        // The guest kept running all along (its first TICK may come after the
        // handlers' work on a loaded host, so give it time).
        #expect(Self.await(5) { console.lines.contains { $0.hasPrefix("TICK ") } })
    }

    @Test("posted work runs on the loop thread, in order")
    func posted() throws {
        let (vm, _) = try Self.spinningVM()
        try vm.start()
        defer {
            vm.stop("test over")
            vm.wait()
        }
        let order = Mutex<[Int]>([])
        for i in 0..<5 { vm.events.post { order.withLock { $0.append(i) } } }
        #expect(Self.await(5) { order.withLock { $0 } == [0, 1, 2, 3, 4] })
    }

    @Test("a VM that was never started, or is stopped, cannot be paused; wait returns the same reason twice")
    func lifecycleErrors() throws {
        let (vm, _) = try Self.spinningVM()
        #expect(vm.state == .created)
        #expect(throws: VMMError.self) { try vm.pause() }
        try vm.start()
        #expect(throws: VMMError.self) { try vm.start() }
        vm.stop("first")
        vm.stop("second")
        guard case .stopped(let why) = vm.wait() else { Issue.record("not stopped"); return }
        #expect(why == "first")
        guard case .stopped(let again) = vm.wait() else { Issue.record("not stopped"); return }
        #expect(again == "first")
        #expect(vm.state == .stopped)
        #expect(throws: VMMError.self) { try vm.pause() }
    }

    @Test("errors are typed enough to switch on: a missing file, a bad kernel, a busy drive, a bad drive")
    func typedErrors() throws {
        func kind(_ config: VMConfig) -> VMMError.Kind? {
            do { _ = try MicroVM(config: config) } catch { return error.kind }
            return nil
        }
        #expect(kind(VMConfig(kernelPath: "/nonexistent/vmlinux")) == .missingFile(path: "/nonexistent/vmlinux"))
        // A directory is not a file to read: the same kind (and status, 66) as a missing one.
        #expect(kind(VMConfig(kernelPath: "/tmp")) == .missingFile(path: "/tmp"))
        let text = try SwiftVMProcess.temporaryFile(Array("not a kernel\n".utf8), name: "kernel")
        defer { unlink(text) }
        #expect(kind(VMConfig(kernelPath: text)) == .badKernel(path: text))

        var config = VMConfig(kernelPath: try Self.guest(), serialOutput: .none)
        let image = try SwiftVMProcess.temporaryFile([UInt8](repeating: 0, count: 1 << 20), name: "disk")
        defer { unlink(image) }
        // Another holder of the image's lock makes the drive busy.
        let holder = open(image, O_RDWR)
        defer { close(holder) }
        #expect(flock(holder, LOCK_EX | LOCK_NB) == 0)
        config.drives = [DriveConfig(id: "data", path: image)]
        #expect(kind(config) == .driveBusy(id: "data"))
        flock(holder, LOCK_UN)
        // An all-zero root image is refused by the pre-flight, naming the drive.
        config.drives = [DriveConfig(id: "rootfs", path: image, isRootDevice: true)]
        #expect(kind(config) == .badDrive(id: "rootfs"))
        config.drives = []
        config.cpuTemplatePath = text
        #expect(kind(config) == .badCPUTemplate(path: text))
    }

    @Test("a program embeds two VMs: stops one while the other runs, pauses and resumes one, keeps its SIGINT handler, and switches on a bad kernel's error")
    func embeddingProgram() throws {
        let swiftvm = try #require(SwiftVMProcess.binary)
        let example = URL(fileURLWithPath: swiftvm).deletingLastPathComponent()
            .appendingPathComponent("swiftvm-embedding-example").path
        #expect(FileManager.default.isExecutableFile(atPath: example), "swift build did not build \(example)")
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: example)
        process.arguments = [try Self.guest()]
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "output:\n\(text)")
        for line in [
            "missing kernel reported: /nonexistent/vmlinux", "both VMs running",
            "second VM paused and resumed", "own SIGINT handler ran; VM still running", "EMBEDDING OK",
        ] {
            #expect(text.contains(line), "missing \"\(line)\" in:\n\(text)")
        }
        #expect(text.contains("first VM stopped (stopped: the program is done with it); second VM still running"))
    }

    static func await(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            if Date() > deadline { return false }
            usleep(10_000)
        }
        return true
    }
}

/// The console never blocks a vCPU: a guest that floods its console while
/// nobody reads it leaves swiftvm stoppable at once.
@Suite("A console nobody reads", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct StalledConsoleTests {
    /// Runs a flooding guest with standard output on a pipe nobody reads (or
    /// `--serial-out` to a FIFO), sends SIGTERM after `settle` seconds and
    /// returns the status, the seconds from SIGTERM to exit, and stderr.
    static func floodAndTerminate(extra: [String] = []) throws -> (Int32, Double, String) {
        let binary = try #require(SwiftVMProcess.binary)
        let guest = try #require(SwiftVMProcess.testGuest)
        let process = Process()
        let stdout = Pipe()  // never read while the VM runs
        let errorsURL = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-err-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: errorsURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errorsURL) }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["run", "--kernel", guest, "--cmdline", "console=ttyS0 reboot=k testguest.mode=flood",
                             "--no-console-input", "--no-rng", "--memory", "64", "--console-buffer-kib", "16"] + extra
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: errorsURL)
        try process.run()
        // Wait until the reader's pipe and swiftvm's buffer are both full:
        // swiftvm says so when it starts dropping output.
        func errors() -> String { (try? String(contentsOf: errorsURL, encoding: .utf8)) ?? "" }
        let filled = Date().addingTimeInterval(60)
        while process.isRunning && Date() < filled && !errors().contains("is being dropped") { usleep(20_000) }
        #expect(process.isRunning, "swiftvm exited before SIGTERM")
        #expect(errors().contains("is being dropped"), "the console never filled: \(errors())")
        let sent = Date()
        kill(process.processIdentifier, SIGTERM)
        let deadline = sent.addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        let elapsed = Date().timeIntervalSince(sent)
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return (process.terminationStatus, elapsed, errors())
    }

    @Test("standard output is a pipe nobody reads: SIGTERM still stops swiftvm within a second, with status 143, and the dropped output is reported")
    func stalledPipe() throws {
        let (status, elapsed, errors) = try Self.floodAndTerminate()
        #expect(elapsed < 1.0, "swiftvm took \(elapsed) s to stop; stderr: \(errors)")
        #expect(status == 128 + SIGTERM, "stderr: \(errors)")
        #expect(errors.contains("guest console output to standard output is being dropped"))
        #expect(errors.contains("bytes of guest console output were dropped because standard output did not keep up"))
        #expect(errors.contains("stopped by signal 15"))
    }

    @Test("--serial-out to a FIFO whose reader stopped reading: the same")
    func stalledFIFO() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-fifo-\(UUID().uuidString)").path
        #expect(mkfifo(path, 0o600) == 0)
        defer { unlink(path) }
        // A reader that opens the FIFO and never reads.
        let reader = open(path, O_RDONLY | O_NONBLOCK)
        #expect(reader >= 0)
        defer { close(reader) }
        let (status, elapsed, errors) = try Self.floodAndTerminate(extra: ["--serial-out", path])
        #expect(elapsed < 1.0, "swiftvm took \(elapsed) s to stop; stderr: \(errors)")
        #expect(status == 128 + SIGTERM, "stderr: \(errors)")
        #expect(errors.contains("guest console output to \(path) is being dropped"))
    }

    @Test("--serial-out to a FIFO without a reader is refused at once with the fix")
    func fifoWithoutReader() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-fifo-\(UUID().uuidString)").path
        #expect(mkfifo(path, 0o600) == 0)
        defer { unlink(path) }
        let outcome = try SwiftVMProcess.run(
            ["run", "--kernel", try #require(SwiftVMProcess.testGuest), "--serial-out", path, "--no-console-input"],
            timeout: 10)
        #expect(!outcome.timedOut)
        #expect(outcome.status == 66)
        #expect(outcome.stderr.contains("a FIFO needs a reader before swiftvm starts"))
    }
}
