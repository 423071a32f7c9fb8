import Foundation
import Testing

/// Runs the real `swiftvm` binary, as a user would, and collects what it printed.
struct SwiftVMProcess {
    struct Outcome {
        var status: Int32
        var stdout: String
        var stderr: String
        var timedOut: Bool

        var stdoutLines: [String] { stdout.split(whereSeparator: \.isNewline).map(String.init) }
    }

    /// The package root, found from this file's location.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The swiftvm executable built next to the test bundle.
    static let binary: String? = {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = bundle.deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("swiftvm").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return nil
    }()

    /// The test guest, built with `make -C Tests/TestGuest` when missing.
    static let testGuest: String? = {
        let directory = packageRoot.appendingPathComponent("Tests/TestGuest")
        let path = directory.appendingPathComponent("build/swiftvm-testguest").path
        let make = Process()
        make.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        make.arguments = ["make", "-s", "-C", directory.path]
        try? make.run()
        make.waitUntilExit()
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()

    /// True when /dev/kvm can be opened read-write by this user.
    static let kvmAvailable: Bool = {
        let fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        if fd >= 0 { close(fd) }
        return fd >= 0
    }()

    /// Runs swiftvm with `arguments`; `input` is written to its standard input
    /// (once `waitFor` appears on its standard output, if given). Each of
    /// `signals` is sent, in order, once its text appears on standard output
    /// or standard error.
    static func run(
        _ arguments: [String], input: String? = nil, waitFor: String? = nil, timeout: TimeInterval = 60,
        signal: Int32? = nil, signals: [(after: String, signal: Int32)] = []
    ) throws -> Outcome {
        let binary = try #require(binary, "the swiftvm executable was not built next to the tests")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let outURL = scratch.appendingPathComponent("stdout")
        let errURL = scratch.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()

        let deadline = Date().addingTimeInterval(timeout)
        func output() -> String { (try? String(contentsOf: outURL, encoding: .utf8)) ?? "" }
        var sent = false
        var signalled = false
        var pendingSignals = signals[...]
        while process.isRunning && Date() < deadline {
            if let next = pendingSignals.first {
                let seen = output() + ((try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
                if seen.contains(next.after) {
                    kill(process.processIdentifier, next.signal)
                    pendingSignals = pendingSignals.dropFirst()
                }
            }
            if let input, !sent, waitFor.map({ output().contains($0) }) ?? true {
                stdin.fileHandleForWriting.write(Data(input.utf8))
                sent = true
            }
            if let signal, !signalled, let waitFor, output().contains(waitFor) {
                kill(process.processIdentifier, signal)
                signalled = true
            }
            usleep(20_000)
        }
        let timedOut = process.isRunning
        if timedOut {
            // SIGTERM first, as a supervisor would; SIGKILL if that is ignored.
            process.terminate()
            let grace = Date().addingTimeInterval(5)
            while process.isRunning && Date() < grace { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        try? stdin.fileHandleForWriting.close()
        let stderr = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return Outcome(status: process.terminationStatus, stdout: output(), stderr: stderr, timedOut: timedOut)
    }

    /// Writes `bytes` to a new temporary file and returns its path.
    static func temporaryFile(_ bytes: [UInt8], name: String = "image") throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-\(UUID().uuidString)-\(name)")
        try Data(bytes).write(to: url)
        return url.path
    }
}
