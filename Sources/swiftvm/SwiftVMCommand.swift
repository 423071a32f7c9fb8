import ArgumentParser
import Glibc
import SwiftVM
import SwiftVMMemory

@main
struct SwiftVMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftvm",
        abstract: "A minimal KVM-based microVM monitor.",
        discussion: """
            Boots an x86_64 Linux vmlinux with a serial console, an i8042 controller and \
            virtio-mmio devices. Exit statuses are listed in docs/exit-codes.md.
            """,
        version: "0.1.0",
        subcommands: [
            RunCommand.self, SelfTestCommand.self, DumpTablesCommand.self, InspectCommand.self, CheckConfigCommand.self,
            FirecrackerCommand.self, SeccompProbeCommand.self,
        ],
        // Without a subcommand swiftvm behaves as Firecracker: --api-sock, --config-file, ...
        defaultSubcommand: FirecrackerCommand.self)

    static func main() {
        BootClock.markProcessStart()
        // `swiftvm run ...`, the command that boots a guest, is parsed by its
        // own command alone: parsing through the whole tree (every
        // subcommand's options, the Firecracker default's, the completion
        // script request) costs milliseconds of Swift runtime type lookups
        // at every start (docs/performance.md). A command line it does not
        // accept (a usage error, --help) goes through the tree below, which
        // words the message and picks the exit status as always.
        let arguments = CommandLine.arguments.dropFirst()
        if arguments.first == RunCommand.configuration.commandName,
            var command = try? RunCommand.parseAsRoot(Array(arguments.dropFirst()))
        {
            do { try command.run() } catch { finish(error) }
            return
        }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            finish(error)
        }
    }

    /// Ends the process for `error`. A bare exit status, which is how every
    /// run ends, exits at once: ArgumentParser's `exit(withError:)` would
    /// first build the command's help text (reflecting every option), about
    /// a millisecond spent on the way out.
    private static func finish(_ error: any Error) -> Never {
        if let code = error as? ExitCode { Glibc.exit(code.rawValue) }
        exit(withError: error)
    }
}

/// Options every command that boots a guest shares.
struct LogOptions: ParsableArguments {
    @Option(help: "How much the VMM logs on standard error: error, warning, info or debug.")
    var logLevel: LogLevelArgument = .init(.info)

    func apply() { Log.level = logLevel.level }
}

struct LogLevelArgument: ExpressibleByArgument {
    let level: Log.Level

    init(_ level: Log.Level) { self.level = level }

    init?(argument: String) {
        guard let level = Log.Level.allCases.first(where: { $0.name == argument.lowercased() }) else { return nil }
        self.level = level
    }

    static var allValueStrings: [String] { Log.Level.allCases.map(\.name) }
    var defaultValueDescription: String { level.name }
}
