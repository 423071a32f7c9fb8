import Glibc
import SwiftVMHost

extension SelfTest {
    /// What another process needs to boot a scenario: the `swiftvm` binary
    /// run as Firecracker is, through its API socket or a config file.
    public struct ExternalRun: Sendable {
        public var scenario: Scenario
        public var commandLine: String
        /// The scenario's drive images, made from the test pattern.
        public var drives: [DriveConfig]
        /// Where the other process must write the guest's console.
        public var consolePath: String
        /// A scratch directory for sockets, config files and captured
        /// output; removed with everything in it afterwards.
        public var directory: String
    }

    /// How an external run ended.
    public enum ExternalOutcome: Sendable {
        /// The process ended with this status.
        case exited(Int32)
        /// The run could not be set up or driven; the message says why.
        case failed(String)
    }

    /// Runs `scenario` in another process that `boot` starts and waits for,
    /// then judges the guest's console and drive images as `run` does. The
    /// process's status 0 stands for the guest's reset.
    public func runExternally(_ scenario: Scenario, name: String, boot: (ExternalRun) -> ExternalOutcome) -> [Check] {
        var template = Array("/tmp/swiftvm-selftest-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            return [Check(name: name, passed: false, detail: "mkdtemp: \(String(cString: strerror(errno)))")]
        }
        let directory = String(cString: made)
        defer { Self.removeTree(directory) }
        let images: TestImages
        do { images = try TestImages(scenario.drives) } catch {
            return [Check(name: name, passed: false, detail: "cannot create drive images: \(error)")]
        }
        defer { images.remove() }
        let run = ExternalRun(
            scenario: scenario, commandLine: SelfTest.commandLine(for: scenario), drives: images.drives,
            consolePath: directory + "/console", directory: directory)
        let outcome = boot(run)
        let console = Self.lines(of: run.consolePath)
        switch outcome {
        case .failed(let message):
            return [Check(name: name, passed: false, detail: message)]
        case .exited(let status) where status != 0:
            let tail = console.suffix(3).joined(separator: " | ")
            return [Check(name: name, passed: false, detail: "the process exited with status \(status); console: \(tail)")]
        case .exited:
            var renamed = scenario
            renamed.name = name
            // The other process may append root= for a root drive, as
            // Firecracker does, so only the configured prefix is compared.
            let seen = console.first { $0.hasPrefix("CMDLINE ") }.map { String($0.dropFirst("CMDLINE ".count)) }
            var checks = SelfTest.evaluate(
                renamed, reason: .reset, console: console.filter { !$0.hasPrefix("CMDLINE ") }, commandLine: run.commandLine)
            checks.insert(Check(
                name: "\(name): command line", passed: seen?.hasPrefix(run.commandLine) == true,
                detail: seen?.hasPrefix(run.commandLine) == true ? "" : "guest saw \"\(seen ?? "nothing")\""), at: 0)
            if !scenario.drives.isEmpty { checks.append(images.verify(name)) }
            return checks
        }
    }

    private static func lines(of path: String) -> [String] {
        guard let image = try? FileImage(path: path, role: "console capture"),
            let bytes = try? image.readAll(limit: 16 << 20)
        else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
    }

    /// Removes `directory` and the plain files and sockets in it.
    private static func removeTree(_ directory: String) {
        if let handle = opendir(directory) {
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { unlink(directory + "/" + name) }
            }
            closedir(handle)
        }
        rmdir(directory)
    }
}
