import ArgumentParser
import Glibc
import SwiftVM
import SwiftVMHost
import SwiftVMMemory
import Synchronization

/// `swiftvm seccomp-probe KIND SYSCALL [ARG...]` (hidden): loads the filter of
/// one thread kind on a thread of its own and makes one system call, so that
/// a test (or a person checking a filter file) sees what the filter does. A
/// call the filter forbids ends the process with status 148 and the line
/// naming it; an allowed one prints its result and exits 0.
/// `--print-default` prints the built-in lists as a filter file instead.
struct SeccompProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seccomp-probe",
        abstract: "Make one system call under a thread kind's seccomp filter, or print the built-in filters.",
        discussion: """
            KIND is main, events, vcpu or api. ARGs are numbers (decimal or 0x...), 0 by default: \
            `swiftvm seccomp-probe vcpu ioctl 0 0xae80` asks whether a vCPU thread may make KVM_RUN. \
            A forbidden call ends the process with status 148 (docs/security.md).
            """,
        shouldDisplay: false)

    @Flag(help: "Print the built-in allow-lists in the filter-file format, and exit.")
    var printDefault = false

    @Option(help: ArgumentHelp("A filter file to probe instead of the built-in lists.", valueName: "file"))
    var seccompFilter: String?

    @Argument(help: "The thread kind: main, events, vcpu or api.")
    var kind: String?

    @Argument(help: "The system call's name.")
    var syscall: String?

    @Argument(help: "Up to six arguments.")
    var arguments: [String] = []

    func validate() throws {
        if printDefault { return }
        guard let kind, SeccompThreadKind(rawValue: kind) != nil else {
            throw ValidationError("KIND must be one of \(SeccompThreadKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let syscall, SeccompFilters.syscallNumber(syscall) != nil else {
            throw ValidationError("SYSCALL must name a system call of this machine")
        }
        guard arguments.count <= 6, arguments.allSatisfy({ Self.number($0) != nil }) else {
            throw ValidationError("give at most six numeric arguments")
        }
    }

    static func number(_ text: String) -> UInt64? {
        text.lowercased().hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    }

    func run() throws {
        if printDefault {
            print(SeccompFilterFile.render(.builtIn(processID: nil)), terminator: "")
            return
        }
        guard let kind = kind.flatMap(SeccompThreadKind.init(rawValue:)), let syscall,
            let number = SeccompFilters.syscallNumber(syscall)
        else { throw ExitCode(ExitStatus.usage) }
        let filters: SeccompFilters
        do {
            guard let loaded = try SeccompFilterFile.filters(disabled: false, file: seccompFilter) else { return }
            filters = loaded
        } catch {
            Log.error(error.description)
            throw ExitCode(error.exitCode)
        }
        let values = arguments.compactMap(Self.number)
        let outcome = Mutex<String>("")
        let thread = try HostThread.spawn(name: "swiftvm-probe") {
            do { try filters.install(kind) } catch {
                outcome.withLock { $0 = "error: \(error)" }
                return
            }
            let result = SeccompFilters.call(number, values)
            outcome.withLock { $0 = result < 0 ? "returned -1 (\(String(cString: strerror(Int32(-result)))))" : "returned \(result)" }
        }
        thread.join()
        let text = outcome.withLock { $0 }
        if text.hasPrefix("error: ") {
            Log.error(String(text.dropFirst(7)))
            throw ExitCode(ExitStatus.vmmRuntimeError)
        }
        print("allowed: \(syscall) \(text) under the \(kind.rawValue) filter")
    }
}
