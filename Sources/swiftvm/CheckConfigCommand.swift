import ArgumentParser
import Glibc
import SwiftVM
import SwiftVMMemory
import SwiftVMInspect

struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check a guest kernel's .config for the options a swiftvm guest needs.",
        discussion: """
            Reads a kernel .config (the one in the build tree, the "config" file next to a kernel \
            built by scripts/build-kernel.sh, or /proc/config.gz unpacked) and reports every option \
            that would leave the guest silent, without its disk or devices, deaf to the host's Ctrl-Alt-Del, or \
            unbootable, with the line to use instead. Exits 0 when there are no errors (warnings \
            are allowed) and 65 when there are.
            """)

    @Argument(help: "The kernel .config file.")
    var file: String

    @OptionGroup var path: GuestPathOptions

    func run() throws {
        let text = try readTextFile(file, role: "kernel config")
        let findings: [KernelConfigFinding]
        do { findings = try KernelConfigCheck.check(configText: text, path: path.guestPath) } catch {
            Log.error("\(file) is not a kernel .config: \(error)")
            throw ExitCode(ExitStatus.badInput)
        }
        try report(findings, for: path.guestPath, source: file)
    }
}

/// `--arch` and `--no-acpi`: which guest path a kernel is checked for.
struct GuestPathOptions: ParsableArguments {
    @Option(help: "The guest architecture: x86_64 or aarch64.")
    var arch: KernelArchitecture = .x86_64

    @Flag(help: "Check for the x86_64 path without ACPI (swiftvm run --no-acpi).")
    var noACPI = false

    func validate() throws {
        if noACPI && arch != .x86_64 {
            throw ValidationError("--no-acpi applies to x86_64 only; aarch64 guests are described by a device tree")
        }
    }

    var guestPath: GuestPath {
        switch arch {
        case .x86_64: noACPI ? .x86_64NoACPI : .x86_64ACPI
        case .aarch64: .aarch64
        }
    }
}

extension KernelArchitecture: ExpressibleByArgument {}

/// Prints each finding and a summary; throws exit status 65 when any is an error.
func report(_ findings: [KernelConfigFinding], for path: GuestPath, source: String) throws {
    for finding in findings { print(finding.description) }
    let errors = findings.contains { $0.severity == .error }
    let verdict = errors ? "not usable as a swiftvm guest" : "usable as a swiftvm guest"
    print("\(source): \(KernelConfigCheck.summary(findings)) for \(path): \(verdict)")
    if errors { throw ExitCode(ExitStatus.badInput) }
}

/// Reads a whole text file; a missing or unreadable one ends the command with status 66.
func readTextFile(_ path: String, role: String) throws -> String {
    String(decoding: try readFile(path, role: role, limit: 16 << 20), as: UTF8.self)
}

/// Reads up to `limit` bytes of `path`; a missing or unreadable file ends the command with status 66.
func readFile(_ path: String, role: String, limit: Int) throws -> [UInt8] {
    guard let handle = fopen(path, "rb") else {
        Log.error("cannot open the \(role) \(path): \(String(cString: strerror(errno)))")
        throw ExitCode(ExitStatus.missingInput)
    }
    defer { fclose(handle) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while bytes.count < limit {
        let wanted = min(chunk.count, limit - bytes.count)
        let got = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, wanted, handle) }
        bytes += chunk[0..<got]
        if got < wanted { break }
    }
    if ferror(handle) != 0 {
        Log.error("cannot read the \(role) \(path) (is it a directory?)")
        throw ExitCode(ExitStatus.missingInput)
    }
    return bytes
}
