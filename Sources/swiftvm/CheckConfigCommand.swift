import ArgumentParser
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
            are allowed) and 65 when there are, or when the file is larger than 16 MiB (it is read \
            whole or not at all); 66 when it cannot be read.
            """)

    /// A .config is a few hundred KiB; anything near this is the wrong file.
    static let sizeLimit = 16 << 20

    @Argument(help: "The kernel .config file.")
    var file: String

    @OptionGroup var path: GuestPathOptions

    func run() throws {
        let text = try readTextFile(file, role: "kernel config", limit: Self.sizeLimit)
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

/// Opens `path` for reading; a file that cannot be opened, or is not one of
/// `kinds` (a FIFO, a directory), ends the command with FileImage's message
/// and exit status (66 missing or not a file, 65 unusable).
func openInput(_ path: String, role: String, accepting kinds: InputFileKinds) throws -> FileImage {
    do { return try FileImage(path: path, role: role, accepting: kinds) } catch {
        Log.error(error.description)
        throw ExitCode(error.exitCode)
    }
}

/// Reads all of a text file (or a pipe, `<(zcat /proc/config.gz)`) of at most
/// `limit` bytes; a larger one is an error, not a truncated read.
func readTextFile(_ path: String, role: String, limit: Int) throws -> String {
    let file = try openInput(path, role: role, accepting: [.regularFile, .pipe])
    do { return String(decoding: try file.readAll(limit: limit), as: UTF8.self) } catch {
        Log.error(error.description)
        throw ExitCode(error.exitCode)
    }
}
